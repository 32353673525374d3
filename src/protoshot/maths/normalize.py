"""Embedding normalisations applied before prototypes are built.

Order (the same everywhere): first centre, then L2-normalise, each sample on its own.

- ``"none"``: embeddings as they come.
- ``"l2"``: each embedding divided by its Euclidean norm.
- ``"cl2n"``: centring + L2 (SimpleShot, Wang et al. 2019): subtract a centre, then L2-normalise.
  The centre is the mean of the episode's support embeddings unless a base mean (the mean
  embedding of the base / training classes) is given.
"""

from __future__ import annotations

import torch

from protoshot._validation import ArrayLike, as_float_tensor, check_choice, check_same_features
from protoshot.maths.shots import shot_mask

NORMALIZATIONS = ("none", "l2", "cl2n")
EPS = 1e-12


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Divide each vector on the last axis by its Euclidean norm (zero vectors stay zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(EPS)


def normalize_tensor(x: torch.Tensor, method: str, center: torch.Tensor | None) -> torch.Tensor:
    """Unchecked core of :func:`normalize`: centre (for ``"cl2n"`` with a centre), then L2."""
    if method == "none":
        return x
    if method == "cl2n" and center is not None:
        x = x - center
    return l2_normalize(x)


def support_mean(support: torch.Tensor, n_support: torch.Tensor | None = None) -> torch.Tensor:
    """Mean support embedding of each episode, ``[E, 1, 1, D]`` for support ``[E, N, K, D]``.

    With ``n_support`` (int ``[E, N]``) only the first ``n_support[e, n]`` shots of each class count.
    """
    if n_support is None:
        return support.mean(dim=(1, 2), keepdim=True)
    weights = shot_mask(n_support, support.shape[2], support.dtype).unsqueeze(-1)
    total = (support * weights).sum(dim=(1, 2), keepdim=True)
    return total / weights.sum(dim=(1, 2), keepdim=True)


def normalize_episode_tensors(
    support: torch.Tensor,
    query: torch.Tensor,
    method: str,
    *,
    center: torch.Tensor | None = None,
    n_support: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchecked core of :func:`normalize_episode` on tensors ``[E, N, K, D]`` and ``[E, Q, D]``."""
    if method == "cl2n" and center is None:
        mean = support_mean(support, n_support)
        return l2_normalize(support - mean), l2_normalize(query - mean.squeeze(1))
    return normalize_tensor(support, method, center), normalize_tensor(query, method, center)


def normalize(x: ArrayLike, method: str = "l2", *, center: ArrayLike | None = None) -> ArrayLike:
    """Normalise embeddings one sample at a time.

    Parameters
    ----------
    x : float [..., D]
        Embeddings (numpy array or torch tensor; the result has the same kind).
    method : {"none", "l2", "cl2n"}
        ``"cl2n"`` subtracts ``center`` first; without a centre it equals ``"l2"`` here, because a
        single batch of samples has no episode to take the support mean from
        (use :func:`normalize_episode` for that).
    center : float [D], optional
        The centre for ``"cl2n"``, usually the mean embedding of the base classes.
    """
    check_choice("normalization", method, NORMALIZATIONS)
    t = as_float_tensor(x, "embeddings", ndim=(1, 2, 3, 4))
    c = None if center is None else as_float_tensor(center, "center", ndim=1, dtype=t.dtype)
    if c is not None:
        check_same_features(t, c, "embeddings", "center")
    out = normalize_tensor(t, method, c)
    return out if isinstance(x, torch.Tensor) else out.numpy()


def normalize_episode(
    support: ArrayLike,
    query: ArrayLike,
    method: str = "cl2n",
    *,
    center: ArrayLike | None = None,
) -> tuple[ArrayLike, ArrayLike]:
    """Normalise the support and query embeddings of episodes with the same centre.

    Parameters
    ----------
    support : float [E, N, K, D]
        Support embeddings: ``E`` episodes, ``N`` classes, ``K`` shots.
    query : float [E, Q, D]
        Query embeddings of the same episodes.
    method : {"none", "l2", "cl2n"}
    center : float [D], optional
        Fixed centre for ``"cl2n"``; by default each episode's mean support embedding.
    """
    check_choice("normalization", method, NORMALIZATIONS)
    s = as_float_tensor(support, "support", ndim=4)
    q = as_float_tensor(query, "query", ndim=3, dtype=s.dtype)
    check_same_features(s, q, "support", "query")
    c = None if center is None else as_float_tensor(center, "center", ndim=1, dtype=s.dtype)
    if c is not None:
        check_same_features(s, c, "support", "center")
    s_out, q_out = normalize_episode_tensors(s, q, method, center=c)
    if isinstance(support, torch.Tensor):
        return s_out, q_out
    return s_out.numpy(), q_out.numpy()
