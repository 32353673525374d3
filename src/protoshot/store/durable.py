"""Durable, atomic file writes: the one writer every file protoshot saves goes through."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
