"""The update journal of a model folder: an append-only log of changes on top of a snapshot.

An update (shots added, a class described or removed, a new rejection threshold) is one
*entry*: a list of :class:`Change` written with one ``pwrite`` and made durable with one
``fsync`` before it is acknowledged, so the bytes an update writes are the update's own, whatever
the model's size. Loading replays the entries on the snapshot they follow; compaction
(:func:`protoshot.store.install_snapshot`) folds them into a new snapshot.

A record on disk::

    b"PSJ1" | payload length: u32 LE | CRC-32 of the payload: u32 LE | payload
    payload = header length: u32 LE | header (JSON) | the arrays' bytes, in the header's order

The first record names the snapshot's SHA-256, so a journal is never replayed on another
snapshot. A record that fails its checksum at the end of the file is a torn write (a crash, or a
writer still at work): it is dropped with a warning and everything before it is kept. One
followed by a good record is damage in the middle: reading refuses and names the entry, since
guessing could replay a corrupt update or skip an acknowledged one.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"PSJ1"
RECORD = struct.Struct("<4sII")  # magic, payload length, CRC-32
HEADER = struct.Struct("<I")  # JSON header length
#: The changes an entry may hold.
OPS = ("add", "name", "remove", "metadata")
#: The array kinds an entry may hold: embeddings as the embedder gave them.
DTYPES = ("<f4", "<f8")
#: A record longer than this is damage, not an update (a length field gone wrong).
MAX_RECORD = 1 << 31


@dataclass(frozen=True)
class Change:
    """One change to a model.

    ``add``: shots ``vectors`` [n, n_features] of the classes ``labels`` (one per row).
    ``name``: the name embeddings ``vectors`` [m, n_features] of the classes ``labels``.
    ``remove``: the classes ``labels``. ``metadata``: keys merged into the model's metadata
    (e.g. its rejection threshold). ``time``: when it was made (Unix seconds).
    """

    op: str
    labels: tuple[Any, ...] = ()
    vectors: np.ndarray | None = None
    metadata: Mapping[str, Any] | None = None
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown change {self.op!r}; expected one of {OPS}")
        rows = None if self.vectors is None else len(self.vectors)
        if self.op in ("add", "name") and rows != len(self.labels):
            raise ValueError(f"a {self.op!r} change needs one label per vector")


@dataclass(frozen=True)
class Position:
    """Where a journal ends: its file name in the folder and its length in bytes; ``config``
    identifies the ``config.json`` that named it (inode, size, modification time), so an append
    to a folder whose config has not changed since need not read it again."""

    file: str
    length: int
    config: tuple[int, int, int] | None = None
    #: The size of the snapshot's arrays file: when the journal outgrows it, compact.
    snapshot_bytes: int = 0


@dataclass(frozen=True)
class Replay:
    """A journal read back: the changes of its complete entries, in order, and its end."""

    changes: list[Change]
    position: Position


# --------------------------------------------------------------------------- encoding
def encode(changes: Sequence[Change]) -> bytes:
    """One record holding ``changes`` (an entry: replayed all or not at all)."""
    arrays: list[np.ndarray] = []
    described = []
    for change in changes:
        item: dict[str, Any] = {
            "op": change.op,
            "time": change.time,
            "labels": [_json_label(label) for label in change.labels],
        }
        if change.vectors is not None:
            vectors = np.ascontiguousarray(change.vectors)
            if vectors.dtype.str not in DTYPES or vectors.ndim != 2:
                raise ValueError(f"journal vectors must be 2-d float32/64, got {vectors.dtype}")
            item["array"] = {"dtype": vectors.dtype.str, "shape": list(vectors.shape)}
            arrays.append(vectors)
        if change.metadata is not None:
            item["metadata"] = dict(change.metadata)
        described.append(item)
    return _record({"changes": described}, arrays)


def _record(header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> bytes:
    head = json.dumps(header, ensure_ascii=False, allow_nan=False).encode()
    payload = b"".join([HEADER.pack(len(head)), head, *(a.tobytes() for a in arrays)])
    return RECORD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _json_label(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def begin(snapshot_sha256: str) -> bytes:
    """The first record of a journal: the snapshot its entries follow."""
    return _record({"snapshot": snapshot_sha256})


#: The length of that first record: a journal this long holds no update.
BEGIN_BYTES = len(begin("0" * 64))


# --------------------------------------------------------------------------- reading
def read(folder: Path, name: str, snapshot_sha256: str) -> Replay:
    """The changes of ``folder/name``, checked against the snapshot they follow.

    Raises
    ------
    FileNotFoundError
        The journal is missing (a compaction in another process replaced it: read again).
    ValueError
        Damage before the last entry, a journal of another snapshot, or an unreadable entry,
        naming the entry.
    """
    path = folder / name
    data = path.read_bytes()
    payloads, end = _split(data, path)
    if not payloads:
        raise ValueError(f"{path} has no header: it is not a protoshot journal")
    header = _header(payloads[0], path, 0)
    if header.get("snapshot") != snapshot_sha256:
        raise ValueError(
            f"{path} follows another snapshot than config.json's arrays file: it is not this "
            "model's journal"
        )
    changes = [c for n, p in enumerate(payloads[1:], 1) for c in _changes(p, path, n)]
    return Replay(changes, Position(name, end))


def _split(data: bytes, path: Path) -> tuple[list[bytes], int]:
    """The payloads of the complete records, and where they end (a torn tail is dropped)."""
    payloads: list[bytes] = []
    offset = 0
    while offset < len(data):
        payload = _payload_at(data, offset)
        if payload is None:
            if _any_record_after(data, offset):
                raise ValueError(
                    f"{path}: entry {len(payloads)} (byte {offset}) is damaged and later "
                    "entries follow it; refusing to guess which updates to replay"
                )
            warnings.warn(
                f"{path}: dropped an incomplete last entry ({len(data) - offset} bytes, a write "
                "that was interrupted or is still under way); every entry before it is kept",
                UserWarning,
                stacklevel=4,
            )
            break
        payloads.append(payload)
        offset += RECORD.size + len(payload)
    return payloads, offset


def _payload_at(data: bytes, offset: int) -> bytes | None:
    """The payload of the record at ``offset`` if it is whole and passes its checksum."""
    if offset + RECORD.size > len(data):
        return None
    magic, length, crc = RECORD.unpack_from(data, offset)
    start = offset + RECORD.size
    if magic != MAGIC or length > MAX_RECORD or start + length > len(data):
        return None
    payload = data[start : start + length]
    return payload if zlib.crc32(payload) == crc else None


def _any_record_after(data: bytes, offset: int) -> bool:
    found = data.find(MAGIC, offset + 1)
    while found != -1:
        if _payload_at(data, found) is not None:
            return True
        found = data.find(MAGIC, found + 1)
    return False


def _header(payload: bytes, path: Path, entry: int) -> dict[str, Any]:
    try:
        (length,) = HEADER.unpack_from(payload)
        header = json.loads(payload[HEADER.size : HEADER.size + length])
        if not isinstance(header, dict):
            raise TypeError("not an object")
    except (struct.error, ValueError, TypeError) as err:
        raise ValueError(f"{path}: entry {entry} has no readable header ({err})") from None
    return header


def _changes(payload: bytes, path: Path, entry: int) -> list[Change]:
    """The changes of one entry's payload, each field checked."""
    header = _header(payload, path, entry)
    offset = HEADER.size + HEADER.unpack_from(payload)[0]
    changes = []
    try:
        for item in header["changes"]:
            vectors = None
            if "array" in item:
                dtype, shape = item["array"]["dtype"], tuple(item["array"]["shape"])
                if dtype not in DTYPES or len(shape) != 2 or min(shape) < 0:
                    raise ValueError(f"bad array {dtype} {shape}")
                size = int(np.prod(shape)) * np.dtype(dtype).itemsize
                if offset + size > len(payload):
                    raise ValueError("its arrays are shorter than its header says")
                flat = np.frombuffer(payload, dtype, int(np.prod(shape)), offset)
                vectors, offset = flat.reshape(shape).copy(), offset + size
            labels = item["labels"]
            if not isinstance(labels, list):
                raise ValueError("labels must be a list")
            changes.append(
                Change(item["op"], tuple(labels), vectors, item.get("metadata"), item["time"])
            )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: entry {entry} is not a valid update ({err})") from None
    if offset != len(payload):
        raise ValueError(f"{path}: entry {entry} holds bytes its header does not describe")
    return changes


