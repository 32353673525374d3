"""``embed``: the cache-aware entry point (hash, look up, embed only the misses, keep order)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any, Literal, overload

import numpy as np

from protoshot._progress import progress_bar
from protoshot._validation import positive_int
from protoshot.cache import CacheArg, CacheStats, EmbeddingCache, item_key, open_cache
from protoshot.embedders._registry import Embedder, create_embedder
from protoshot.embedders._runtime import batches


@overload
def embed(
    items: Iterable[Any],
    embedder: Embedder | str,
    *,
    cache: CacheArg = ...,
    batch_size: int = ...,
    progress: bool | None = ...,
    return_stats: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def embed(
    items: Iterable[Any],
    embedder: Embedder | str,
    *,
    cache: CacheArg = ...,
    batch_size: int = ...,
    progress: bool | None = ...,
    return_stats: Literal[True],
) -> tuple[np.ndarray, CacheStats]: ...


def embed(
    items: Iterable[Any],
    embedder: Embedder | str,
    *,
    cache: CacheArg = True,
    batch_size: int = 32,
    progress: bool | None = None,
    return_stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, CacheStats]:
    """Embed items through the persistent cache.

    Cached items are looked up in one call; only the misses run through the model, longest
    texts first, ``batch_size`` at a time, and each batch is committed to the cache as soon as
    it is done, so an interrupted run keeps its finished batches.

    Parameters
    ----------
    items : iterable
        Texts, image paths, PIL images or arrays, as the embedder takes them.
    embedder : Embedder or str
        An embedder, or a spec for :func:`create_embedder`.
    cache : EmbeddingCache, path, bool or None
        ``True``: the default cache directory; a path: that directory; ``None`` or ``False``:
        no cache (nothing is hashed or stored).
    batch_size : int
        Items per forward pass.
    progress : bool, optional
        Show a progress bar on stderr; default: when stderr is a terminal.
    return_stats : bool
        Also return the :class:`~protoshot.cache.CacheStats`.

    Returns
    -------
    vectors : float32 [n_items, dim]
        In the order of ``items``.
    stats : CacheStats
        Only with ``return_stats=True``.
    """
    start = time.perf_counter()
    model = create_embedder(embedder) if isinstance(embedder, str) else embedder
    if not isinstance(model, Embedder):
        raise TypeError(
            f"embedder must be an Embedder or a spec str, got {type(embedder).__name__}"
        )
    batch_size = positive_int(batch_size, "batch_size", from_text=True)
    items = list(items)
    _check_texts(items)
    with open_cache(cache) as store:
        vectors, hits, embedded = _embed(items, model, store, batch_size, progress)
    stats = CacheStats(
        hits=hits,
        misses=len(items) - hits,
        embedded=embedded,
        seconds=time.perf_counter() - start,
    )
    return (vectors, stats) if return_stats else vectors


def _embed(
    items: list[Any],
    model: Embedder,
    store: EmbeddingCache | None,
    batch_size: int,
    progress: bool | None,
) -> tuple[np.ndarray, int, int]:
    """Vectors in input order, the number of cache hits, the number of items embedded."""
    n_items = len(items)
    if store is None:
        todo = {i: [i] for i in range(n_items)}
        keys: list[bytes] = []
        vectors, hits = None, 0
    else:
        keys = [item_key(item, model.modality) for item in items]
        found, cached = store.get(model.fingerprint, keys)
        hits = int(found.sum())
        vectors = _fill(None, np.flatnonzero(found), cached, n_items)
        todo = {}  # first position of each distinct missing item -> all its positions
        first: dict[bytes, int] = {}
        for i in np.flatnonzero(~found).tolist():
            todo.setdefault(first.setdefault(keys[i], i), []).append(i)
    order = _length_order(items, list(todo))
    with progress_bar(progress, len(order), f"embedding with {model.spec}") as advance:
        for chunk in batches(len(order), batch_size):
            firsts = order[chunk]
            batch = model.embed([items[i] for i in firsts])
            if batch.shape[0] != len(firsts):
                raise ValueError(
                    f"{model.spec} returned {batch.shape[0]} vectors for {len(firsts)} items"
                )
            if store is not None:
                store.put(model.fingerprint, [keys[i] for i in firsts], batch, spec=model.spec)
            rows = np.repeat(np.arange(len(firsts)), [len(todo[i]) for i in firsts])
            positions = [p for i in firsts for p in todo[i]]
            vectors = _fill(vectors, np.asarray(positions, dtype=np.intp), batch[rows], n_items)
            advance(len(firsts))
    if vectors is None:  # no items
        vectors = model.embed([])
    return vectors, hits, len(order)


def _fill(
    vectors: np.ndarray | None, positions: np.ndarray, rows: np.ndarray, n_items: int
) -> np.ndarray | None:
    """Write ``rows`` at ``positions``, allocating [n_items, dim] on the first rows."""
    if len(positions) == 0:
        return vectors
    if vectors is None:
        vectors = np.empty((n_items, rows.shape[1]), dtype=np.float32)
    elif rows.shape[1] != vectors.shape[1]:
        raise ValueError(f"got vectors of dim {rows.shape[1]}, expected {vectors.shape[1]}")
    vectors[positions] = rows
    return vectors


def _length_order(items: Sequence[Any], indices: list[int]) -> np.ndarray:
    """``indices`` with texts longest first (stable), others as given."""
    index = np.asarray(indices, dtype=np.intp)
    if indices and all(isinstance(items[i], str) for i in indices):
        index = index[np.argsort([-len(items[i]) for i in indices], kind="stable")]
    return index


def _check_texts(items: list[Any]) -> None:
    """Texts a tokenizer can read: valid Unicode (a lone surrogate from broken JSON or a
    mis-decoded file would fail deep inside it)."""
    for index, item in enumerate(items):
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"item {index} is not valid Unicode text (it holds a lone surrogate)"
                ) from None


def embed_loader(
    data: Iterable[Any],
    embedder: Embedder | str,
    *,
    cache: CacheArg = True,
    batch_size: int = 32,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed a torch ``DataLoader`` (or any iterable of ``(inputs, labels)`` batches) or a
    map-style torch ``Dataset`` of ``(input, label)`` samples: the seed's
    ``get_embeddings(model, data_loader, device)``, with the cache.

    Each batch goes through :func:`embed` as it comes, so a loader over files is never held in
    memory whole, and a sample seen before (same bytes, same model) is not embedded again.
    ``batch_size`` groups the samples of a ``Dataset`` (a loader has its own).

    Returns
    -------
    vectors : float32 [n_samples, dim]
    labels : numpy.ndarray [n_samples]
        Tensor labels become numpy values.

    Raises
    ------
    ValueError
        If a batch is not an ``(inputs, labels)`` pair of equal lengths, or there is none.
    """
    from torch.utils.data import Dataset

    embedder = create_embedder(embedder) if isinstance(embedder, str) else embedder
    total = len(data) if isinstance(data, Sized) else None
    if isinstance(data, Dataset):
        size = positive_int(batch_size, "batch_size")
        total = -(-len(data) // size)  # type: ignore[arg-type]
        data = _dataset_batches(data, size)
    vectors: list[np.ndarray] = []
    labels: list[Any] = []
    with progress_bar(progress, total, "batches") as advance:
        for number, batch in enumerate(data):
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError(
                    f"batch {number}: expected (inputs, labels), got {type(batch).__name__}"
                )
            items = list(batch[0])
            targets = batch[1].tolist() if hasattr(batch[1], "tolist") else list(batch[1])
            if len(items) != len(targets):
                raise ValueError(f"batch {number}: {len(items)} inputs but {len(targets)} labels")
            vectors.append(
                embed(items, embedder, cache=cache, batch_size=max(len(items), 1), progress=False)
            )
            labels += targets
            advance(1)
    if not vectors:
        raise ValueError("the loader gave no batches")
    return np.concatenate(vectors), np.asarray(labels)


def _dataset_batches(dataset: Any, batch_size: int) -> Iterator[tuple[list[Any], list[Any]]]:
    """A map-style dataset's ``(input, label)`` samples in batches, read as they are needed."""
    for start in range(0, len(dataset), batch_size):
        pairs = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        yield [x for x, _ in pairs], [y for _, y in pairs]
