"""Standard evaluation protocols beyond N-way episodes, each implemented once.

- :func:`all_class_kshot`: the intent-detection protocol (Casanueva et al. 2020): draw ``K``
  shots of *every* class from a train split, classify the *whole* test split, repeat over seeds,
  report mean ± 95% CI. Numbers sit directly beside published BANKING77 figures.
- :func:`omniglot_runs`: the 20 original runs of Omniglot's 20-way 1-shot benchmark
  (Lake et al. 2015), reported as an error rate like the paper.

Both use the maths core the evaluator and the classifier use; seeds are the episode axis.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot._validation import ArrayLike, as_float_tensor, check_choice, check_same_features
from protoshot.episodes import Episodes, EpisodeSampler
from protoshot.evaluation.api import aligned_class_embeddings, evaluate_episodes
from protoshot.evaluation.results import GridResult
from protoshot.labels import as_label_array
from protoshot.maths.distances import METRICS, episode_scores
from protoshot.maths.normalize import NORMALIZATIONS, normalize_episode_tensors
from protoshot.maths.prototypes import episode_prototypes
from protoshot.methods import Method


def all_class_kshot(
    train: ArrayLike,
    train_labels: Sequence[Any] | np.ndarray,
    test: ArrayLike,
    test_labels: Sequence[Any] | np.ndarray,
    *,
    shots: Sequence[int] = (5, 10),
    n_seeds: int = 10,
    seed: int = 0,
    methods: Sequence[str | Method] = ("prototypes",),
    metrics: Sequence[str] = ("sqeuclidean",),
    normalizations: Sequence[str] = ("none",),
    class_embeddings: Mapping[Any, ArrayLike] | None = None,
    center: ArrayLike | None = None,
    **options: Any,
) -> GridResult:
    """All-class K-shot accuracy on a full test split, mean ± 95% CI over ``n_seeds`` draws.

    Parameters
    ----------
    train, test : float [n_train, D], [n_test, D]
        Embeddings of the train split (shots are drawn from it) and of the test split.
    train_labels, test_labels : sequences
        Every test label must be a train class.
    shots : sequence of int
        Shots per class; the smaller counts use the first shots of the larger draw (0: class
        names alone, for the methods that use them).
    n_seeds : int
        Independent draws of the support (the CI is over these; every method sees the same).
    methods, metrics, normalizations, class_embeddings, center, options
        As in :func:`~protoshot.evaluation.evaluate_grid`; seeds are the episode axis.
    """
    if not shots:
        raise ValueError("shots is empty; give at least one shot count")
    x_train = as_float_tensor(train, "train embeddings", ndim=2)
    x_test = as_float_tensor(test, "test embeddings", ndim=2, dtype=x_train.dtype)
    check_same_features(x_train, x_test, "train embeddings", "test embeddings")
    y_test = as_label_array(test_labels)
    if len(y_test) != len(x_test) or len(train_labels) != len(x_train):
        raise ValueError("each split needs as many labels as embeddings")
    sampler = EpisodeSampler(
        train_labels, n_way="all", n_shot=max(max(shots), 1), n_query=1, n_episodes=n_seeds,
        seed=seed,
    )  # fmt: skip
    classes = sampler.classes_
    unknown = np.setdiff1d(y_test, classes)
    if unknown.size:
        raise ValueError(f"test classes {unknown[:5].tolist()} have no examples in the train split")
    drawn = sampler.sample()
    return classify_test_split(
        x_train, drawn.support, drawn.ways, classes, x_test, y_test, shots=shots,
        methods=methods, metrics=metrics, normalizations=normalizations,
        class_embeddings=class_embeddings, center=center, **options,
    )  # fmt: skip


def classify_test_split(
    x_train: torch.Tensor,
    support: np.ndarray,
    ways: np.ndarray,
    classes: np.ndarray,
    x_test: torch.Tensor,
    y_test: np.ndarray,
    *,
    shots: Sequence[int],
    class_embeddings: Mapping[Any, ArrayLike] | None = None,
    **grid: Any,
) -> GridResult:
    """The all-class protocol once its shots are drawn: ``support`` [E, N, K] rows of
    ``x_train`` of the classes ``ways`` [E, N] (positions in ``classes``), the whole test split
    classified by each draw."""
    test_rows = np.arange(len(x_test)) + len(x_train)
    episodes = Episodes(support, np.tile(test_rows, (len(support), 1, 1)), ways)
    return evaluate_episodes(
        torch.cat([x_train, x_test]), episodes, shots=shots,
        targets=np.searchsorted(classes, y_test),
        class_embeddings=aligned_class_embeddings(class_embeddings, classes),
        class_labels=classes, **grid,
    )  # fmt: skip


@dataclass(frozen=True)
class RunsResult:
    """Error rates of Omniglot's 20 one-shot runs (fractions in [0, 1])."""

    error_rate: float
    per_run: np.ndarray
    config: dict[str, Any]

    def __str__(self) -> str:
        return (
            f"Omniglot 20-way 1-shot, {len(self.per_run)} runs: {100 * self.error_rate:.2f}% error"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "per_run": self.per_run.tolist(),
            "config": self.config,
        }


