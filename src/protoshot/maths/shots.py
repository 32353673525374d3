"""Unbalanced supports: which of the ``K`` shot slots of a class hold a shot."""

from __future__ import annotations

import torch


def shot_mask(n_support: torch.Tensor, k_max: int, dtype: torch.dtype) -> torch.Tensor:
    """``[E, N, K]`` weights: 1 for the first ``n_support[e, n]`` of ``k_max`` shots, else 0."""
    positions = torch.arange(k_max, device=n_support.device)
    return (positions < n_support.unsqueeze(-1)).to(dtype)
