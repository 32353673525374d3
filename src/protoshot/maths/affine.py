"""Normalisation as an affine map of raw products: the identities the fast evaluator rests on.

Normalising a vector is ``a (x - c)`` with a scalar ``a`` (1, or ``1 / |x - c|``) and a centre
``c`` (0, or the CL2N centre), so anything a score needs of normalised vectors follows from raw
products with the centre:

- ``(x - c) . p = x . p - c . p``
- ``|x - c|^2 = |x|^2 - 2 x . c + |c|^2``
- the mean of normalised rows ``(1/K) sum_s a_s (x_s - c)`` is the weighted sum
  ``sum_s w_s x_s - c sum_s w_s`` with ``w_s = a_s / K``.

The evaluator reads each query row once into products with every configuration's prototypes and
centres, and builds normalised prototypes as weighted sums of raw rows, so no embedding is ever
copied or normalised. Each identity is tested against :func:`protoshot.maths.normalize`.
"""

from __future__ import annotations

import torch

from protoshot.maths.normalize import EPS


def centered_sq_norms(x_sq: torch.Tensor, x_c: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
    """``|x - c|^2`` from ``|x|^2``, ``x . c`` and ``|c|^2`` (broadcast), clamping rounding at 0."""
    return (x_sq - 2.0 * x_c + c_sq).clamp_min(0.0)


def l2_scales(sq_norms: torch.Tensor) -> torch.Tensor:
    """``1 / |x|`` from ``|x|^2``: the factor of L2 normalisation (zero vectors stay zero)."""
    return 1.0 / sq_norms.sqrt().clamp_min(EPS)


def normalized_products(
    x_p: torch.Tensor,
    x_sq: torch.Tensor,
    normalization: str,
    *,
    x_c: torch.Tensor | None = None,
    c_p: torch.Tensor | None = None,
    c_sq: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Products ``x' . p`` and squared norms ``|x'|^2`` of normalised rows ``x'``, from raw ones.

    Parameters
    ----------
    x_p : float [E, R, M]
        Raw products of the rows with ``M`` references ``p`` (which stay as they are).
    x_sq : float [E, R]
        The rows' squared norms.
    normalization : {"none", "l2", "cl2n"}
    x_c, c_p, c_sq : float [E, R], [E, 1, M], [E, 1]
        For ``"cl2n"``: the rows' products with the centre, the centre's products with the
        references and its squared norm.
    """
    if normalization == "none":
        return x_p, x_sq
    if normalization == "cl2n":
        if x_c is None or c_p is None or c_sq is None:
            raise ValueError("cl2n needs the products with the centre")
        x_p = x_p - c_p
        x_sq = centered_sq_norms(x_sq, x_c, c_sq)
    scale = l2_scales(x_sq)
    return x_p * scale.unsqueeze(-1), x_sq * scale.square()


def normalized_mean_weights(
    x_sq: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    x_c: torch.Tensor | None = None,
    c_sq: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weights ``w`` [..., K] with ``sum_s w_s x_s - c sum_s w_s`` the mean of normalised rows.

    ``x_sq`` [..., K] are the rows' squared norms; ``weights`` [..., K] the weights of the plain
    mean (default ``1 / K``; a shot mask over the count for unbalanced supports). Each becomes
    ``weights_s / |x_s - c|``, the L2 scale, with ``c = 0`` unless ``x_c`` (the rows' products
    with the centre) and ``c_sq`` (its squared norm) are given.
    """
    sq = x_sq if x_c is None or c_sq is None else centered_sq_norms(x_sq, x_c, c_sq)
    scale = l2_scales(sq)
    return scale / x_sq.shape[-1] if weights is None else weights * scale