_LABEL_LINE = re.compile(r"^\s*(\S+/test/\S+)\s+(\S+/training/\S+)\s*$")


def read_omniglot_runs(
    zip_path: str | Path, folder: str | Path
) -> list[tuple[list[Path], list[Path]]]:
    """Extract ``all_runs.zip`` into ``folder``; per run, (test images, matching training images)."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(folder)
    except (OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read the Omniglot runs from {zip_path}: {err}") from err
    runs = []
    for labels in sorted(Path(folder).glob("run*/class_labels.txt")):
        pairs = [
            _LABEL_LINE.match(line) for line in labels.read_text().splitlines() if line.strip()
        ]
        if not pairs or any(p is None for p in pairs):
            raise ValueError(f"{labels} is not in the '<test image> <training image>' format")
        runs.append(
            ([Path(folder) / p[1] for p in pairs if p], [Path(folder) / p[2] for p in pairs if p])
        )
    if not runs:
        raise ValueError(f"{zip_path} holds no run*/class_labels.txt")
    return runs


def omniglot_runs(
    zip_path: str | Path,
    embed: Callable[[list[str]], np.ndarray],
    *,
    metric: str = "sqeuclidean",
    normalization: str = "none",
) -> RunsResult:
    """Error rate of nearest-prototype 1-shot classification on each of the 20 runs.

    ``embed`` maps image paths to embeddings (e.g. ``lambda p: protoshot.embedders.embed(p, e)``).
    Each run's 20 training images are the prototypes (one per class); its 20 test images are
    classified among them. Runs are the episode axis of one batched computation.
    """
    check_choice("metric", metric, METRICS)
    check_choice("normalization", normalization, NORMALIZATIONS)
    with tempfile.TemporaryDirectory(prefix="protoshot-omniglot-") as tmp:
        runs = read_omniglot_runs(zip_path, tmp)
        training = sorted({p for _, train in runs for p in train})
        tests = [p for test, _ in runs for p in test]
        vectors = torch.from_numpy(embed([str(p) for p in training + tests]))
    # in each run, way n is the n-th distinct training image (sorted); targets point to it
    way_of = {p: i for i, p in enumerate(training)}
    run_ways = [sorted({way_of[p] for p in train}) for _, train in runs]
    n_way = len(run_ways[0])
    if any(len(w) != n_way for w in run_ways):
        raise ValueError("the runs have different numbers of classes")
    support = vectors[torch.tensor(run_ways)].unsqueeze(2)  # [R, N, 1, D]
    test_idx = torch.arange(len(tests)).view(len(runs), -1) + len(training)
    query = vectors[test_idx]  # [R, Q, D]
    target = torch.tensor(
        [[w.index(way_of[p]) for p in train] for (_, train), w in zip(runs, run_ways, strict=True)]
    )
    s, q = normalize_episode_tensors(support, query, normalization)
    pred = episode_scores(q, episode_prototypes(s), metric).argmax(-1)
    errors = (pred != target).double().mean(-1).numpy()
    config = {"n_way": n_way, "n_shot": 1, "normalization": normalization, "metric": metric}
    return RunsResult(float(errors.mean()), errors, config)
