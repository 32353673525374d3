"""How well a fitted model does on labelled data: accuracy with its interval, macro-F1,
per-class precision and recall, calibration (NLL, ECE), the confusion matrix, and the open
set (rows whose true class is outside the model, and the rejection threshold).

A row counts as correct when it is accepted with its true class, or when its true class is
unknown to the model and it is rejected. Per-class figures and macro-F1 are over the model's
classes present in the data; a rejected known row counts against its class's recall.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Equal-width confidence bins of the expected calibration error.
ECE_BINS = 15
#: The confusion-matrix plot draws at most this many classes; beyond, pairs are listed.
PLOT_CLASSES = 100


@dataclass(frozen=True)
class ClassScore:
    """Precision, recall and F1 of one class, over the ``support`` rows whose true class it is."""

    label: Any
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ScoreReport:
    """The scores of a model on ``n`` labelled rows (fractions in [0, 1]).

    ``accuracy_ci`` is the 95% Wilson interval. ``nll`` and ``ece`` are over the rows of known
    classes, from the probabilities before rejection. The open-set fields count the
    ``n_unknown`` rows whose true class is outside the model: ``unknown_recall`` is the share
    rejected, ``false_accept_rate`` the share accepted (``None`` when there are none).
    """

    n: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    macro_f1: float
    nll: float | None
    ece: float | None
    accept_rate: float
    known_accuracy: float | None
    n_unknown: int
    unknown_recall: float | None
    false_accept_rate: float | None
    per_class: list[ClassScore]
    #: The most frequent (true, predicted, count) mistakes, most frequent first.
    confused_pairs: list[tuple[Any, Any, int]]
    #: ``confusion[i, j]``: rows of true class ``labels[i]`` answered ``labels[j]``; the last
    #: label is ``None``: unknown (true class outside the model, or rejected).
    labels: list[Any]
    confusion: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the confusion matrix as nested lists)."""
        out = asdict(self)
        out["accuracy_ci"] = list(self.accuracy_ci)
        out["confused_pairs"] = [
            {"true": t, "predicted": p, "count": c} for t, p, c in self.confused_pairs
        ]
        out["confusion"] = self.confusion.tolist()
        return out


def score_predictions(
    true: Sequence[Any] | np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    *,
    rejected: Sequence[bool] | np.ndarray | None = None,
    unknown: Sequence[bool] | np.ndarray | None = None,
    n_pairs: int = 10,
) -> ScoreReport:
    """Score probabilities ``[n, n_classes]`` (columns in the order of ``classes``) against
    the true labels.

    ``unknown`` marks the rows whose true class is outside the model (out of scope); every
    other true label must be one of ``classes``. ``rejected`` marks the rows the model's
    rejection rule answered "unknown".

    Raises
    ------
    ValueError
        If the shapes disagree, there are no rows, or a true label is not a class and not
        marked unknown.
    """
    proba = np.asarray(proba, dtype=np.float64)
    true = np.asarray(true, dtype=object)
    n, n_classes = proba.shape if proba.ndim == 2 else (0, 0)
    if proba.ndim != 2 or n_classes != len(classes) or len(true) != n:
        raise ValueError(
            f"got {len(true)} labels and probabilities of shape {proba.shape} for "
            f"{len(classes)} classes"
        )
    if n == 0:
        raise ValueError("no rows to score")
    outside = np.zeros(n, bool) if unknown is None else np.asarray(unknown, bool)
    rejected = np.zeros(n, bool) if rejected is None else np.asarray(rejected, bool)
    if outside.shape != (n,) or rejected.shape != (n,):
        raise ValueError(f"unknown and rejected must mark each of the {n} rows")
    index = {label: i for i, label in enumerate(np.asarray(classes).tolist())}
    missing = sorted(
        {str(t) for t, out in zip(true, outside, strict=True) if not out and t not in index}
    )
    if missing:
        raise ValueError(
            f"{len(missing)} true labels are not classes of the model: {', '.join(missing[:10])} "
            "(mark out-of-scope rows as unknown, e.g. --unknown-label NAME)"
        )
    # codes: 0..C-1 the model's classes, C = unknown (true class outside, or rejected)
    truth = np.array([n_classes if out else index[t] for t, out in zip(true, outside, strict=True)])
    answer = np.where(rejected, n_classes, proba.argmax(1))
    correct = answer == truth
    known = ~outside

    confusion = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    np.add.at(confusion, (truth, answer), 1)
    per_class, macro_f1 = _per_class(confusion, classes)
    return ScoreReport(
        n=n,
        accuracy=float(correct.mean()),
        accuracy_ci=wilson_interval(int(correct.sum()), n),
        macro_f1=macro_f1,
        nll=_nll(proba[known], truth[known]) if known.any() else None,
        ece=expected_calibration_error(proba[known], truth[known]) if known.any() else None,
        accept_rate=float((~rejected).mean()),
        known_accuracy=float(correct[known].mean()) if known.any() else None,
        n_unknown=int(outside.sum()),
        unknown_recall=float(rejected[outside].mean()) if outside.any() else None,
        false_accept_rate=float((~rejected[outside]).mean()) if outside.any() else None,
        per_class=per_class,
        confused_pairs=_confused_pairs(confusion, classes, n_pairs),
        labels=[*np.asarray(classes).tolist(), None],
        confusion=confusion,
    )


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default): it stays inside [0, 1] and
    is honest near 0 and 1, where the normal approximation is not."""
    if n <= 0:
        raise ValueError("a proportion needs at least one trial")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return low, 1.0 if successes == n else min(1.0, centre + half)


def expected_calibration_error(proba: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width
    confidence bins weighted by their share of rows."""
    confidence = proba.max(1)
    hit = proba.argmax(1) == truth
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.bincount(which, weights=confidence - hit, minlength=bins)
    return float(np.abs(gap).sum() / max(count.sum(), 1))


