"""``EmbeddingTable``: embedded samples on disk as Parquet, and readers of embeddings.

- :class:`EmbeddingTable`: vectors, labels, ids, classes and the model that made them; saved
  and loaded as a plain Parquet file (pandas, polars and DuckDB read it as is);
- :func:`read_arrays`: already-embedded numpy arrays (``.npz`` / ``.npy``), never unpickled;
- :func:`load_table`: either of the two, by suffix.

Independent of the source readers: a table is what embedding ``Samples`` gives
(:func:`protoshot.pipeline.embed_samples`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protoshot.data.samples import _label_array, _pick_column
from protoshot.store import atomic_path

__all__ = ["EmbeddingTable", "check_separate_labels", "load_table", "read_arrays"]

_METADATA_KEY = b"protoshot"


@dataclass(frozen=True, eq=False)
class EmbeddingTable:
    """Embedded samples: vectors, labels, ids, class names and the model that made them.

    On disk a Parquet file with columns ``id`` (string), ``label`` (string or int64) and
    ``embedding`` (``fixed_size_list<float32>[dim]``); the model spec, fingerprint and classes
    sit in the schema metadata under ``protoshot``. pandas, polars and DuckDB read it as is.

    Attributes
    ----------
    vectors : float32 [n_samples, dim]
    labels : numpy.ndarray [n_samples]
    ids : numpy.ndarray of str [n_samples]
    classes : list
        Class names in a fixed order (default: sorted labels).
    model : str
        Spec of the embedder ("" if unknown).
    fingerprint : str
        Fingerprint of the embedder ("" if unknown).
    """

    vectors: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    classes: list[Any]
    model: str = ""
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.dtype != np.float32:
            raise ValueError(
                f"vectors must be float32 [n_samples, dim], got {self.vectors.dtype} "
                f"{list(self.vectors.shape)}"
            )
        n = self.vectors.shape[0]
        if self.labels.shape != (n,) or self.ids.shape != (n,):
            raise ValueError(
                f"labels and ids must have shape [{n}] to match the vectors, "
                f"got {list(self.labels.shape)} and {list(self.ids.shape)}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct, got {self.classes}")
        unknown = sorted(set(self.labels.tolist()) - set(self.classes), key=str)
        if unknown:
            raise ValueError(
                f"labels {unknown[:5]} are not among the classes {self.classes[:5]}..."
            )

    @classmethod
    def from_arrays(
        cls,
        vectors: Any,
        labels: Sequence[Any] | np.ndarray,
        *,
        ids: Sequence[Any] | np.ndarray | None = None,
        classes: Sequence[Any] | None = None,
        model: str = "",
        fingerprint: str = "",
    ) -> EmbeddingTable:
        """Build a table, converting vectors to float32 and ids to str (default: row numbers)."""
        array = np.asarray(vectors, dtype=np.float32)
        label_array = _label_array(labels)
        if ids is None:
            ids = [str(i) for i in range(len(label_array))]
        if classes is None:
            classes = np.unique(label_array).tolist()
        return cls(
            np.ascontiguousarray(array),
            label_array,
            np.asarray(ids, dtype=str),
            [_plain(c) for c in classes],
            model,
            fingerprint,
        )

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        """Length of each vector."""
        return int(self.vectors.shape[1])

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the table as Parquet, atomically and durably.

        The table goes to a temporary file beside ``path`` that replaces it only once complete
        and flushed to disk (:func:`protoshot.store.atomic_path`): a failed write leaves
        ``path`` as it was and no temporary file behind.

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``overwrite`` is false.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")
        flat = pa.array(self.vectors.reshape(-1), type=pa.float32())
        embedding = pa.FixedSizeListArray.from_arrays(flat, self.dim)
        metadata = {
            "format": 1,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "classes": self.classes,
            "dim": self.dim,
        }
        table = pa.table(
            {
                "id": pa.array(self.ids.tolist(), pa.string()),
                "label": self.labels,
                "embedding": embedding,
            }
        ).replace_schema_metadata({_METADATA_KEY: json.dumps(metadata)})
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        embedding_column: str | None = None,
        label_column: str | None = None,
    ) -> EmbeddingTable:
        """Read a table written by :meth:`save`, or any Parquet file with a column of vectors
        (``embedding_column``, default ``embedding``) and one of labels (default ``label``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        # one file without pyarrow.dataset, whose import (pandas with it) costs start-up time
        table = _read_folder(path) if path.is_dir() else pq.ParquetFile(path).read()
        vectors_key, label_key = embedding_column or "embedding", label_column or "label"
        for column in (label_key, vectors_key):
            if column not in table.column_names:
                raise ValueError(f"{path} has no {column!r} column; columns: {table.column_names}")
        column = table.column(vectors_key).combine_chunks()
        if not (pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type)):
            raise ValueError(f"{path}: {vectors_key!r} must be a list of floats, got {column.type}")
        if column.null_count:
            raise ValueError(f"{path}: {vectors_key!r} has {column.null_count} missing vectors")
        lengths = set(column.value_lengths().to_pylist()) if pa.types.is_list(column.type) else None
        if lengths is not None and len(lengths) > 1:
            raise ValueError(f"{path}: vectors have different lengths {sorted(lengths)[:5]}")
        values = _floats(column.flatten())
        vectors = values.reshape(len(table), -1) if len(table) else values.reshape(0, 0)
        meta = json.loads((table.schema.metadata or {}).get(_METADATA_KEY, b"{}"))
        ids = table.column("id").to_pylist() if "id" in table.column_names else None
        return cls.from_arrays(
            vectors,
            table.column(label_key).to_pylist(),
            ids=ids,
            classes=meta.get("classes"),
            model=meta.get("model", ""),
            fingerprint=meta.get("fingerprint", ""),
        )


