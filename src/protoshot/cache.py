"""Persistent, content-addressed embedding cache.

One SQLite database in WAL mode holds float32 vectors as blobs, keyed by the embedder's
fingerprint and a SHA-256 digest of the item's bytes (never ``str(item)``). Each
:meth:`EmbeddingCache.put` is one transaction, so a process killed mid-write loses at most the
batch in flight and never leaves a corrupt store; several processes may read and write at once
(writers wait on each other up to ``timeout`` seconds).

Layout: ``<directory>/embeddings.sqlite3`` (plus SQLite's ``-wal`` / ``-shm`` files). The default
directory is ``$PROTOSHOT_CACHE_DIR``, else ``~/.cache/protoshot``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

__all__ = [
    "CacheStats",
    "EmbeddingCache",
    "ModelUsage",
    "default_cache_dir",
    "item_key",
]

DB_NAME = "embeddings.sqlite3"
# host parameters per statement; SQLite >= 3.32 allows 32766, older builds 999
_CHUNK = 900

# AUTOINCREMENT: a cleared model's id is never given to another model. Vectors sit in a rowid
# table with a unique (model, key) index: with 1.5 kB rows that is 3x smaller and several times
# faster to read and write than a WITHOUT ROWID table (measured at 384-d).
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS models ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " fingerprint TEXT NOT NULL UNIQUE,"
    " spec TEXT NOT NULL,"
    " dim INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS vectors (model INTEGER NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS vectors_model_key ON vectors (model, key)",
)


def default_cache_dir() -> Path:
    """Return ``$PROTOSHOT_CACHE_DIR`` if set, else ``~/.cache/protoshot``."""
    env = os.environ.get("PROTOSHOT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "protoshot"


@dataclass(frozen=True)
class CacheStats:
    """How one :func:`protoshot.embedders.embed` call was served.

    Attributes
    ----------
    hits : int
        Items whose vector came from the cache.
    misses : int
        Items that were not in the cache (``hits + misses`` = number of items).
    embedded : int
        Distinct items the model actually ran on (duplicates among the misses run once).
    seconds : float
        Wall-clock time of the whole call.
    """

    hits: int
    misses: int
    embedded: int
    seconds: float

    @property
    def hit_rate(self) -> float:
        """Fraction of items served from the cache (0 when there were no items)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(frozen=True)
class ModelUsage:
    """One model's share of the cache, as listed by :meth:`EmbeddingCache.report`."""

    fingerprint: str
    spec: str
    dim: int
    entries: int
    bytes: int


def item_key(item: Any, modality: str = "any") -> bytes:
    """SHA-256 digest of an item's content, tagged by its kind.

    Parameters
    ----------
    item : str | os.PathLike | bytes | PIL.Image.Image | numpy.ndarray | torch.Tensor
        Text is hashed as UTF-8; a path as the bytes of the file it names (a ``str`` is a path
        only when ``modality == "image"``); a PIL image as mode, size and pixel bytes; an array
        as dtype, shape and bytes.
    modality : {"text", "image", "any"}
        The embedder's modality; decides whether a ``str`` is text or an image path.

    Returns
    -------
    bytes
        32-byte digest.
    """
    h = hashlib.sha256()
    if isinstance(item, str) and modality != "image":
        h.update(b"text\0")
        h.update(item.encode("utf-8", "surrogatepass"))
    elif isinstance(item, (str, os.PathLike)):
        h.update(b"file\0")
        h.update(Path(item).read_bytes())
    elif isinstance(item, (bytes, bytearray, memoryview)):
        h.update(b"bytes\0")
        h.update(item)
    elif isinstance(item, np.ndarray):
        _update_array(h, item)
    elif _is_pil_image(item):
        h.update(f"pil\0{item.mode}\0{item.size[0]}x{item.size[1]}\0".encode())
        h.update(item.tobytes())
    elif _is_tensor(item):
        _update_array(h, item.detach().cpu().numpy())
    else:
        raise TypeError(
            f"cannot hash an item of type {type(item).__name__!r}: expected str, os.PathLike, "
            "bytes, PIL.Image.Image, numpy.ndarray or torch.Tensor"
        )
    return h.digest()


