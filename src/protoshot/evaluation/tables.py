"""Evaluate an embedding table under a protocol: the whole job behind ``protoshot evaluate``.

Chooses the classes (a list, or one part of a seeded base / validation / novel split), the CL2N
centre (each episode's support, the split's base classes, or another table of the same model),
and runs the protocol: N-way K-shot episodes, or all-class K-shot on a test table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from protoshot.episodes import split_classes
from protoshot.evaluation.api import evaluate_grid
from protoshot.evaluation.protocols import all_class_kshot
from protoshot.evaluation.results import GridResult
from protoshot.labels import labels_like

if TYPE_CHECKING:  # a table is read, never made, here: the evaluator sits below the data layer
    from protoshot.data import EmbeddingTable

PROTOCOLS = ("episodic", "all-class")
SPLITS = ("base", "validation", "novel")


def evaluate_table(
    table: EmbeddingTable,
    *,
    protocol: str = "episodic",
    test: EmbeddingTable | None = None,
    n_way: int | Literal["all"] = 5,
    shots: Sequence[int] = (1, 5),
    n_query: int = 15,
    n_episodes: int = 600,
    seed: int = 0,
    metrics: Sequence[str] = ("sqeuclidean", "cosine"),
    normalizations: Sequence[str] = ("none", "l2", "cl2n"),
    methods: Sequence[str] = ("prototypes",),
    class_embeddings: Mapping[Any, Any] | None = None,
    classes: Sequence[Any] | None = None,
    split: str | None = None,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    split_seed: int = 0,
    center: EmbeddingTable | Literal["base"] | None = None,
    **options: Any,
) -> GridResult:
    """Evaluate ``table`` under ``protocol``; every configuration on the same episodes.

    Parameters
    ----------
    protocol : {"episodic", "all-class"}
        ``"all-class"`` draws ``K`` shots of every class of ``table`` and classifies all of
        ``test``, over ``n_episodes`` seeds.
    methods : names from :data:`protoshot.methods.METHODS`
        Every method on the same episodes (all-class: seeds), with paired differences.
    class_embeddings : mapping, optional
        Class label -> embedding of its name or description (same model as the table), for
        the named methods and ``auto`` (see :func:`protoshot.pipeline.class_name_embeddings`).
    classes : labels, optional
        Evaluate on these classes only (text is converted to the labels' type).
    split : {"base", "validation", "novel"}, optional
        Evaluate on one part of a seeded class split (``split_fractions``, ``split_seed``).
    center : EmbeddingTable or "base", optional
        Centre CL2N on this table's mean (same model), or on the split's base classes; by
        default on each episode's support mean.
    options
        Passed to :func:`~protoshot.evaluation.evaluate_grid` (``device``, ``dtype``, ``progress``).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of: {', '.join(PROTOCOLS)}")
    if len(table.classes) < 2:
        raise ValueError(f"the table has {len(table.classes)} class; evaluation needs at least 2")
    subset, base = _classes(table, classes, split, split_fractions, split_seed)
    centre = _center(table, center, base)
    settings: dict[str, Any] = {
        "metrics": metrics, "normalizations": normalizations, "methods": methods,
        "class_embeddings": class_embeddings,
    }  # fmt: skip
    if protocol == "all-class":
        if test is None:
            raise ValueError("the all-class protocol needs a test table (the split to classify)")
        if test.fingerprint != table.fingerprint:
            raise ValueError(
                f"the test table was embedded by another model ({test.model or '?'}, "
                f"{test.fingerprint[:12]}) than the support table ({table.model or '?'}, "
                f"{table.fingerprint[:12]})"
            )
        return all_class_kshot(
            table.vectors, table.labels, test.vectors, test.labels, shots=shots,
            n_seeds=n_episodes, seed=seed, center=centre, **settings, **options,
        )  # fmt: skip
    return evaluate_grid(
        table.vectors, table.labels, n_way=n_way, shots=shots, n_query=n_query,
        n_episodes=n_episodes, seed=seed, classes=subset, center=centre, **settings, **options,
    )  # fmt: skip


def evaluated_rows(
    table: EmbeddingTable,
    *,
    classes: Sequence[Any] | None = None,
    split: str | None = None,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    split_seed: int = 0,
) -> np.ndarray:
    """bool [n]: the rows of ``table`` whose classes :func:`evaluate_table` evaluates."""
    subset, _ = _classes(table, classes, split, split_fractions, split_seed)
    labels = np.asarray(table.labels)
    return np.ones(len(labels), bool) if subset is None else np.isin(labels, subset)


def _classes(
    table: EmbeddingTable,
    classes: Sequence[Any] | None,
    split: str | None,
    fractions: tuple[float, float, float],
    seed: int,
) -> tuple[list[Any] | None, np.ndarray | None]:
    """The classes to evaluate on, and the split's base classes (if split)."""
    if classes is not None and split is not None:
        raise ValueError("give classes or a split, not both")
    if classes is not None:
        return labels_like(classes, table.labels), None
    if split is None:
        return None, None
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    parts = split_classes(table.classes, fractions, seed=seed)
    return parts[split].tolist(), parts["base"]


def _center(
    table: EmbeddingTable, center: EmbeddingTable | str | None, base: np.ndarray | None
) -> np.ndarray | None:
    if center is None:
        return None
    if isinstance(center, str):
        if center != "base":
            raise ValueError(f"unknown centre {center!r}; expected 'base' or a table")
        if base is None:
            raise ValueError("centring on the base classes needs a split (they come from it)")
        return np.asarray(table.vectors[np.isin(table.labels, base)].mean(0))
    if center.fingerprint != table.fingerprint:
        raise ValueError(
            f"the centre's table was embedded by another model ({center.model or '?'}, "
            f"{center.fingerprint[:12]}) than the evaluated one ({table.model or '?'}, "
            f"{table.fingerprint[:12]})"
        )
    return np.asarray(center.vectors.mean(0))
