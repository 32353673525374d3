"""Temperature scaling: the softmax temperature that makes held-out probabilities honest.

The negative log-likelihood of ``softmax(beta * scores)`` is convex in the inverse temperature
``beta`` (a log-sum-exp of linear functions minus a linear function), and its derivative is
``E_p[score] - score_of_the_true_class``, averaged, which increases with ``beta``. So the best
``beta`` is found by bisection on the sign of that derivative: no step size, no local minimum.
"""

from __future__ import annotations

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
    true = scores.gather(1, target.unsqueeze(1)).squeeze(1)

    def slope(beta: float) -> float:
        p = torch.softmax(beta * scores, dim=1)
        return float(((p * scores).sum(1) - true).mean())

    low, high = torch.log(torch.tensor(1 / (SPAN * spread))), torch.log(torch.tensor(SPAN / spread))
    for _ in range(STEPS):
        mid = (low + high) / 2
        if slope(float(mid.exp())) < 0:  # the NLL still falls: sharper
            low = mid
        else:
            high = mid
    return float(1 / ((low + high) / 2).exp())
