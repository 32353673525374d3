"""Meta-test evaluation: accuracy over many N-way K-shot episodes, mean and 95% confidence interval.

Every configuration (method variant x shots) is scored on the *same* episodes, so their
differences are not sampling noise. Smaller shot counts use the first ``k`` shots of each class
of episodes drawn with the largest count, with the same queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any, Literal, cast

import numpy as np
import torch

from protoshot._device import best_device, parse_dtype
from protoshot._progress import progress_bar
from protoshot._validation import ArrayLike, as_float_tensor, check_choice, check_same_features
from protoshot.episodes import Episodes, EpisodeSampler
from protoshot.evaluation import engine
from protoshot.evaluation.results import (
    CI_METHODS,
    EvalResult,
    GridResult,
    mean_ci,
    paired_differences,
)
from protoshot.kernels import RowReader
from protoshot.maths.normalize import NORMALIZATIONS
from protoshot.methods import TRANSDUCTIVE, Method, create_method


def evaluate_episodes(
    embeddings: ArrayLike,
    episodes: Episodes | Iterable[Episodes],
    *,
    shots: Sequence[int] | None = None,
    methods: Sequence[str | Method] = ("prototypes",),
    metrics: Sequence[str] | None = None,
    normalizations: Sequence[str] | None = None,
    class_embeddings: ArrayLike | None = None,
    center: ArrayLike | None = None,
    targets: ArrayLike | None = None,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    ci: Literal["normal", "t"] = "normal",
    progress: bool = False,
    class_labels: Sequence[Any] | np.ndarray | None = None,
) -> GridResult:
    """Evaluate configurations on given episodes (a block, or an iterable of blocks).

    Parameters
    ----------
    embeddings : float [n_samples, D]
        The embedding table the episode indices point into.
    episodes : Episodes or iterable of Episodes
        E.g. an :class:`EpisodeSampler` (iterated block by block, so memory stays bounded).
    shots : sequence of int, optional
        Evaluate with the first ``k`` shots of each class for each ``k``; default the episodes'
        own. 0 (class names alone) gives a zero-shot row for the methods that use names.
    methods : names from :data:`protoshot.methods.METHODS`, or Method objects
        Every method is scored on the same episodes; with more than one, each row carries its
        paired difference to plain prototypes.
    metrics, normalizations : sequences of names
        The grid of the prototype methods (default squared Euclidean, no normalisation). See
        :data:`protoshot.METRICS` and :data:`protoshot.NORMALIZATIONS`.
    class_embeddings : float [n_classes, D], optional
        An embedding of each class's name or description, row ``c`` for class ``c`` of the
        episodes' ``ways`` (for the ``named-*`` methods; ``auto`` uses them when given).
    center : float [D], optional
        Fixed centre for ``"cl2n"`` (e.g. the base classes' mean); default each episode's support mean.
    targets : int [M], optional
        For blocks whose queries are one shared set ``[E, 1, M]`` (the all-class protocol): the
        way of each query.
    chunk_size : int, optional
        Episodes computed at once; peak memory grows linearly with it, not with the episode
        count. By default as many as keep a chunk's prototypes near 64 MiB.
    device, dtype
        Where and in which precision to compute (``"bfloat16"`` / ``"float16"`` for GPUs).
    ci : {"normal", "t"}
        Confidence interval method (see :func:`mean_ci`).
    progress : bool
        Show a progress bar over episodes.
    class_labels : sequence, optional
        The label of each class position of the episodes' ``ways``: each result then reports
        its accuracy per class (:meth:`EvalResult.per_class`), over every episode.
    """
    for name, names in (("metrics", metrics), ("normalizations", normalizations)):
        if names is not None and not names:
            raise ValueError(f"{name} is empty; give at least one or leave it out")
    if not methods:
        raise ValueError("methods is empty; give at least one")
    named = class_embeddings is not None
    grid = {"normalizations": normalizations or ("none",), "metrics": metrics or ("sqeuclidean",)}
    chosen = [create_method(m, named=named, **grid) if isinstance(m, str) else m for m in methods]
    # transductive methods last: their rows stand apart, below the inductive ones
    chosen.sort(key=lambda m: m.name in TRANSDUCTIVE)
    check_choice("ci method", ci, CI_METHODS)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dev = best_device(device)
    x = as_float_tensor(embeddings, "embeddings", ndim=2).to(dev, parse_dtype(dtype)).contiguous()
    c = None
    if center is not None:
        c = as_float_tensor(center, "center", ndim=1).to(dev, x.dtype)
        check_same_features(x, c, "embeddings", "center")
    name_rows = None
    if class_embeddings is not None:
        name_rows = as_float_tensor(class_embeddings, "class embeddings", ndim=2).to(dev, x.dtype)
        check_same_features(x, name_rows, "embeddings", "class embeddings")
    target = None if targets is None else torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    blocks = [episodes] if isinstance(episodes, Episodes) else episodes
    total = len(episodes) if isinstance(episodes, Sized) else None
    with progress_bar(progress, total, "episodes") as advance:
        configs, measures, per_class = engine.run(
            RowReader(x), blocks, chosen, shots=shots, center=c, names=name_rows, targets=target,
            chunk_size=chunk_size, advance=advance,
        )  # fmt: skip
    results = []
    by_name = dict(zip(engine.MEASURES, measures, strict=True))
    for i, config in enumerate(configs):
        row = by_name["accuracy"][i]
        mean, std, half = mean_ci(row, method=ci)
        f1, nll, ece = (float(by_name[name][i].mean()) for name in ("macro_f1", "nll", "ece"))
        counts = None if class_labels is None else per_class[:, i]
        labels = None if class_labels is None else np.asarray(class_labels)
        result = EvalResult(mean, std, half, row.size, config, row, macro_f1=f1, nll=nll, ece=ece,
                            class_counts=counts, class_labels=labels)  # fmt: skip
        results.append(result)
    grid_result = GridResult(results)
    return paired_differences(grid_result) if len(chosen) > 1 else grid_result


def evaluate_grid(
    embeddings: ArrayLike,
    labels: Sequence[Any] | np.ndarray,
    *,
    n_way: int | Literal["all"] = 5,
    shots: Sequence[int] = (1, 5),
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    metrics: Sequence[str] = ("sqeuclidean", "cosine"),
    normalizations: Sequence[str] = NORMALIZATIONS,
    methods: Sequence[str | Method] = ("prototypes",),
    class_embeddings: Mapping[Any, ArrayLike] | None = None,
    classes: Sequence[Any] | None = None,
    center: ArrayLike | None = None,
    **options: Any,
) -> GridResult:
    """Compare methods x metrics x normalisations x shots on the same N-way episodes.

    ``class_embeddings`` maps each class label to the embedding of its name or description
    (see :func:`class_name_embeddings`). ``options`` go to :func:`evaluate_episodes`
    (``chunk_size``, ``device``, ``dtype``, ``ci``, ``progress``). See :class:`EpisodeSampler`
    for the sampling parameters.
    """
    if not shots:
        raise ValueError("shots is empty; give at least one shot count")
    sampler = _sampler(
        embeddings, labels, n_way=n_way, n_shot=max(max(shots), 1), n_query=n_query,
        n_episodes=n_episodes, seed=seed, classes=classes,
    )  # fmt: skip
    return evaluate_episodes(
        embeddings,
        sampler,
        shots=shots,
        methods=methods,
        metrics=metrics,
        normalizations=normalizations,
        class_embeddings=aligned_class_embeddings(class_embeddings, sampler.classes_),
        center=center,
        class_labels=sampler.classes_,
        **options,
    )


def aligned_class_embeddings(
    class_embeddings: Mapping[Any, ArrayLike] | None, classes: np.ndarray
) -> np.ndarray | None:
    """``[n_classes, D]`` rows in the order of ``classes``; names every class that has none."""
    if class_embeddings is None:
        return None
    missing = [c for c in classes.tolist() if c not in class_embeddings]
    if missing:
        raise ValueError(
            f"{len(missing)} classes have no name embedding: {', '.join(map(str, missing[:10]))}"
        )
    return np.stack([np.asarray(class_embeddings[c], dtype=np.float32) for c in classes.tolist()])


def evaluate(
    embeddings: ArrayLike,
    labels: Sequence[Any] | np.ndarray,
    *,
    n_way: int | Literal["all"] = 5,
    n_shot: int | tuple[int, int] = 1,
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    metric: str = "sqeuclidean",
    normalization: str = "none",
    classes: Sequence[Any] | None = None,
    center: ArrayLike | None = None,
    **options: Any,
) -> EvalResult:
    """Mean accuracy ± 95% CI of nearest-prototype classification over N-way K-shot episodes.

    Examples
    --------
    >>> result = evaluate(embeddings, labels, n_way=5, n_shot=1, n_episodes=1000)
    >>> print(result)  # doctest: +SKIP
    n_way=5, n_shot=1, ...: 93.42% ± 0.31 (95% CI, 1000 episodes)
    """
    sampler = _sampler(
        embeddings, labels, n_way=n_way, n_shot=n_shot, n_query=n_query,
        n_episodes=n_episodes, seed=seed, classes=classes,
    )  # fmt: skip
    return evaluate_episodes(
        embeddings,
        sampler,
        metrics=[metric],
        normalizations=[normalization],
        center=center,
        **options,
    ).results[0]


def _sampler(
    embeddings: ArrayLike, labels: Sequence[Any] | np.ndarray, **sampling: Any
) -> EpisodeSampler:
    """The episode sampler over ``labels``, once they are known to match the embeddings' rows."""
    sampler = EpisodeSampler(labels, **sampling)
    n_rows = len(cast(Sized, embeddings))
    if n_rows != len(labels):
        raise ValueError(f"embeddings have {n_rows} rows but labels have {len(labels)}")
    return sampler
