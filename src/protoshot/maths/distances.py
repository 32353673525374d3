"""Scores between queries and prototypes. Higher is better for every metric.

- ``"sqeuclidean"``: negative *squared* Euclidean distance, ``-(|q|^2 - 2 q.p + |p|^2)``, the
  distance of Prototypical Networks (its softmax is the paper's).
- ``"euclidean"``: negative (unsquared) Euclidean distance.
- ``"cosine"``: cosine similarity in [-1, 1] (scaled by ``1 / temperature`` in probabilities).
- ``"dot"``: inner product.
"""

from __future__ import annotations

import torch

from protoshot._validation import ArrayLike, as_float_tensor, check_choice, check_same_features
from protoshot.maths.normalize import EPS

METRICS = ("sqeuclidean", "euclidean", "cosine", "dot")

#: Softmax temperature used when none is given: cosine lives in [-1, 1] and needs sharpening.
DEFAULT_TEMPERATURE = {"sqeuclidean": 1.0, "euclidean": 1.0, "cosine": 0.1, "dot": 1.0}
#: ... and for unit-length (L2 / CL2N-normalised) embeddings, where every score is bounded:
#: squared distance is ``2 - 2 cos``, so 0.2 matches cosine's 0.1.
UNIT_SPHERE_TEMPERATURE = {"sqeuclidean": 0.2, "euclidean": 0.1, "cosine": 0.1, "dot": 0.1}


def default_temperature(metric: str, normalization: str) -> float:
    """The softmax temperature of ``metric`` scores: :data:`DEFAULT_TEMPERATURE` on raw
    embeddings, :data:`UNIT_SPHERE_TEMPERATURE` on L2 / CL2N-normalised ones."""
    table = DEFAULT_TEMPERATURE if normalization == "none" else UNIT_SPHERE_TEMPERATURE
    return table[metric]


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """``|x|^2`` over the last axis, without the full-size temporary of ``x.pow(2).sum(-1)``."""
    return torch.linalg.vector_norm(x, dim=-1).square()


def scores_from_products(
    qp: torch.Tensor, q_sq: torch.Tensor, p_sq: torch.Tensor, metric: str
) -> torch.Tensor:
    """Scores ``[E, Q, N]`` from inner products ``q.p`` ``[E, Q, N]`` and squared norms.

    Every metric is a function of ``q.p``, ``|q|^2`` (``[E, Q]``) and ``|p|^2`` (``[E, N]``); the
    evaluator obtains these for many configurations from one matrix product.
    """
    if metric == "dot":
        return qp
    if metric == "cosine":
        q_norm = q_sq.sqrt().clamp_min(EPS).unsqueeze(-1)
        p_norm = p_sq.sqrt().clamp_min(EPS).unsqueeze(1)
        return qp / q_norm / p_norm
    # |q|^2 - 2 q.p + |p|^2, clamping the rounding below zero
    d2 = (q_sq.unsqueeze(-1) - 2.0 * qp).add_(p_sq.unsqueeze(1)).clamp_min_(0.0)
    return d2.neg_() if metric == "sqeuclidean" else d2.sqrt_().neg_()


def episode_scores(query: torch.Tensor, protos: torch.Tensor, metric: str) -> torch.Tensor:
    """Unchecked core of :func:`scores`: ``[E, Q, D]`` x ``[E, N, D]`` -> ``[E, Q, N]``."""
    qp = torch.bmm(query, protos.transpose(1, 2))
    return scores_from_products(qp, squared_norms(query), squared_norms(protos), metric)


def scores(query: ArrayLike, prototypes: ArrayLike, metric: str = "sqeuclidean") -> ArrayLike:
    """Score every query against every prototype (higher = closer).

    Parameters
    ----------
    query : float [E, Q, D] or [Q, D]
    prototypes : float [E, N, D] or [N, D]
    metric : {"sqeuclidean", "euclidean", "cosine", "dot"}

    Returns
    -------
    float [E, Q, N] or [Q, N], the same kind (numpy or torch) as ``query``.
    """
    check_choice("metric", metric, METRICS)
    q = as_float_tensor(query, "query", ndim=(2, 3))
    p = as_float_tensor(prototypes, "prototypes", ndim=q.ndim, dtype=q.dtype, device=q.device)
    check_same_features(p, q, "prototypes", "query")
    squeeze = q.ndim == 2
    if squeeze:
        q, p = q.unsqueeze(0), p.unsqueeze(0)
    elif q.shape[0] != p.shape[0]:
        raise ValueError(f"query has {q.shape[0]} episodes but prototypes have {p.shape[0]}")
    out = episode_scores(q, p, metric)
    out = out[0] if squeeze else out
    return out if isinstance(query, torch.Tensor) else out.numpy()


def predict_proba(scores: ArrayLike, temperature: float = 1.0) -> ArrayLike:
    """Class probabilities: softmax of ``scores / temperature`` over the last axis."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = as_float_tensor(scores, "scores", ndim=(1, 2, 3))
    out = torch.softmax(s / temperature, dim=-1)
    return out if isinstance(scores, torch.Tensor) else out.numpy()
