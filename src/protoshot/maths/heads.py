"""A softmax head fitted on a few shots, batched over episodes.

A Prototypical Network is a linear layer: nearest-prototype scores under squared Euclidean
distance are ``2 p_c . x - |p_c|^2`` (up to a term equal for every class), and under cosine they
are ``p_c . x / (|p_c| T)`` on unit-length queries. :func:`prototype_head` turns prototypes into
those weights; :func:`fit_head` starts from them and fits the weights to the support set by
full-batch L-BFGS on the cross-entropy, with a penalty toward the start so that a few shots
move the prototypes only as far as the shots justify (the prototype head is the limit of an
infinite penalty).

Episodes are independent problems; they are solved as one problem whose objective is their sum,
so its optimum is every episode's own optimum and thousands of episodes cost one optimisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Default penalty toward the prototype head and starting temperature, chosen on SNIPS
#: (``benchmarks/accuracy.py --select``), never on the data sets the README reports.
DEFAULT_PENALTY = 1e-4
DEFAULT_HEAD_TEMPERATURE = 0.1


@dataclass(frozen=True)
class Head:
    """Weights ``[E, N, D]`` and biases ``[E, N]`` of a linear head per episode."""

    weight: torch.Tensor
    bias: torch.Tensor
    #: bool [E]: whether each episode's fit reached the gradient tolerance.
    converged: torch.Tensor
    #: L-BFGS iterations the batch took.
    n_iter: int = 0

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[E, M, N]`` of queries ``x`` [E, M, D]."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


def prototype_head(
    prototypes: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosine head of ``prototypes`` [E, N, D]: weights ``p / (|p| T)``, biases 0.

    On unit-length queries its logits are the cosine scores over the temperature.
    """
    norms = prototypes.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(prototypes.dtype).tiny)
    weight = prototypes / (norms * temperature)
    return weight, weight.new_zeros(weight.shape[:2])


def fit_head(
    x: torch.Tensor,
    y: torch.Tensor,
    sample_weight: torch.Tensor,
    weight0: torch.Tensor,
    bias0: torch.Tensor,
    *,
    penalty: float = DEFAULT_PENALTY,
    max_iter: int = 200,
    tol: float | None = None,
) -> Head:
    """Minimise, for each episode, the weighted mean cross-entropy of the support plus
    ``penalty / 2 * (|W - W0|^2 + |b - b0|^2)``.

    Parameters
    ----------
    x : float [E, M, D]
        Support embeddings (already normalised), padded to ``M`` per episode.
    y : int64 [E, M]
        Class of each row, in ``[0, N)``.
    sample_weight : float [E, M]
        Weight of each row (0 for padding); each episode's weights are normalised to sum to 1.
    weight0, bias0 : float [E, N, D], [E, N]
        Where to start and what the penalty pulls toward (e.g. :func:`prototype_head`).
    penalty : float
        Strength of the pull toward the start, > 0 (it makes the problem strictly convex).
    max_iter : int
        L-BFGS iterations for the whole batch of episodes.
    tol : float, optional
        Gradient tolerance (max-norm, per episode) that counts as converged; by default
        ``1e-5`` in float64 and ``1e-3`` in lower precision.
    """
    if not penalty > 0:
        raise ValueError(f"penalty must be > 0, got {penalty}")
    if tol is None:
        tol = 1e-5 if x.dtype == torch.float64 else 1e-3
    e, _, n = (*x.shape[:2], weight0.shape[1])
    w = sample_weight / sample_weight.sum(1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    weight = weight0.detach().clone().requires_grad_(True)
    bias = bias0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=tol / 10,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, n), y.reshape(-1), reduction="none"
        ).view(e, -1)
        pull = (weight - weight0).square().sum((1, 2)) + (bias - bias0).square().sum(1)
        loss = ((ce * w).sum(1) + 0.5 * penalty * pull).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
        objective()  # gradients at the final point, to judge convergence per episode
    assert weight.grad is not None and bias.grad is not None
    grad = torch.maximum(weight.grad.abs().amax((1, 2)), bias.grad.abs().amax(1))
    n_iter = int(optimizer.state_dict()["state"][0]["n_iter"])
    return Head(weight.detach(), bias.detach(), grad <= tol, n_iter)
