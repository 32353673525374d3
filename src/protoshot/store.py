"""The model folder as a file format, and the one durable writer every file in protoshot goes through.

A model folder holds::

    config.json                       format version, method parameters, classes, metadata,
                                      the name and SHA-256 of the arrays file
    prototypes-<sha256[:16]>.safetensors   the method's arrays (never a pickle)
    .protoshot.lock                   the writer lock (see :class:`FolderLock`)

Writes are atomic and durable: a new arrays file first, then ``config.json`` replaced in one step,
each flushed to disk before and after its rename, so a reader or a crash sees the old model or the
new one, never a mix. The previous arrays file stays until the next save, for a reader in another
process that has just read the old ``config.json``; a read that meets a save mid-way reads again.

Folders written by older formats are migrated on read (:data:`MIGRATIONS`); a folder from a newer
protoshot is refused with a clear message.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
LOCK_FILE = ".protoshot.lock"
ARRAYS_PREFIX = "prototypes-"
ARRAYS_SUFFIX = ".safetensors"


def _name_the_method(config: dict[str, Any]) -> dict[str, Any]:
    """Format 1 held prototypes only: name the method, with no class-name prior."""
    params = {**config.get("params", {}), "prior_weight": 0.0}
    return {**config, "method": "prototypes", "params": params}


#: ``{version: migrate}``: turns a config of format ``version`` into one of ``version + 1``.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _name_the_method}


# --------------------------------------------------------------------------- durable writes
@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``target`` to write into; on success it replaces ``target``.

    The file is flushed to disk before the rename and the folder after it, so ``target`` is the
    old content or the new one after any crash. On failure nothing is left behind.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    # created like any file (0666 less the umask), unlike mkstemp's private 0600; a file
    # replaced keeps the mode its owner gave it
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    if target.exists():
        os.chmod(tmp, target.stat().st_mode & 0o7777)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def write_atomically(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` all or nothing, durably (see :func:`atomic_path`)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- the model folder
@dataclass(frozen=True)
class StoredModel:
    """What a model folder holds: its (migrated) ``config.json`` and its arrays."""

    config: dict[str, Any]
    arrays: dict[str, np.ndarray]
    arrays_path: Path


def is_model_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved model (its ``config.json``)."""
    return (Path(folder) / CONFIG_FILE).is_file()


def write_model(
    folder: str | os.PathLike[str],
    config: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    overwrite: bool = False,
) -> Path:
    """Save ``arrays`` (safetensors) and ``config`` (JSON) to ``folder``, atomically and durably.

    ``config`` is the method's part (parameters, classes, metadata); the store adds the format
    version, the protoshot version and the arrays file's name and checksum.
    """
    from safetensors.numpy import save

    from protoshot import __version__

    path = Path(folder)
    if is_model_folder(path) and not overwrite:
        raise FileExistsError(f"{path} already holds a model; pass overwrite=True to replace it")
    path.mkdir(parents=True, exist_ok=True)
    previous = _arrays_file_named_by(path)
    data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    digest = hashlib.sha256(data).hexdigest()
    arrays_name = f"{ARRAYS_PREFIX}{digest[:16]}{ARRAYS_SUFFIX}"
    write_atomically(path / arrays_name, data)
    if previous and (path / previous).is_file() and previous != arrays_name:
        # a new name each save: it takes the mode its owner gave the previous arrays file
        os.chmod(path / arrays_name, (path / previous).stat().st_mode & 0o7777)
    full = {
        "format_version": FORMAT_VERSION,
        "protoshot_version": __version__,
        "arrays_file": arrays_name,
        "arrays_sha256": digest,
        **config,
    }
    write_atomically(path / CONFIG_FILE, json.dumps(full, indent=2, ensure_ascii=False).encode())
    # the save is committed: what follows is tidying, and its failure must not report it unsaved
    # (the previous arrays stay one more save, for a reader that has just read the old config)
    keep = {arrays_name, previous}
    stale = [p for p in path.glob(f"{ARRAYS_PREFIX}*{ARRAYS_SUFFIX}") if p.name not in keep]
    _remove_quietly([*stale, *_stray_temporaries(path)])
    return path


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
    """The config and arrays of a model folder, checked against the config's checksum.

    A save in another process between reading ``config.json`` and its arrays shows as a
    mismatch; reading again then gives the new model, so only a file that stays wrong is an error.
    """
    from safetensors.numpy import load

    path = Path(folder)
    for _ in range(attempts):
        config = read_config(path)
        arrays_path = path / str(config["arrays_file"])
        try:
            data = arrays_path.read_bytes()
        except FileNotFoundError:
            continue
        if hashlib.sha256(data).hexdigest() == config["arrays_sha256"]:
            try:
                arrays = load(data)
            except Exception as err:  # safetensors' own error type, from its Rust core
                raise ValueError(
                    f"{arrays_path} is not a readable safetensors file: {err}"
                ) from None
            return StoredModel(config, arrays, arrays_path)
    raise ValueError(f"{arrays_path} is missing or does not match config.json's checksum")


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


#: The arrays file a config may name: a bare file name of this folder, nothing else.
ARRAYS_NAME = re.compile(rf"{ARRAYS_PREFIX}[0-9a-f]{{16}}{re.escape(ARRAYS_SUFFIX)}")
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


def _arrays_file_named_by(path: Path) -> str | None:
    """The arrays file the current ``config.json`` in ``path`` names, if it can be read."""
    try:
        return str(read_config(path)["arrays_file"])
    except (OSError, ValueError, KeyError):
        return None


# --------------------------------------------------------------------------- the writer lock
class FolderInUseError(RuntimeError):
    """Another process writes to this model folder."""


class FolderLock:
    """An exclusive lock on a model folder, held until :meth:`release` (or process exit).

    ``protoshot serve`` keeps its own copy of the model and saves it on every update, so a second
    server, or ``protoshot add`` run beside it, would overwrite acknowledged updates (or have its
    own overwritten). The lock is an advisory ``flock`` on a file in the folder: the operating
    system releases it when the holder exits, even on ``kill -9``, so a crash never leaves the
    folder locked. Where ``fcntl`` does not exist (Windows) the lock does nothing.
    """

    def __init__(self, folder: str | os.PathLike[str], holder: str) -> None:
        """Take the lock for ``holder`` (e.g. ``"protoshot serve"``), or raise FolderInUseError."""
        self._fd: int | None = None  # set first: __del__ runs even when open fails
        try:
            self._fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise PermissionError(
                f"cannot write to {folder} ({err.strerror}): it cannot be changed here; serve "
                "it with --read-only, or copy it somewhere writable"
            ) from None
        if fcntl is None:  # pragma: no cover - Windows
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "another process"
            self.release()
            raise FolderInUseError(
                f"{folder} is in use by {other}; change a served model through its HTTP API, "
                "or stop the server first"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{holder} (pid {os.getpid()})".encode(), 0)

    def release(self) -> None:
        """Let other writers in (closing the file drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()


@contextmanager
def folder_lock(folder: str | os.PathLike[str], holder: str) -> Iterator[None]:
    """Hold ``folder`` for the ``with`` block if it holds a model (a new one has no other writer)."""
    if not is_model_folder(folder):
        yield
        return
    lock = FolderLock(folder, holder)
    try:
        yield
    finally:
        lock.release()
