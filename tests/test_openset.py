"""Open-set similarity and its three thresholds, against naive loops, on random vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot import PrototypeClassifier
from protoshot.estimators import create_estimator
from protoshot.maths.openset import MIX, class_similarity, leave_one_out_similarity
from protoshot.openset import Rejection, from_held_out, from_shots, from_traffic


def unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else v * 0


def naive_similarity(q, shots, codes, names, named, center, mix=MIX, leave_out=None):
    """s_c(q) by loops; ``leave_out`` drops one shot (by position) from every comparison."""
    out = []
    for c in range(len(names)):
        members = [
            unit(shots[i] - center) for i in range(len(shots)) if codes[i] == c and i != leave_out
        ]
        parts = members + ([unit(names[c] - center)] if named[c] else [])
        if not parts:
            out.append(-np.inf)
            continue
        u = unit(q - center)
        proto = float(u @ unit(np.sum(parts, axis=0)))
        near = max(float(u @ p) for p in parts)
        out.append(mix * proto + (1 - mix) * near)
    return np.array(out)


def case(seed: int, n_classes: int = 4, shots: int = 3, dim: int = 6):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_classes * shots, dim))
    codes = np.repeat(np.arange(n_classes), shots)
    rng.shuffle(codes)
    codes[:n_classes] = np.arange(n_classes)  # every class has a shot
    names = rng.normal(size=(n_classes, dim))
    named = rng.random(n_classes) < 0.5
    return x, codes, names, named, x.mean(0)


def tensors(*arrays):
    return [torch.as_tensor(a) for a in arrays]


@given(st.integers(0, 10_000), st.integers(1, 4))
@settings(max_examples=30, deadline=None)
def test_similarity_and_leave_one_out_match_loops(seed: int, shots: int) -> None:
    x, codes, names, named, center = case(seed, shots=shots)
    queries = np.random.default_rng(seed + 1).normal(size=(5, x.shape[1]))
    got = class_similarity(*tensors(queries, x, codes, names, named, center)).numpy()
    expected = np.stack([naive_similarity(q, x, codes, names, named, center) for q in queries])
    np.testing.assert_allclose(got, expected, atol=1e-10)
    loo = leave_one_out_similarity(*tensors(x, codes, names, named, center)).numpy()
    naive = []
    for i in range(len(x)):
        per_class = naive_similarity(x[i], x, codes, names, named, center, leave_out=i)
        alone = np.isinf(per_class[codes[i]])  # nothing of its class left: not comparable
        naive.append(np.nan if alone else per_class.max())
    np.testing.assert_allclose(loo, naive, atol=1e-10)


def test_similarity_of_a_shot_to_its_own_class_is_one_and_chunks_agree(monkeypatch) -> None:
    x, codes, names, named, center = case(3, shots=1)
    named[:] = False
    sim = class_similarity(*tensors(x, x, codes, names, named, center)).numpy()
    np.testing.assert_allclose(sim[np.arange(len(x)), codes], 1.0)  # alone: prototype = the shot
    import protoshot.maths.openset as core

    whole = leave_one_out_similarity(*tensors(*case(4, shots=3)))
    monkeypatch.setattr(core, "CHUNK", 2)
    np.testing.assert_allclose(leave_one_out_similarity(*tensors(*case(4, shots=3))), whole)


def _fitted(method: str = "prototypes"):
    x, codes, *_ = case(5, n_classes=5, shots=6, dim=8)
    model = create_estimator(method).fit(x.astype(np.float32), codes)
    return model, x


@pytest.mark.parametrize("method", ["prototypes", "linear", "auto", "mahalanobis"])
def test_from_shots_accepts_that_share_of_the_shots(method: str) -> None:
    model, x = _fitted(method)
    rejection = from_shots(model, accept=0.8)
    shots, codes = model.support_.astype(np.float64), model.support_codes_
    loo = [
        naive_similarity(
            shots[i], shots, codes, np.zeros((5, 8)), np.zeros(5, bool), x.mean(0), leave_out=i
        ).max()
        for i in range(len(shots))
    ]
    assert np.mean(np.array(loo) >= rejection.threshold) == pytest.approx(0.8, abs=1 / len(loo))
    assert "80% of the model's 30 shots" in rejection.rule
    np.testing.assert_allclose(rejection.center, x.mean(0), atol=1e-6)


def test_lone_shots_do_not_set_a_threshold() -> None:
    """With one shot per class and no names, a shot's best similarity is to another class:
    a threshold from it would accept almost anything, so there is none."""
    x, codes, *_ = case(6, n_classes=6, shots=1, dim=8)
    one_shot = create_estimator("prototypes").fit(x.astype(np.float32), codes)
    with pytest.raises(ValueError, match="needs classes with two shots or a name"):
        from_shots(one_shot)
    named = create_estimator("prototypes").fit(
        x.astype(np.float32), codes, {c: x[i] + 0.1 for i, c in enumerate(codes)}
    )
    assert "6 shots that have another shot or a name" in from_shots(named).rule


def test_a_held_out_threshold_keeps_its_false_accept_rate_in_any_batch() -> None:
    model, _ = _fitted()
    unknown = np.random.default_rng(12).normal(size=(40, 8))
    known = np.zeros(40, bool)
    known[:20] = True
    rejection = from_held_out(model, unknown, known, false_accept_rate=0.1)
    outside = unknown[20:]
    for batch in (outside, outside[::-1], np.concatenate([unknown[:7], outside])):
        accepted = ~rejection.rejected(model, batch)
        assert accepted[-20:].sum() <= 2  # the 20 unknowns come last: 10% of them at most


def similarities(model, probe: np.ndarray, center: np.ndarray) -> np.ndarray:
    """``class_similarity`` of ``probe`` to the classes an estimator holds now."""
    shots = model.support_.astype(np.float64)
    return class_similarity(
        *tensors(probe, shots, model.support_codes_, model.names_, model.named_, center)
    ).numpy()


def test_threshold_survives_new_classes() -> None:
    """The centre is fixed when the threshold is chosen: adding a class leaves every existing
    class's similarity to any input exactly as it was (unlike a softmax probability)."""
    model, _ = _fitted()
    rejection = from_shots(model)
    probe = np.random.default_rng(9).normal(size=(20, 8))
    before = similarities(model, probe, rejection.center)
    proba_before = model.predict_proba(probe)
    model.partial_fit(np.random.default_rng(10).normal(size=(3, 8)), [7, 7, 7])
    after = similarities(model, probe, rejection.center)
    np.testing.assert_allclose(after[:, :5], before, atol=1e-12)  # the old classes, unmoved
    assert not np.allclose(model.predict_proba(probe)[:, :5], proba_before)  # probabilities move
    new = model.support_[model.support_codes_ == 5]
    assert not rejection.rejected(model, new).any()  # the new class's own shots are accepted


