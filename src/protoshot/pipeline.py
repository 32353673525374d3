"""From a source (files, folders, benchmark names) to an :class:`EmbeddingTable`, through the cache.

The CLI commands and the demo share these steps; none of them embeds anything twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from protoshot.cache import CacheArg, CacheStats
from protoshot.data import EmbeddingTable, Samples, load_source, load_table
from protoshot.embedders import Embedder, create_embedder, embed

TABLE_SUFFIXES = (".parquet", ".npz", ".npy")


def embedder_for(
    model: str | Embedder, *, device: str | None = None, cache: CacheArg = True
) -> Embedder:
    """An embedder from a spec; with a cache folder, EfficientNet's ONNX export is kept beside it."""
    if not isinstance(model, str):
        return model
    options: dict[str, Any] = {"device": device} if device else {}
    if model.partition("?")[0] == "efficientnet-lite0" and isinstance(cache, (str, os.PathLike)):
        options["onnx_dir"] = Path(cache) / "onnx"
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


def is_table(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is a file of embeddings (Parquet table or numpy arrays)."""
    return Path(source).suffix.lower() in TABLE_SUFFIXES and Path(source).is_file()


def load_embeddings(
    source: str | os.PathLike[str],
    model: str | Embedder | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    cache: CacheArg = True,
    batch_size: int = 32,
    device: str | None = None,
    download: bool = False,
    progress: bool | None = None,
) -> tuple[EmbeddingTable, CacheStats | None]:
    """An embedding table from a table file, or from a raw source embedded with ``model``.

    Raises
    ------
    ValueError
        If ``source`` is raw data and no ``model`` is given, or a table was made by another model.
    """
    if is_table(source):
        table = load_table(source)
        if isinstance(model, str) and table.model and table.model != model:
            raise ValueError(f"{source} was embedded with {table.model!r}, not {model!r}")
        return table, None
    if model is None:
        raise ValueError(f"{source} is not an embedding table: pass --model to embed it")
    samples = load_source(
        source, text_column=text_column, label_column=label_column, download=download
    )
    embedder = embedder_for(model, device=device, cache=cache)
    return embed_samples(samples, embedder, cache=cache, batch_size=batch_size, progress=progress)
