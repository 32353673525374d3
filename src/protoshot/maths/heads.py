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

#: Default penalty toward the prototype head: the best mean accuracy over 1-10 shots on SNIPS
#: all-class (``benchmarks/accuracy.py --select``), never chosen on a data set the README reports.
DEFAULT_PENALTY = 0.03
#: Temperature of the cosine prototype head the fit starts from (fixed, not tuned).
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
    tol: float = 1e-4,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Head:
    """Minimise, for each episode, the weighted *sum* of the support's cross-entropies plus
    ``penalty / 2 * (|W - W0|^2 + |b - b0|^2)``.

    The penalty is a Gaussian prior around the start, so its strength does not depend on how
    many shots there are: more shots move the head further from the prototypes (as scikit-learn's
    ``C = 1 / penalty`` does for a prior at zero). It is computed divided by the total weight.

    Parameters
    ----------
    x : float [E, M, D]
        Support embeddings (already normalised), padded to ``M`` per episode.
    y : int64 [E, M]
        Class of each row, in ``[0, N)``.
    sample_weight : float [E, M]
        Weight of each row (1 for a shot, 0 for padding).
    weight0, bias0 : float [E, N, D], [E, N]
        Where to start and what the penalty pulls toward (e.g. :func:`prototype_head`).
    penalty : float
        Strength of the pull toward the start, > 0 (it makes the problem strictly convex).
    max_iter : int
        L-BFGS iterations for the whole batch of episodes.
    tol : float
        Gradient tolerance (max-norm, per episode, of the objective divided by the total
        weight) at which the fit stops and counts as converged. Predictions stop changing
        well before it is reached: on BANKING77 supports, 1e-4 and 1e-6 classify the test split
        alike, in 16 instead of 42 iterations.
    start : (weights, biases), optional
        Where to start instead of ``(weight0, bias0)`` (e.g. a lower-precision solution).
    """
    if not penalty > 0:
        raise ValueError(f"penalty must be > 0, got {penalty}")
    total = sample_weight.sum(1).clamp_min(torch.finfo(x.dtype).tiny)
    w, pull_weight = sample_weight / total.unsqueeze(1), penalty / total
    weight, bias = (t.detach().clone() for t in (start or (weight0, bias0)))
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=tol,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )
    target = y.unsqueeze(-1)

    def objective() -> torch.Tensor:
        """The loss, with its gradient written by hand into ``.grad`` (no autograd graph):
        ``d/dlogits = w (softmax - onehot)``, then a matmul back to the weights."""
        logits = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        log_p = torch.log_softmax(logits, -1)
        ce = -log_p.gather(-1, target).squeeze(-1)
        weight_gap, bias_gap = weight - weight0, bias - bias0
        pull = weight_gap.square().sum((1, 2)) + bias_gap.square().sum(1)
        d_logits = log_p.exp_().scatter_add_(-1, target, -torch.ones_like(log_p[..., :1]))
        d_logits.mul_(w.unsqueeze(-1))
        weight.grad = torch.bmm(d_logits.transpose(1, 2), x).add_(
            weight_gap * pull_weight.view(-1, 1, 1)
        )
        bias.grad = d_logits.sum(1).add_(bias_gap * pull_weight.unsqueeze(1))
        return ((ce * w).sum(1) + 0.5 * pull_weight * pull).sum()

    optimizer.step(objective)
    objective()  # gradients at the final point, to judge convergence per episode
    assert weight.grad is not None and bias.grad is not None
    grad = torch.maximum(weight.grad.abs().amax((1, 2)), bias.grad.abs().amax(1))
    n_iter = int(optimizer.state_dict()["state"][0]["n_iter"])
    return Head(weight.detach(), bias.detach(), grad <= tol, n_iter)
