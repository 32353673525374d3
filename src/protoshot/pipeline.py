"""From a source (files, folders, benchmark names) to an :class:`EmbeddingTable`, through the cache.

The CLI commands and the demo share these steps; none of them embeds anything twice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protoshot.cache import CacheArg, CacheStats
from protoshot.data import EmbeddingTable, Samples, load_source, load_table
from protoshot.data.table import check_separate_labels
from protoshot.embedders import Embedder, create_embedder, embed
from protoshot.labels import readable_name

TABLE_SUFFIXES = (".parquet", ".npz", ".npy")


#: The embedders with an ONNX runtime (their exports go beside a given cache folder).
ONNX_BACKENDS = ("efficientnet-lite0", "minilm", "st")


def embedder_for(
    model: str | Embedder, *, device: str | None = None, cache: CacheArg = True
) -> Embedder:
    """An embedder from a spec; with a cache folder, ONNX exports are kept beside it."""
    if not isinstance(model, str):
        return model
    options: dict[str, Any] = {"device": device} if device else {}
    backend = model.partition("?")[0].partition(":")[0]
    if backend in ONNX_BACKENDS and isinstance(cache, (str, os.PathLike)):
        options["onnx_dir"] = Path(cache) / "onnx"
    if backend == "adapter":  # its base vectors go through the same cache
        options["cache"] = cache
    return create_embedder(model, **options)


def embed_samples(
    samples: Samples,
    embedder: Embedder,
    *,
    cache: CacheArg = True,
    batch_size: int = 32,
    progress: bool | None = None,
) -> tuple[EmbeddingTable, CacheStats]:
    """Embed labelled samples into a table (cached items never reach the model)."""
    if embedder.modality not in ("any", samples.modality):
        raise ValueError(
            f"{embedder.spec} embeds {embedder.modality}, but the source holds {samples.modality} samples"
        )
    vectors, stats = embed(
        samples.items,
        embedder,
        cache=cache,
        batch_size=batch_size,
        progress=progress,
        return_stats=True,
    )
    table = EmbeddingTable.from_arrays(
        vectors,
        samples.labels,
        ids=samples.ids,
        model=embedder.spec,
        fingerprint=embedder.fingerprint,
    )
    return table, stats


def labelled_embeddings(
    source: str | os.PathLike[str],
    embedder: Embedder,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    embedding_column: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    delimiter: str | None = None,
    cache: CacheArg = True,
    batch_size: int = 32,
) -> EmbeddingTable:
    """Labelled vectors of ``embedder`` from any source: an embedding table it made (nothing
    is embedded again; see :func:`embedded_table`) or raw labelled data, embedded through the
    cache."""
    check_separate_labels(source, labels)
    table = embedded_table(
        source, embedder, embedding_column=embedding_column, label_column=label_column,
        labels=labels,
    )  # fmt: skip
    if table is not None:
        return table
    samples = load_source(
        source, text_column=text_column, label_column=label_column, delimiter=delimiter
    )
    return embed_samples(samples, embedder, cache=cache, batch_size=batch_size, progress=None)[0]


def is_table(source: str | os.PathLike[str], embedding_column: str | None = None) -> bool:
    """Whether ``source`` is a file of embeddings: numpy arrays, or a Parquet file with a
    column of vectors (``embedding_column``, default ``embedding``; other Parquet files hold
    raw data), or a folder of such Parquet shards (``protoshot embed --engine ray``)."""
    path = Path(source)
    if path.is_dir():  # an image folder has class folders, not Parquet files
        shard = next(iter(sorted(path.glob("part-*.parquet"))), None)
        return shard is not None and is_table(shard, embedding_column)
    if path.suffix.lower() not in TABLE_SUFFIXES or not path.is_file():
        return False
    if path.suffix.lower() != ".parquet":
        return True
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    if embedding_column is not None and embedding_column not in names:
        raise ValueError(f"{path} has no column {embedding_column!r}; columns: {names}")
    return (embedding_column or "embedding") in names


def load_embeddings(
    source: str | os.PathLike[str],
    model: str | Embedder | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    embedding_column: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    delimiter: str | None = None,
    cache: CacheArg = True,
    batch_size: int = 32,
    device: str | None = None,
    download: bool = False,
    progress: bool | None = None,
) -> tuple[EmbeddingTable, CacheStats | None]:
    """An embedding table from a table file, or from a raw source embedded with ``model``.

    The column options name a table's columns (see :func:`protoshot.data.load_table` and
    :func:`protoshot.data.load_source`); ``labels`` gives the labels of an ``.npy``.

    Raises
    ------
    ValueError
        If ``source`` is raw data and no ``model`` is given, or a table was made by another model.
    """
    check_separate_labels(source, labels)
    if is_table(source, embedding_column):
        table = load_table(
            source, labels=labels, embedding_column=embedding_column, label_column=label_column
        )
        if isinstance(model, str) and model.startswith("adapter:"):
            return adapted_table(table, embedder_for(model, device=device, cache=cache)), None
        if isinstance(model, str) and table.model and table.model != model:
            raise ValueError(f"{source} was embedded with {table.model!r}, not {model!r}")
        return table, None
    if model is None:
        raise ValueError(f"{source} is not an embedding table: pass --model to embed it")
    samples = load_source(
        source, text_column=text_column, label_column=label_column, download=download,
        delimiter=delimiter,
    )  # fmt: skip
    embedder = embedder_for(model, device=device, cache=cache)
    return embed_samples(samples, embedder, cache=cache, batch_size=batch_size, progress=progress)


def adapted_table(table: EmbeddingTable, embedder: Any) -> EmbeddingTable:
    """``table`` as an adapter's vectors (``adapter:`` embedder): made by it already, or the
    base embedder's vectors put through it."""
    if table.fingerprint == embedder.fingerprint:
        return table
    if table.fingerprint and table.fingerprint != embedder.adapter.base["fingerprint"]:
        raise ValueError(
            f"the table was embedded with {table.model!r}, but the adapter expects vectors of "
            f"{embedder.adapter.base['spec']!r}"
        )
    return EmbeddingTable.from_arrays(
        embedder.adapter.transform(table.vectors), table.labels, ids=table.ids, classes=table.classes,
        model=embedder.spec, fingerprint=embedder.fingerprint,
    )  # fmt: skip


