"""Temperature scaling: the softmax temperature that makes held-out probabilities honest.

The negative log-likelihood of ``softmax(beta * scores)`` is convex in the inverse temperature
``beta`` (a log-sum-exp of linear functions minus a linear function), and its derivative is
``E_p[score] - score_of_the_true_class``, averaged, which increases with ``beta``. So the best
``beta`` is found by bisection on the sign of that derivative: no step size, no local minimum.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Bisection steps on log(beta): the bracket of 1e6 shrinks below 1e-6 relative.
STEPS = 60
#: The bracket, relative to the spread of the scores: temperatures from 1e-3 to 1e3 spreads.
SPAN = 1e3


def fit_temperature(scores: torch.Tensor, target: torch.Tensor) -> float:
    """The temperature ``T`` minimising the mean NLL of ``softmax(scores / T)`` for the true
    classes ``target`` [n] of ``scores`` [n, C]; clamped to the bracket when the optimum lies
    outside it (perfectly separated scores want ``T -> 0``).

    Raises
    ------
    ValueError
        If there are no rows, or the scores do not vary (no temperature is better than another).
    """
    scores = scores.to(torch.float64)
    if scores.shape[0] == 0 or scores.dim() != 2 or target.shape != scores.shape[:1]:
        raise ValueError(
            f"need scores [n, C] and n targets, got {tuple(scores.shape)} and {tuple(target.shape)}"
        )
    spread = float(scores.std())
    if not spread > 0:
        raise ValueError("the scores do not vary: no temperature fits them")
    s = scores.cpu().numpy()  # small: numpy's per-call cost is far below torch's here
    true = s[np.arange(len(s)), target.cpu().numpy()]
    shifted = s - s.max(1, keepdims=True)

    def slope(beta: float) -> float:
        weights = np.exp(beta * shifted)
        expected = (weights * s).sum(1) / weights.sum(1)
        return float((expected - true).mean())

    low, high = math.log(1 / (SPAN * spread)), math.log(SPAN / spread)
    for _ in range(STEPS):
        mid = (low + high) / 2
        if slope(math.exp(mid)) < 0:  # the NLL still falls: sharper
            low = mid
        else:
            high = mid
    return math.exp(-(low + high) / 2)
