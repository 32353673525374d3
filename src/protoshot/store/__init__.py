"""The model folder as a file format: a snapshot, its update journal, checked reads, one writer.

A model folder holds::

    config.json                       format version, method parameters, classes, metadata,
                                      the names of the arrays file (and its SHA-256) and journal
    prototypes-<sha256[:16]>.safetensors   the snapshot's arrays (never a pickle)
    journal-<16 hex>.log              updates since the snapshot (:mod:`protoshot.store.journal`)
    .protoshot.lock                   the writer lock (:class:`FolderLock`)

A snapshot is written atomically and durably (:mod:`protoshot.store.durable`): new arrays and a new
empty journal first, then ``config.json`` replaced in one step, so a reader or a crash sees the old
model or the new one, never a mix. An update is one journal entry, appended and flushed to disk
before it is acknowledged (:func:`append_changes`): it writes its own bytes, not the model's.
When the journal outgrows the snapshot, :func:`install_snapshot` folds it into a new one; entries
appended meanwhile move to the new journal. The previous arrays file and journal stay until the
next snapshot, for a reader in another process that has just read the old ``config.json``; a read
that meets a snapshot mid-way reads again, and sees a snapshot plus a prefix of its journal.

Folders written by older formats are migrated on read (:data:`MIGRATIONS`); a folder from a newer
protoshot is refused with a clear message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protoshot.store import journal
from protoshot.store.durable import atomic_path, write_atomically
from protoshot.store.journal import Change, Position
from protoshot.store.lock import LOCK_FILE, FolderInUseError, FolderLock, folder_lock

__all__ = [
    "CONFIG_FILE", "FORMAT_VERSION", "LOCK_FILE", "MIGRATIONS", "ArraysFile", "Change",
    "FolderInUseError", "FolderLock", "Position", "StoredModel", "append_changes",
    "atomic_path", "check_config", "folder_lock", "install_snapshot", "is_model_folder",
    "needs_compaction", "read_config", "read_model", "write_arrays", "write_atomically",
    "write_model",
]  # fmt: skip

FORMAT_VERSION = 3
CONFIG_FILE = "config.json"
ARRAYS_PREFIX = "prototypes-"
ARRAYS_SUFFIX = ".safetensors"
JOURNAL_PREFIX = "journal-"
JOURNAL_SUFFIX = ".log"
#: A journal is folded into a new snapshot when it is larger than the snapshot's arrays and
#: than this many bytes: an update then writes at most about twice its own size on average.
COMPACT_AFTER_BYTES = 4 << 20


def _name_the_method(config: dict[str, Any]) -> dict[str, Any]:
    """Format 1 held prototypes only: name the method, with no class-name prior."""
    params = {**config.get("params", {}), "prior_weight": 0.0}
    return {**config, "method": "prototypes", "params": params}


#: ``{version: migrate}``: turns a config of format ``version`` into one of ``version + 1``.
def _no_journal(config: dict[str, Any]) -> dict[str, Any]:
    """Format 2 had no journal: the snapshot is the whole model."""
    return config


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _name_the_method,
    2: _no_journal,
}


# --------------------------------------------------------------------------- the model folder
@dataclass(frozen=True)
class StoredModel:
    """What a model folder holds: its (migrated) ``config.json``, the snapshot's arrays, the
    changes its journal records since, and where the journal ends (``None``: no journal)."""

    config: dict[str, Any]
    arrays: dict[str, np.ndarray]
    arrays_path: Path
    changes: list[Change] = dataclasses.field(default_factory=list)
    position: Position | None = None


def is_model_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved model (its ``config.json``)."""
    return (Path(folder) / CONFIG_FILE).is_file()


@dataclass(frozen=True)
class ArraysFile:
    """A snapshot's arrays written into a folder: its file name, SHA-256 and size."""

    name: str
    sha256: str
    size: int