def _read_folder(path: Path) -> Any:
    """The Parquet shards of a folder (``protoshot embed --engine ray``) as one table: rows
    with the same id once (a retried batch), classes from the labels, one model for all.

    Raises
    ------
    ValueError
        If the folder holds no Parquet file, or shards of different embedders.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = sorted(p for p in path.glob("*.parquet") if not p.name.startswith((".", "_")))
    if not shards:
        raise ValueError(f"{path} is a folder with no Parquet file")
    tables = [pq.read_table(shard) for shard in shards]
    models = {
        tuple(json.loads((t.schema.metadata or {}).get(_METADATA_KEY, b"{}")).get(k, "")
              for k in ("model", "fingerprint"))
        for t in tables
    }  # fmt: skip
    if len(models) > 1:
        raise ValueError(f"{path} holds shards of different embedders: {sorted(models)[:3]}")
    model, fingerprint = models.pop()
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    if "id" in table.column_names:  # the first row of each id
        keep = np.unique(table.column("id").to_numpy(zero_copy_only=False), return_index=True)[1]
        table = table.take(pa.array(np.sort(keep))) if len(keep) < len(table) else table
    metadata = {"format": 1, "model": model, "fingerprint": fingerprint}
    return table.replace_schema_metadata({_METADATA_KEY: json.dumps(metadata)})


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars (for JSON metadata)."""
    return value.item() if isinstance(value, np.generic) else value


_VECTOR_KEYS = ("embeddings", "vectors", "features", "X", "x")
_LABEL_KEYS = ("labels", "y", "targets")


def read_arrays(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | Sequence[Any] | None = None,
    embedding_column: str | None = None,
    label_column: str | None = None,
) -> EmbeddingTable:
    """Read already-embedded arrays.

    Parameters
    ----------
    path : path
        An ``.npz`` with ``embeddings`` (or ``vectors``, ``features``, ``X``) and ``labels``
        (or ``y``, ``targets``), optionally ``ids`` and ``classes``; or an ``.npy`` of vectors.
    labels : path or sequence, optional
        Labels for an ``.npy``: an ``.npy`` file, a text file with one label per line, or the
        labels themselves.
    embedding_column, label_column : str, optional
        The ``.npz`` arrays to read (default: detected).

    Returns
    -------
    EmbeddingTable
        With no model spec or fingerprint. Pickled (object) arrays are refused.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if labels is None:
            raise ValueError(
                f"{path} holds vectors only: give its labels (--labels FILE, or labels=...: an "
                ".npy, a text file with one label per line, or a list)"
            )
        given = _read_labels(Path(labels)) if isinstance(labels, (str, os.PathLike)) else labels
        vectors = _load_numpy(path)
        if len(given) != len(vectors):
            raise ValueError(
                f"{path} holds {len(vectors)} vectors but {len(given)} labels were given"
            )
        return EmbeddingTable.from_arrays(vectors, np.asarray(given))
    arrays = _load_numpy(path)
    vector_key = _pick_column(list(arrays), embedding_column, _VECTOR_KEYS, "embeddings", path)
    label_key = _pick_column(list(arrays), label_column, _LABEL_KEYS, "labels", path)
    classes = arrays.get("classes")
    return EmbeddingTable.from_arrays(
        arrays[vector_key],
        arrays[label_key],
        ids=arrays.get("ids"),
        classes=None if classes is None else classes.tolist(),
    )


def _read_labels(path: Path) -> Any:
    """Labels from an ``.npy`` or a text file with one label per line."""
    if not path.is_file():
        raise FileNotFoundError(f"no such labels file: {path}")
    if path.suffix.lower() == ".npy":
        return _load_numpy(path)
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _load_numpy(path: Path) -> Any:
    """An ``.npy`` array or a dict of an ``.npz``'s arrays, never unpickling anything."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:  # an .npz archive; object arrays fail as they are read
            return {key: loaded[key] for key in loaded.files}
    except ValueError as err:
        if "pickle" in str(err):
            raise ValueError(
                f"{path} holds object arrays, which protoshot never unpickles"
            ) from None
        raise


def check_separate_labels(path: str | os.PathLike[str], labels: Any) -> None:
    """Separate labels are for an ``.npy`` of vectors only: any other source has its own.

    Raises
    ------
    ValueError
        If ``labels`` are given for another kind of source (they would be ignored).
    """
    if labels is not None and Path(path).suffix.lower() != ".npy":
        raise ValueError(f"labels (--labels) are for an .npy of vectors; {path} has its own")


def load_table(
    path: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | Sequence[Any] | None = None,
    embedding_column: str | None = None,
    label_column: str | None = None,
) -> EmbeddingTable:
    """Load embeddings from a Parquet table (:meth:`EmbeddingTable.load`) or numpy arrays
    (:func:`read_arrays`; ``labels`` for an ``.npy``)."""
    columns = {"embedding_column": embedding_column, "label_column": label_column}
    check_separate_labels(path, labels)
    if Path(path).suffix.lower() in (".npz", ".npy"):
        return read_arrays(path, labels=labels, **columns)
    return EmbeddingTable.load(path, **columns)


def _floats(values: Any) -> np.ndarray:
    """A flat Arrow array of numbers as float32. Floats without nulls are read from their buffer
    directly: pyarrow's own conversion imports pandas, 0.3 s of every command's start-up."""
    import pyarrow as pa

    dtypes = {pa.float16(): "float16", pa.float32(): "float32", pa.float64(): "float64"}
    name = dtypes.get(values.type)
    if name is None or values.null_count:
        return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    dtype = np.dtype(name)
    view = np.frombuffer(
        values.buffers()[1], dtype=dtype, count=len(values), offset=values.offset * dtype.itemsize
    )
    return view.astype(np.float32, copy=False)
