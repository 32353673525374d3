"""A shared class covariance from a few shots, shrunk toward a scaled identity, batched over
episodes; and distances under it (Mahalanobis).

The within-class scatter of a few shots is singular (fewer shots than dimensions), so it is
shrunk: ``(1 - a) S + a mu I`` with ``mu = tr(S) / D`` and ``a`` from Ledoit-Wolf (2004) or
OAS (Chen et al. 2010), the formulas of scikit-learn's ``LedoitWolf`` / ``OAS`` (tested against
them). OAS needs only ``S`` and the shot count, so it also follows from additive statistics.
"""

from __future__ import annotations

import torch

SHRINKAGES = ("oas", "ledoit-wolf")


def within_class_scatter(
    x: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shots centred on their class mean, the pooled covariance and the shot count.

    ``x`` [E, N, K, D] with ``mask`` [E, N, K] (1 = a shot). Returns the centred rows
    ``[E, N * K, D]`` (padding rows zero), ``S = sum of outer products / n`` ``[E, D, D]`` and
    ``n`` ``[E]``.
    """
    counts = mask.sum(-1, keepdim=True).clamp_min(1.0)
    means = torch.einsum("enk,enkd->end", mask, x) / counts
    centred = (x - means.unsqueeze(2)) * mask.unsqueeze(-1)
    rows = centred.reshape(x.shape[0], -1, x.shape[-1])
    n = mask.sum((1, 2))
    scatter = torch.bmm(rows.transpose(1, 2), rows) / n.clamp_min(1.0).view(-1, 1, 1)
    return rows, scatter, n


def shrinkage(
    rows: torch.Tensor, scatter: torch.Tensor, n: torch.Tensor, method: str
) -> torch.Tensor:
    """The shrinkage ``a`` [E] of ``scatter`` toward ``mu I``: OAS or Ledoit-Wolf.

    ``rows`` (the centred shots) are needed by Ledoit-Wolf only.
    """
    d = scatter.shape[-1]
    mu = torch.diagonal(scatter, dim1=1, dim2=2).sum(-1) / d
    frob = scatter.square().sum((1, 2))  # |S|_F^2
    if method == "oas":
        alpha = frob / d**2
        num = alpha + mu.square()
        den = (n + 1) * (alpha - mu.square() / d)
        # rounding can make den <= 0 for a (numerically) isotropic scatter: shrink fully
        return torch.where(den <= 0, torch.ones_like(den), (num / den).clamp(0.0, 1.0))
    if method == "ledoit-wolf":
        beta_ = rows.square().sum(-1).square().sum(-1)  # sum_k |x_k|^4
        n_ = n.clamp_min(1.0)
        beta = (beta_ / n_ - frob) / (d * n_)
        delta = (frob - d * mu.square()) / d
        beta = torch.minimum(beta, delta)
        return torch.where(beta == 0, torch.zeros_like(beta), (beta / delta).clamp(0.0, 1.0))
    raise ValueError(f"unknown shrinkage {method!r}; expected one of: {', '.join(SHRINKAGES)}")


def shrunk_covariance(scatter: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``((1 - a) S + a mu I) / mu``: the shrunk covariance scaled to unit mean variance, so that
    a Mahalanobis distance stays on the scale of a Euclidean one whatever the shot count; the
    identity where ``S`` is zero (one shot per class)."""
    d = scatter.shape[-1]
    mu = torch.diagonal(scatter, dim1=1, dim2=2).sum(-1) / d
    eye = torch.eye(d, dtype=scatter.dtype, device=scatter.device)
    scale = mu.clamp_min(torch.finfo(scatter.dtype).tiny).view(-1, 1, 1)
    cov = (1 - a).view(-1, 1, 1) * scatter / scale + a.view(-1, 1, 1) * eye
    return torch.where((mu > 0).view(-1, 1, 1), cov, eye.expand_as(cov))


def whitener(cov: torch.Tensor) -> torch.Tensor:
    """The lower Cholesky factor ``L`` of ``cov`` [E, D, D] (``cov = L L^T``). An episode whose
    covariance rounding leaves not quite positive definite gets a jitter of ``1e-6 mu`` on the
    diagonal, and the identity if even that fails (plain Euclidean distances)."""
    d = cov.shape[-1]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    factor, info = torch.linalg.cholesky_ex(cov)
    bad = info > 0
    if bool(bad.any()):
        mu = torch.diagonal(cov[bad], dim1=1, dim2=2).mean(-1).abs().clamp_min(1e-12)
        retry, again = torch.linalg.cholesky_ex(cov[bad] + (1e-6 * mu).view(-1, 1, 1) * eye)
        factor[bad] = torch.where((again > 0).view(-1, 1, 1), eye, retry)
    return factor


def whiten(factor: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``L^-1 x`` for rows ``x`` [E, M, D]: squared Euclidean distances between whitened rows
    are Mahalanobis distances under ``L L^T``."""
    solved = torch.linalg.solve_triangular(factor, x.transpose(1, 2), upper=False)
    return solved.transpose(1, 2)