# --------------------------------------------------------------------------- writing
def append(folder: Path, position: Position, changes: Sequence[Change]) -> Position:
    """Append one entry after ``position`` and make it durable; returns the new end.

    Bytes past ``position`` that are not a whole record (an earlier append that failed
    half-way) are cut off first; a whole record there is an update another copy of the model
    committed, and the journal is refused, as is one shorter than ``position``: cutting it would
    lose an acknowledged update. On failure the journal is cut back to ``position``, so nothing
    unacknowledged is left to replay.
    """
    record = encode(changes)
    path = folder / position.file
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size < position.length:
            raise ValueError(
                f"{path} is shorter than when this model read it ({size} < {position.length} "
                "bytes): another process changed the folder"
            )
        if size > position.length:
            extra = os.pread(fd, size - position.length, position.length)
            if _payload_at(extra, 0) is not None or _any_record_after(extra, 0):
                raise ValueError(
                    f"{path} holds an update committed after this model was read (by another "
                    "copy of it): load the folder again before changing it"
                )
        try:
            if size > position.length:
                os.ftruncate(fd, position.length)
            written = os.pwrite(fd, record, position.length)
            if written != len(record):
                raise OSError(f"short write ({written} of {len(record)} bytes)")
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):  # else the next append, or a reader, cuts it
                os.ftruncate(fd, position.length)
            raise
    finally:
        os.close(fd)
    return replace(position, length=position.length + len(record))