def _nll(proba: np.ndarray, truth: np.ndarray) -> float:
    """Mean negative log-probability of the true class (clipped at 1e-12)."""
    return float(-np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-12, None)).mean())


def _per_class(confusion: np.ndarray, classes: np.ndarray) -> tuple[list[ClassScore], float]:
    """Per-class scores of the classes with rows, and their macro-F1."""
    n_classes = len(classes)
    hits = np.diag(confusion)[:n_classes].astype(np.float64)
    support = confusion[:n_classes].sum(1)
    answered = confusion[:, :n_classes].sum(0)
    precision = np.divide(hits, answered, out=np.zeros(n_classes), where=answered > 0)
    recall = np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(n_classes), where=total > 0)
    present = np.flatnonzero(support > 0)
    scores = [
        ClassScore(
            classes[i].item(), float(precision[i]), float(recall[i]), float(f1[i]), int(support[i])
        )
        for i in present
    ]
    return scores, float(f1[present].mean()) if present.size else 0.0


def _confused_pairs(
    confusion: np.ndarray, classes: np.ndarray, n_pairs: int
) -> list[tuple[Any, Any, int]]:
    """The largest off-diagonal cells, as (true, predicted, count); ``None`` is unknown."""
    labels = [*np.asarray(classes).tolist(), None]
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n_pairs]
    rows, cols = np.unravel_index(flat, off.shape)
    return [
        (labels[r], labels[c], int(off[r, c])) for r, c in zip(rows, cols, strict=True) if off[r, c]
    ]


def plot_confusion(report: ScoreReport, path: str | Path, *, title: str = "") -> Path:
    """Write the row-normalised confusion matrix as a PNG (up to :data:`PLOT_CLASSES` classes;
    the unknown row and column only when there are unknown or rejected rows).

    Raises
    ------
    ValueError
        If the model has more classes than can be read in one picture (the report's
        ``confused_pairs`` list the mistakes instead).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix, labels = report.confusion, list(report.labels)
    if not matrix[-1].any() and not matrix[:, -1].any():
        matrix, labels = matrix[:-1, :-1], labels[:-1]
    if len(labels) > PLOT_CLASSES:
        raise ValueError(
            f"{len(labels)} classes are too many for a readable confusion matrix (at most "
            f"{PLOT_CLASSES}); the most confused pairs are listed instead"
        )
    rows = matrix.sum(1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    names = ["unknown" if label is None else str(label) for label in labels]
    size = min(4 + 0.18 * len(names), 24)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=max(4, 10 - len(names) // 12))
    ax.set_yticks(range(len(names)), names, fontsize=max(4, 10 - len(names) // 12))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {100 * report.accuracy:.1f}% on {report.n} rows")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class's rows")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
