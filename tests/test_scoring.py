"""Scores of a model on labelled data, against scikit-learn, scipy and naive loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from protoshot.scoring import (
    expected_calibration_error,
    plot_confusion,
    score_predictions,
    wilson_interval,
)

CLASSES = np.array(["a", "b", "c", "d"])


def _case(seed: int, n: int = 200, unknown_share: float = 0.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, len(CLASSES))) * 2
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    true = CLASSES[np.where(rng.random(n) < 0.6, proba.argmax(1), rng.integers(0, 4, n))]
    unknown = rng.random(n) < unknown_share
    return true.astype(object), proba, unknown


def test_matches_sklearn_without_rejection() -> None:
    true, proba, _ = _case(0)
    report = score_predictions(true, proba, CLASSES)
    pred = CLASSES[proba.argmax(1)]
    assert report.accuracy == pytest.approx(np.mean(pred == true))
    assert report.macro_f1 == pytest.approx(f1_score(true, pred, average="macro"))
    p, r, _, s = precision_recall_fscore_support(true, pred, labels=CLASSES, zero_division=0)
    assert [c.precision for c in report.per_class] == pytest.approx(p)
    assert [c.recall for c in report.per_class] == pytest.approx(r)
    assert [c.support for c in report.per_class] == s.tolist()
    assert np.array_equal(report.confusion[:4, :4], confusion_matrix(true, pred, labels=CLASSES))
    assert report.n_unknown == 0 and report.unknown_recall is None
    nll = -np.mean([np.log(proba[i, list(CLASSES).index(t)]) for i, t in enumerate(true)])
    assert report.nll == pytest.approx(nll)


def test_open_set_counts_rejected_unknowns_as_right() -> None:
    true, proba, unknown = _case(1, unknown_share=0.3)
    true[unknown] = None
    rejected = proba.max(1) < 0.6
    report = score_predictions(true, proba, CLASSES, rejected=rejected, unknown=unknown)
    pred = CLASSES[proba.argmax(1)]
    right = [
        (rej if out else (not rej and p == t))
        for t, p, rej, out in zip(true, pred, rejected, unknown, strict=True)
    ]
    assert report.accuracy == pytest.approx(np.mean(right))
    assert report.unknown_recall == pytest.approx(rejected[unknown].mean())
    assert report.false_accept_rate == pytest.approx(1 - rejected[unknown].mean())
    assert report.accept_rate == pytest.approx(1 - rejected.mean())
    assert report.known_accuracy == pytest.approx(np.mean(np.array(right)[~unknown]))
    # a rejected known row counts against its class's recall
    hit = (pred == true) & ~rejected & ~unknown
    assert sum(c.recall * c.support for c in report.per_class) == pytest.approx(hit.sum())
    assert report.confusion[-1].sum() == unknown.sum()
    assert report.confusion[:, -1].sum() == rejected.sum()
    assert all(t is None or p is None or t != p for t, p, _ in report.confused_pairs)


def test_ece_matches_a_loop_over_bins() -> None:
    _, proba, _ = _case(2, n=500)
    truth = np.random.default_rng(3).integers(0, 4, 500)
    conf, hit = proba.max(1), proba.argmax(1) == truth
    ece = 0.0
    for b in range(15):
        inside = (conf >= b / 15) & (conf < (b + 1) / 15)
        if inside.any():
            ece += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    assert expected_calibration_error(proba, truth) == pytest.approx(ece)
    perfect = np.eye(4)[truth]
    assert expected_calibration_error(perfect, truth) == 0.0


@given(st.integers(0, 60), st.integers(1, 60))
@settings(max_examples=60, deadline=None)
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    k = min(k, n)
    low, high = wilson_interval(k, n)
    expected = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-9)
    assert 0 <= low <= k / n <= high <= 1


@given(st.integers(0, 10_000), st.floats(0, 0.9))
@settings(max_examples=40, deadline=None)
def test_invariants(seed: int, share: float) -> None:
    true, proba, unknown = _case(seed, n=50, unknown_share=share)
    report = score_predictions(true, proba, CLASSES, rejected=proba.max(1) < 0.5, unknown=unknown)
    assert report.confusion.sum() == report.n == 50
    assert 0 <= report.macro_f1 <= 1 and 0 <= report.accuracy <= 1
    assert report.accuracy_ci[0] <= report.accuracy <= report.accuracy_ci[1]
    assert report.accuracy == pytest.approx(np.trace(report.confusion) / 50)


def test_refuses_labels_outside_the_model_and_bad_shapes() -> None:
    true, proba, _ = _case(4, n=10)
    true[3] = "zebra"
    with pytest.raises(ValueError, match=r"not classes of the model: zebra.*unknown-label"):
        score_predictions(true, proba, CLASSES)
    with pytest.raises(ValueError, match="got 9 labels"):
        score_predictions(true[:9], proba, CLASSES)
    with pytest.raises(ValueError, match="mark each of the 10 rows"):
        score_predictions(true, proba, CLASSES, rejected=[True])
    with pytest.raises(ValueError, match="no rows"):
        score_predictions([], np.zeros((0, 4)), CLASSES)


def test_to_dict_is_json_and_plot_is_a_png(tmp_path) -> None:
    import json

    true, proba, unknown = _case(5, unknown_share=0.2)
    true[unknown] = None
    report = score_predictions(true, proba, CLASSES, rejected=proba.max(1) < 0.5, unknown=unknown)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["labels"] == ["a", "b", "c", "d", None]
    assert len(data["confusion"]) == 5
    path = plot_confusion(report, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_refuses_too_many_classes(tmp_path) -> None:
    classes = np.array([f"c{i}" for i in range(150)])
    proba = np.eye(150)
    report = score_predictions(classes.astype(object), proba, classes)
    with pytest.raises(ValueError, match="150 classes are too many"):
        plot_confusion(report, tmp_path / "c.png")
