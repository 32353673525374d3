"""The writer lock of a model folder: one writer at a time, released by the OS on any exit."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".protoshot.lock"


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
    if not (Path(folder) / "config.json").is_file():  # a new model has no other writer
        yield
        return
    lock = FolderLock(folder, holder)
    try:
        yield
    finally:
        lock.release()