def test_from_traffic_and_from_held_out() -> None:
    model, _ = _fitted()
    traffic = np.random.default_rng(11).normal(size=(200, 8))
    rejection = from_traffic(model, traffic, unknown_rate=0.3)
    assert rejection.rejected(model, traffic).mean() == pytest.approx(0.3, abs=0.01)
    known = np.arange(200) % 2 == 0
    held = from_held_out(model, traffic, known, false_accept_rate=0.1)
    assert (~held.rejected(model, traffic[~known])).mean() <= 0.1
    with pytest.raises(ValueError, match="both known classes and unknown"):
        from_held_out(model, traffic, np.ones(200, bool), false_accept_rate=0.1)
    with pytest.raises(ValueError, match="expected unknown rate must be in"):
        from_traffic(model, traffic, unknown_rate=1.0)
    with pytest.raises(ValueError, match="accept must be in"):
        from_shots(model, accept=0)


def test_round_trip_checks_every_field() -> None:
    model, _ = _fitted()
    rejection = from_shots(model)
    again = Rejection.from_dict(rejection.to_dict(), 8)
    assert again.threshold == rejection.threshold and again.rule == rejection.rule
    np.testing.assert_array_equal(again.center, rejection.center)
    with pytest.raises(ValueError, match=r"rejection\.center must be 9 finite numbers"):
        Rejection.from_dict(rejection.to_dict(), 9)
    with pytest.raises(ValueError, match=r"rejection\.threshold must be a finite number"):
        Rejection.from_dict({**rejection.to_dict(), "threshold": "high"}, 8)
    with pytest.raises(ValueError, match=r"rejection.mix must be in \[0, 1\]"):
        Rejection.from_dict({**rejection.to_dict(), "mix": 2}, 8)


def test_a_model_saved_without_its_shots_says_so() -> None:
    model = PrototypeClassifier().fit(np.eye(3), [0, 1, 2])
    model.support_ = model.support_[:0]  # what an older prototypes folder loads as
    model.support_codes_ = model.support_codes_[:0]
    with pytest.raises(ValueError, match="saved without its shots"):
        from_traffic(model, np.eye(3), unknown_rate=0.1)