def class_name_embeddings(
    classes: Sequence[Any],
    embedder: Embedder,
    *,
    descriptions: Mapping[Any, str] | None = None,
    cache: CacheArg = True,
    batch_size: int = 32,
) -> tuple[dict[Any, np.ndarray], list[Any]]:
    """Embed each class's description, else its readable name (``card_arrival`` -> "card arrival").

    Returns the embeddings by class and the classes that had nothing to embed (integer codes,
    digits only, empty). Only text models embed names; for others every class is skipped.
    """
    descriptions = descriptions or {}
    texts: dict[Any, str] = {}
    if embedder.modality == "text":
        for label in classes:
            text = (descriptions.get(label) or readable_name(label) or "").strip()
            if any(ch.isalpha() for ch in text):
                texts[label] = text
    skipped = [label for label in classes if label not in texts]
    if not texts:
        return {}, skipped
    vectors = embed(
        list(texts.values()), embedder, cache=cache, batch_size=batch_size, progress=False
    )
    return dict(zip(texts, vectors, strict=True)), skipped


def read_descriptions(path: str | os.PathLike[str]) -> dict[str, str]:
    """A ``label,text`` CSV (header optional: a first row ``label,text`` is skipped) as a dict."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read class descriptions from {path}: {err}") from err
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["label", "text"]:
        rows = rows[1:]
    bad = [i + 1 for i, row in enumerate(rows) if len(row) != 2 or not row[0].strip()]
    if bad:
        raise ValueError(f"{path}: every line must be 'label,text'; lines {bad[:5]} are not")
    return {row[0].strip(): row[1].strip() for row in rows}


def embedded_table(
    path: str | os.PathLike[str],
    embedder: Embedder,
    *,
    embedding_column: str | None = None,
    label_column: str | None = None,
    labels: str | os.PathLike[str] | None = None,
) -> EmbeddingTable | None:
    """The embedding table at ``path`` (Parquet from ``protoshot embed`` or with a vectors
    column ``embedding_column``, ``.npz`` / ``.npy`` with ``labels``), checked to come from
    ``embedder``; ``None`` when ``path`` holds raw data to embed.

    Raises
    ------
    ValueError
        If the table was embedded by another model (another fingerprint) or has another dimension.
    """
    if not is_table(path, embedding_column):
        return None
    table = load_table(
        path, labels=labels, embedding_column=embedding_column, label_column=label_column
    )
    adapter = getattr(embedder, "adapter", None)
    if adapter is not None and table.fingerprint == adapter.base["fingerprint"]:
        table = adapted_table(table, embedder)  # the base model's vectors, through the adapter
    if table.fingerprint and table.fingerprint != embedder.fingerprint:
        raise ValueError(
            f"{path} was embedded by {table.model or 'another model'} ({table.fingerprint[:12]}), "
            f"not by {embedder.spec} ({embedder.fingerprint[:12]}): its vectors would not match"
        )
    if table.dim != embedder.dim:
        raise ValueError(
            f"{path} holds {table.dim}-d vectors, but {embedder.spec} makes {embedder.dim}-d"
        )
    return table