def _update_array(h: Any, array: np.ndarray) -> None:
    if array.dtype.hasobject:
        raise TypeError(f"cannot hash an object array (dtype {array.dtype}): expected numbers")
    h.update(f"ndarray\0{array.dtype.str}\0{array.shape}\0".encode())
    h.update(np.ascontiguousarray(array).tobytes())


def _is_pil_image(item: Any) -> bool:
    image_module = sys.modules.get("PIL.Image")
    return image_module is not None and isinstance(item, image_module.Image)


def _is_tensor(item: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(item, torch.Tensor)


class EmbeddingCache:
    """Content-addressed store of embedding vectors in one SQLite file.

    Parameters
    ----------
    directory : str | os.PathLike | None
        Folder of the database; ``None`` means :func:`default_cache_dir`. Created if missing.
    timeout : float
        Seconds a writer waits for another process's transaction before giving up.

    Examples
    --------
    >>> with EmbeddingCache(tmp_dir) as cache:  # doctest: +SKIP
    ...     cache.put(fp, keys, vectors, spec="minilm")
    ...     found, hits = cache.get(fp, keys)
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, timeout: float = 60.0):
        self.directory = (
            Path(directory).expanduser() if directory is not None else default_cache_dir()
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / DB_NAME
        # autocommit mode: every write below runs in an explicit BEGIN IMMEDIATE transaction,
        # which takes the write lock up front (a deferred one could fail at upgrade time)
        self._db = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()  # threads may share one cache (e.g. a web service)
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        # page size and auto-vacuum take effect on a new file only
        self._db.execute("PRAGMA page_size = 16384")
        self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: durable across a killed process, may lose the last commits on
        # power loss, never corrupts
        self._db.execute("PRAGMA synchronous = NORMAL")
        with self._write():
            for statement in _SCHEMA:
                self._db.execute(statement)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (the data stays on disk)."""
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r})"

    # -- reads and writes --------------------------------------------------------------------
    def get(self, fingerprint: str, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Look up many items of one model at once.

        Parameters
        ----------
        fingerprint : str
            The embedder's fingerprint.
        keys : sequence of bytes
            Item digests from :func:`item_key`.

        Returns
        -------
        found : bool [n_keys]
            Which keys are cached.
        vectors : float32 [found.sum(), dim]
            Their vectors, in the order of ``keys``.
        """
        found = np.zeros(len(keys), dtype=bool)
        rows: dict[bytes, bytes] = {}
        with self._transaction():  # one snapshot for every chunk
            row = self._model(fingerprint)
            if row is None or not keys:
                return found, np.zeros((0, row[1] if row else 0), dtype=np.float32)
            model, dim = row
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})"
                rows.update(self._db.execute(query, (model, *chunk)).fetchall())
        blobs = [rows.get(key) for key in keys]
        found[:] = [blob is not None for blob in blobs]
        flat = np.frombuffer(b"".join(blob for blob in blobs if blob is not None), np.float32)
        return found, flat.reshape(-1, dim)

    def put(
        self, fingerprint: str, keys: Sequence[bytes], vectors: np.ndarray, *, spec: str = ""
    ) -> None:
        """Store vectors in one transaction (existing keys keep their vector).

        Parameters
        ----------
        fingerprint : str
            The embedder's fingerprint.
        keys : sequence of bytes
            Item digests from :func:`item_key`, one per row of ``vectors``.
        vectors : float32 [n_keys, dim]
            The embeddings.
        spec : str
            Human-readable model spec, shown by :meth:`report`.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(
                f"vectors must have shape [{len(keys)}, dim] to match the keys, "
                f"got {list(vectors.shape)}"
            )
        with self._write():
            self._db.execute(
                "INSERT OR IGNORE INTO models (fingerprint, spec, dim) VALUES (?, ?, ?)",
                (fingerprint, spec, vectors.shape[1]),
            )
            model, dim = self._model(fingerprint) or (0, 0)
            if dim != vectors.shape[1]:
                raise ValueError(
                    f"model {fingerprint[:12]} is cached with dim {dim}, "
                    f"got vectors of dim {vectors.shape[1]}"
                )
            self._db.executemany(
                "INSERT OR IGNORE INTO vectors (model, key, vector) VALUES (?, ?, ?)",
                ((model, key, row.tobytes()) for key, row in zip(keys, vectors, strict=True)),
            )

    # -- housekeeping ------------------------------------------------------------------------
    def report(self) -> list[ModelUsage]:
        """Entries and bytes of vector data per model, largest first."""
        with self._transaction():
            rows = self._db.execute(
                "SELECT m.fingerprint, m.spec, m.dim, COUNT(v.key),"
                " COALESCE(SUM(LENGTH(v.vector)), 0)"
                " FROM models m LEFT JOIN vectors v ON v.model = m.id"
                " GROUP BY m.id ORDER BY 5 DESC, 2"
            ).fetchall()
        return [ModelUsage(*row) for row in rows]

    def size_bytes(self) -> int:
        """Bytes the cache takes on disk (database, WAL and shared-memory files)."""
        files = (self.path.with_name(self.path.name + suffix) for suffix in ("", "-wal", "-shm"))
        return sum(f.stat().st_size for f in files if f.exists())

    def clear(self, model: str) -> int:
        """Delete one model's entries.

        Parameters
        ----------
        model : str
            A fingerprint, a unique fingerprint prefix (at least 8 characters) or a spec.

        Returns
        -------
        int
            Number of vectors deleted.
        """
        with self._write():
            ids = self._match_models(model)
            deleted = 0
            for model_id in ids:
                cursor = self._db.execute("DELETE FROM vectors WHERE model = ?", (model_id,))
                deleted += cursor.rowcount
                self._db.execute("DELETE FROM models WHERE id = ?", (model_id,))
        with self._lock:
            # executescript steps the pragma to the end; execute would free a single page
            self._db.executescript("PRAGMA incremental_vacuum;")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # and shrink the files
        return deleted

    def _match_models(self, model: str) -> list[int]:
        rows = self._db.execute("SELECT id, fingerprint, spec FROM models").fetchall()
        by_spec = [row[0] for row in rows if row[2] == model]
        by_print = [row[0] for row in rows if len(model) >= 8 and row[1].startswith(model)]
        matches = by_spec or by_print
        if not matches:
            known = ", ".join(f"{spec or '?'} ({fp[:12]})" for _, fp, spec in rows) or "none"
            raise ValueError(f"no cached model matches {model!r}; cached models: {known}")
        if not by_spec and len(by_print) > 1:
            raise ValueError(f"fingerprint prefix {model!r} matches {len(by_print)} models")
        return matches

    # -- internals ---------------------------------------------------------------------------
    @contextmanager
    def _transaction(self, mode: str = "DEFERRED") -> Iterator[None]:
        """One transaction (``IMMEDIATE`` takes the write lock up front), one thread at a time."""
        with self._lock:
            self._db.execute(f"BEGIN {mode}")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self) -> AbstractContextManager[None]:
        return self._transaction("IMMEDIATE")

    def _model(self, fingerprint: str) -> tuple[int, int] | None:
        row = self._db.execute(
            "SELECT id, dim FROM models WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None


#: Where embeddings are cached: an open cache, its folder, ``True`` for the user's cache
#: (``$PROTOSHOT_CACHE_DIR`` or ``~/.cache/protoshot``), or ``None`` / ``False`` for none.
CacheArg = EmbeddingCache | str | os.PathLike[str] | bool | None


@contextmanager
def open_cache(cache: CacheArg) -> Iterator[EmbeddingCache | None]:
    """The cache a :data:`CacheArg` names, open for the ``with`` block (``None``: no cache)."""
    if cache is None or cache is False:
        yield None
    elif isinstance(cache, EmbeddingCache):
        yield cache
    elif cache is True or isinstance(cache, (str, os.PathLike)):
        with EmbeddingCache(None if cache is True else cache) as store:
            yield store
    else:
        raise TypeError(
            f"cache must be an EmbeddingCache, a directory, True or None, "
            f"got {type(cache).__name__}"
        )