def write_model(
    folder: str | os.PathLike[str],
    config: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    overwrite: bool = False,
) -> Position:
    """Save a snapshot, ``arrays`` (safetensors) and ``config`` (JSON), with an empty journal,
    to ``folder``, atomically and durably; returns where its journal ends.

    ``config`` is the method's part (parameters, classes, metadata); the store adds the format
    version, the protoshot version, and the names of the arrays file and journal.
    """
    path = Path(folder)
    if is_model_folder(path) and not overwrite:
        raise FileExistsError(f"{path} already holds a model; pass overwrite=True to replace it")
    path.mkdir(parents=True, exist_ok=True)
    return install_snapshot(path, config, write_arrays(path, arrays))


def write_arrays(folder: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> ArraysFile:
    """Write a snapshot's arrays into ``folder`` (not yet in use).

    The slow half of a snapshot, which needs no lock: nothing reads the file until
    :func:`install_snapshot` names it.
    """
    from safetensors.numpy import save

    path = Path(folder)
    data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    digest = hashlib.sha256(data).hexdigest()
    name = f"{ARRAYS_PREFIX}{digest[:16]}{ARRAYS_SUFFIX}"
    write_atomically(path / name, data)
    previous = _named_by_config(path).get("arrays_file")
    if previous and previous != name and (path / previous).is_file():
        # a new name each save: it takes the mode its owner gave the previous arrays file
        os.chmod(path / name, (path / previous).stat().st_mode & 0o7777)
    return ArraysFile(name, digest, len(data))


def install_snapshot(
    folder: str | os.PathLike[str],
    config: dict[str, Any],
    arrays: ArraysFile,
    *,
    since: Position | None = None,
    upto: Position | None = None,
) -> Position:
    """Make ``arrays`` (from :func:`write_arrays`) and ``config`` the folder's snapshot.

    ``since``: where the journal stood when the snapshot's model was taken, and ``upto``: where
    it ends now (the current model's position, every update committed); the entries between
    move to the new journal (compaction while updates go on). Without them the journal starts
    empty. Returns where the new journal ends. The caller holds the folder's writer.
    """
    from protoshot import __version__

    path = Path(folder)
    tail = b""
    if since is not None or upto is not None:
        if since is None or upto is None or since.file != upto.file or since.length > upto.length:
            raise ValueError(
                f"a compaction must move the entries of one journal, from where its snapshot "
                f"was taken to where it ends now; got {since} and {upto}"
            )
        with (path / since.file).open("rb") as f:
            f.seek(since.length)
            tail = f.read(upto.length - since.length)  # never a torn tail past the end
    digest, arrays_file = arrays.sha256, arrays.name
    journal_name = f"{JOURNAL_PREFIX}{secrets.token_hex(8)}{JOURNAL_SUFFIX}"
    write_atomically(path / journal_name, journal.begin(digest) + tail)
    previous = _named_by_config(path)
    full = {
        "format_version": FORMAT_VERSION,
        "protoshot_version": __version__,
        "arrays_file": arrays_file,
        "arrays_sha256": digest,
        "journal_file": journal_name,
        **config,
    }
    write_atomically(path / CONFIG_FILE, json.dumps(full, indent=2, ensure_ascii=False).encode())
    # the snapshot is committed: what follows is tidying, and its failure must not report it
    # unsaved (the previous files stay one more snapshot, for a reader of the old config)
    keep = {arrays_file, journal_name, *previous.values()}
    stale = [
        p
        for pattern in (f"{ARRAYS_PREFIX}*{ARRAYS_SUFFIX}", f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}")
        for p in path.glob(pattern)
        if p.name not in keep
    ]
    _remove_quietly([*stale, *_stray_temporaries(path)])
    return Position(journal_name, len(journal.begin(digest)) + len(tail), config_identity(path))


def append_changes(
    folder: str | os.PathLike[str], position: Position, changes: Sequence[Change]
) -> Position:
    """Record ``changes`` as one journal entry after ``position``, durably; returns the new end.

    Refuses when ``config.json`` names another journal (the folder was re-saved since the model
    was read): appending there would lose updates. The caller holds the folder's writer.
    """
    path = Path(folder)
    seen = config_identity(path)
    if seen is None or seen != position.config:  # changed (or unknown) since: read it
        named = read_config(path).get("journal_file")
        if named != position.file:
            raise ValueError(
                f"{path} was saved again since this model was read (its journal is {named}, not "
                f"{position.file}); load it again before changing it"
            )
    return journal.append(path, dataclasses.replace(position, config=seen), changes)


def config_identity(folder: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """What tells one ``config.json`` of ``folder`` from another (``None``: there is none)."""
    try:
        stat = (Path(folder) / CONFIG_FILE).stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def needs_compaction(folder: str | os.PathLike[str], position: Position) -> bool:
    """Whether the journal has grown past the snapshot (and :data:`COMPACT_AFTER_BYTES`);
    answered from ``position`` alone, without reading the folder."""
    return position.length > max(COMPACT_AFTER_BYTES, position.snapshot_bytes)


#: Temporary files of :func:`atomic_path`; one older than this was left by a killed writer.
STRAY_AFTER_SECONDS = 60.0


def _stray_temporaries(folder: Path) -> list[Path]:
    """Temporary files an interrupted save left (a kill between creating and renaming them):
    only old regular files, since a temporary is never read by anyone and a recent one may
    belong to a writer still at work."""
    import time

    pattern = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")
    now = time.time()
    found = []
    for entry in folder.iterdir():
        try:
            if (
                pattern.fullmatch(entry.name)
                and entry.is_file()
                and now - entry.stat().st_mtime > STRAY_AFTER_SECONDS
            ):
                found.append(entry)
        except OSError:
            continue
    return found


def _remove_quietly(paths: list[Path]) -> None:
    """Delete files, best effort: one that cannot be removed waits for a later save."""
    for stale in paths:
        try:
            stale.unlink(missing_ok=True)
        except OSError:
            continue


def read_model(folder: str | os.PathLike[str], attempts: int = 3) -> StoredModel:
    """The snapshot and journal of a model folder, checked against the config's checksum.

    A snapshot installed by another process between reading ``config.json`` and its files shows
    as a missing or mismatched file; reading again then gives the new model, so only a file that
    stays wrong is an error.
    """
    from safetensors.numpy import load

    path = Path(folder)
    for _ in range(attempts):
        identity = config_identity(path)  # before reading: a config replaced after reads again
        config = read_config(path)
        arrays_path = path / str(config["arrays_file"])
        try:
            data = arrays_path.read_bytes()
        except FileNotFoundError:
            continue
        if hashlib.sha256(data).hexdigest() != config["arrays_sha256"]:
            continue
        try:
            arrays = load(data)
        except Exception as err:  # safetensors' own error type, from its Rust core
            raise ValueError(f"{arrays_path} is not a readable safetensors file: {err}") from None
        if not config.get("journal_file"):
            return StoredModel(config, arrays, arrays_path)
        try:
            replay = journal.read(path, config["journal_file"], config["arrays_sha256"])
        except FileNotFoundError:
            continue
        position = dataclasses.replace(replay.position, config=identity, snapshot_bytes=len(data))
        return StoredModel(config, arrays, arrays_path, replay.changes, position)
    raise ValueError(
        f"{arrays_path} or its journal is missing, or does not match config.json's checksum"
    )


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``config.json`` of a model folder, migrated to the current format version."""
    path = Path(folder)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} is not a protoshot model: {CONFIG_FILE} is missing")
    try:
        config = dict(json.loads(config_path.read_text(encoding="utf-8")))
        version = int(config["format_version"])
        missing = [key for key in ("arrays_file", "arrays_sha256") if key not in config]
        if missing:
            raise KeyError(missing[0])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{config_path} is not a valid protoshot model config: {err}") from err
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written in model format {version} by a newer protoshot "
            f"({config.get('protoshot_version', '?')}); this version reads up to format "
            f"{FORMAT_VERSION}: upgrade protoshot"
        )
    if version < FORMAT_VERSION and version not in MIGRATIONS:
        raise ValueError(f"{config_path} has an unknown model format {version}")
    while version < FORMAT_VERSION:
        config = MIGRATIONS[version](config)
        version = config["format_version"] = version + 1
    check_config(config, config_path)
    return config


#: The arrays file and journal a config may name: bare file names of this folder, nothing else.
ARRAYS_NAME = re.compile(rf"{ARRAYS_PREFIX}[0-9a-f]{{16}}{re.escape(ARRAYS_SUFFIX)}")
JOURNAL_NAME = re.compile(rf"{JOURNAL_PREFIX}[0-9a-f]{{16}}{re.escape(JOURNAL_SUFFIX)}")
#: The fields every (migrated) config holds, and the JSON types each takes.
FIELDS: dict[str, tuple[type, ...]] = {
    "arrays_file": (str,),
    "arrays_sha256": (str,),
    "method": (str,),
    "params": (dict,),
    "classes": (list,),
    "n_features_in": (int,),
    "fixed_center": (bool,),
    "state": (dict,),
    "metadata": (dict,),
}


def check_config(config: dict[str, Any], where: str | os.PathLike[str]) -> None:
    """Check a config like a file format: each field's type and range, the class names
    (unique, one kind, valid names), and an ``arrays_file`` that is a bare file name of the
    folder (never a path that leads elsewhere).

    Raises
    ------
    ValueError
        One line naming the file and the field.
    """
    from protoshot.labels import check_name

    def bad(field: str, why: str) -> ValueError:
        return ValueError(f"{where}: {field} {why}")

    for field, kinds in FIELDS.items():
        value = config.get(field)
        if not isinstance(value, kinds) or (int in kinds and isinstance(value, bool)):
            raise bad(field, f"must be a {kinds[0].__name__}, got {value!r:.60}")
    if not ARRAYS_NAME.fullmatch(config["arrays_file"]):
        raise bad(
            "arrays_file",
            f"must be a file of the folder like prototypes-<16 hex>.safetensors, got {config['arrays_file']!r:.80}",
        )
    journal_file = config.get("journal_file")
    if journal_file is not None and not (
        isinstance(journal_file, str) and JOURNAL_NAME.fullmatch(journal_file)
    ):
        raise bad(
            "journal_file",
            f"must be a file of the folder like journal-<16 hex>.log, got {journal_file!r:.80}",
        )
    if not re.fullmatch(r"[0-9a-f]{64}", config["arrays_sha256"]):
        raise bad("arrays_sha256", "must be 64 hexadecimal digits")
    if config["n_features_in"] < 1:
        raise bad("n_features_in", f"must be at least 1, got {config['n_features_in']}")
    classes = config["classes"]
    types = {type(c) for c in classes}
    if not classes or not (types <= {str} or types <= {int, float} or types <= {bool}):
        raise bad("classes", "must be a non-empty list of names, or of numbers")
    try:
        canonical = [check_name(c) if isinstance(c, str) else c for c in classes]
    except ValueError as err:
        raise bad("classes", f"holds a bad name: {err}") from None
    if len(set(canonical)) != len(classes) or canonical != sorted(canonical):
        raise bad("classes", "must be distinct names in sorted order")


def _named_by_config(path: Path) -> dict[str, str]:
    """The arrays file and journal the current ``config.json`` in ``path`` names, if readable."""
    try:
        config = read_config(path)
    except (OSError, ValueError, KeyError):
        return {}
    return {k: str(config[k]) for k in ("arrays_file", "journal_file") if config.get(k)}
