"""Transductive refinement: classes re-estimated from the unlabelled queries of the same batch.

Both start from the prototypes of the shots and alternate between assigning the queries to the
classes and re-computing each class mean from its shots plus its share of the queries, batched
over episodes:

- :func:`soft_kmeans`: soft assignments ``softmax(-beta |q - p|^2)`` (Ren et al. 2018).
- :func:`sinkhorn`: assignments made class-balanced by Sinkhorn iterations, every class taking
  ``M / N`` of the ``M`` queries, and means moved part of the way each step (PT-MAP, Hu et al.
  2021). It *assumes balanced queries*; on an unbalanced batch it forces errors.

Scores are higher-is-better ``[E, M, N]``; they depend on every query of the batch.
"""

from __future__ import annotations

import torch

from protoshot.maths.distances import episode_scores


def _means(
    sums: torch.Tensor, counts: torch.Tensor, assign: torch.Tensor, q: torch.Tensor
) -> torch.Tensor:
    """Class means of the shots (``sums``, ``counts``) and the queries weighted by ``assign``."""
    total = sums + torch.bmm(assign.transpose(1, 2), q)
    return total / (counts + assign.sum(1)).unsqueeze(-1).clamp_min(torch.finfo(q.dtype).tiny)


def soft_kmeans(
    sums: torch.Tensor,
    counts: torch.Tensor,
    queries: torch.Tensor,
    *,
    steps: int = 10,
    beta: float = 10.0,
) -> torch.Tensor:
    """Logits after ``steps`` soft k-means refinements of the prototypes ``sums / counts``:
    ``beta`` times the squared-Euclidean scores, so their softmax is the final soft assignment.

    ``sums`` [E, N, D] and ``counts`` [E, N] of the (normalised) shots, ``queries`` [E, M, D].
    """
    protos = sums / counts.unsqueeze(-1).clamp_min(1.0)
    for _ in range(steps):
        assign = torch.softmax(beta * episode_scores(queries, protos, "sqeuclidean"), -1)
        protos = _means(sums, counts, assign, queries)
    return beta * episode_scores(queries, protos, "sqeuclidean")


def balance(log_p: torch.Tensor, iterations: int = 100) -> torch.Tensor:
    """Sinkhorn: the ``[E, M, N]`` plan proportional to ``exp(log_p)`` whose rows sum to 1 and
    columns to ``M / N`` (each query one unit, shared equally by the classes), in log space."""
    m, n = log_p.shape[1], log_p.shape[2]
    log_col = torch.log(torch.tensor(m / n, dtype=log_p.dtype, device=log_p.device))
    for _ in range(iterations):
        log_p = log_p - torch.logsumexp(log_p, 1, keepdim=True) + log_col
        log_p = log_p - torch.logsumexp(log_p, 2, keepdim=True)
    return log_p


def sinkhorn(
    sums: torch.Tensor,
    counts: torch.Tensor,
    queries: torch.Tensor,
    *,
    steps: int = 30,
    beta: float = 10.0,
    alpha: float = 0.2,
) -> torch.Tensor:
    """Log balanced assignments after ``steps`` PT-MAP refinements (``alpha``: how far each step
    moves the means), as scores ``[E, M, N]``."""
    protos = sums / counts.unsqueeze(-1).clamp_min(1.0)
    log_plan = balance(beta * episode_scores(queries, protos, "sqeuclidean"))
    for _ in range(steps):
        target = _means(sums, counts, log_plan.exp(), queries)
        protos = protos + alpha * (target - protos)
        log_plan = balance(beta * episode_scores(queries, protos, "sqeuclidean"))
    return log_plan
