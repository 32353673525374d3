"""Temperature scaling: the bisection against a brute-force search, and the estimators' fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot import PrototypeClassifier
from protoshot.estimators import MahalanobisClassifier
from protoshot.maths.calibration import SPAN, fit_temperature
from protoshot.maths.distances import default_temperature


def nll(scores: torch.Tensor, target: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(scores / temperature, target))


@given(st.integers(0, 10_000), st.floats(0.2, 5.0))
@settings(max_examples=40, deadline=None)
def test_fit_temperature_finds_the_least_nll(seed: int, signal: float) -> None:
    rng = np.random.default_rng(seed)
    target = torch.as_tensor(rng.integers(0, 5, 60))
    scores = torch.as_tensor(rng.normal(size=(60, 5))) + signal * torch.nn.functional.one_hot(
        target, 5
    )
    best = fit_temperature(scores, target)
    spread = float(scores.std())  # the bracket: from spread / SPAN to spread * SPAN
    grid = np.exp(np.linspace(np.log(spread / SPAN), np.log(spread * SPAN), 2001))
    brute = min(grid, key=lambda t: nll(scores, target, t))
    assert nll(scores, target, best) <= nll(scores, target, brute) + 1e-9
    if nll(scores, target, best) > 1e-3:  # not separable: the minimum is sharp enough to locate
        assert best == pytest.approx(brute, rel=0.01)


def test_fit_temperature_edges() -> None:
    target = torch.tensor([0, 1, 2])
    separated = torch.eye(3) * 10.0
    sharp = fit_temperature(separated, target)  # as sharp as the NLL can tell apart
    assert sharp < 1 and nll(separated, target, sharp) < 1e-12
    with pytest.raises(ValueError, match="do not vary"):
        fit_temperature(torch.ones(3, 3), target)
    with pytest.raises(ValueError, match=r"need scores \[n, C\]"):
        fit_temperature(torch.ones(0, 3), target[:0])


@pytest.mark.parametrize(
    "make",
    [lambda: PrototypeClassifier("cosine", normalization="cl2n"), lambda: MahalanobisClassifier()],
    ids=["prototypes", "mahalanobis"],
)
def test_estimators_fit_their_temperature_on_held_out_shots(make, blobs) -> None:
    x, y = blobs
    model = make().fit(x, y)
    default = default_temperature(model.get_params().get("metric", "sqeuclidean"), "cl2n")
    assert model.temperature_ != default
    fitted = model.temperature_
    one_shot = make().fit(x[np.unique(y, return_index=True)[1]], np.unique(y))
    assert one_shot.temperature_ == default  # nothing to hold out
    first = make().fit(x[:40], y[:40])
    before = first.temperature_
    first.partial_fit(x[40:], y[40:])
    assert first.temperature_ != before  # refitted on every update
    assert first.temperature_ == pytest.approx(fitted, rel=0.5)
    fixed = PrototypeClassifier(temperature=0.5).fit(x, y)
    assert fixed.temperature_ == 0.5


def test_a_temperature_needs_enough_held_out_shots(blobs) -> None:
    """One extra shot in a 1-shot model holds out a single shot: right or wrong, it would send
    the temperature to an end of its range; the default stays until there is more."""
    x, y = blobs
    first = np.unique(y, return_index=True)[1]
    model = PrototypeClassifier("cosine", normalization="cl2n").fit(x[first], y[first])
    spare = np.setdiff1d(np.flatnonzero(y == y[first[0]]), first)[:1]
    model.partial_fit(x[spare], y[spare])
    assert model.temperature_ == 0.1
