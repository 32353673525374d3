"""Normalisation as an affine map of raw products, against normalising the vectors directly."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from protoshot.maths.affine import normalized_mean_weights, normalized_products
from protoshot.maths.normalize import NORMALIZATIONS, normalize_tensor

settings = {
    "normalization": st.sampled_from(NORMALIZATIONS),
    "rows": st.integers(1, 6),
    "refs": st.integers(1, 5),
    "dim": st.integers(1, 12),
    "seed": st.integers(0, 2**16),
}


def _draw(seed: int, *shape: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape) + 0.5)


def _centre_terms(x: torch.Tensor, c: torch.Tensor, refs: torch.Tensor | None = None) -> dict:
    terms = {"x_c": (x * c).sum(-1), "c_sq": (c * c).sum(-1)}
    if refs is not None:
        terms["c_p"] = torch.bmm(c, refs.transpose(1, 2))
    return terms


@given(**settings)
def test_normalized_products_equal_products_of_normalized_rows(
    normalization: str, rows: int, refs: int, dim: int, seed: int
) -> None:
    x, p = _draw(seed, 2, rows, dim), _draw(seed + 1, 2, refs, dim)
    c = _draw(seed + 2, 2, 1, dim)
    centre = _centre_terms(x, c, p) if normalization == "cl2n" else {}
    got_p, got_sq = normalized_products(
        torch.bmm(x, p.transpose(1, 2)), (x * x).sum(-1), normalization, **centre
    )
    direct = normalize_tensor(x, normalization, c if normalization == "cl2n" else None)
    torch.testing.assert_close(got_p, torch.bmm(direct, p.transpose(1, 2)))
    torch.testing.assert_close(got_sq, (direct * direct).sum(-1))


@given(**settings, unbalanced=st.booleans())
def test_normalized_mean_weights_give_the_mean_of_normalized_rows(
    normalization: str, rows: int, refs: int, dim: int, seed: int, unbalanced: bool
) -> None:
    del refs
    if normalization == "none":
        normalization = "l2"  # the weights are the L2 (and centring) identity
    x = _draw(seed, 3, 2, rows, dim)  # [E, N, K, D]
    c = _draw(seed + 2, 3, 1, dim) if normalization == "cl2n" else None
    mask = torch.ones(3, 2, rows, dtype=x.dtype)
    if unbalanced:
        mask[..., 1:] = torch.from_numpy(np.random.default_rng(seed).random((3, 2, rows - 1)) < 0.5)
    weights = mask / mask.sum(-1, keepdim=True)
    centre = {} if c is None else _centre_terms(x, c.unsqueeze(1))
    w = normalized_mean_weights((x * x).sum(-1), weights if unbalanced else None, **centre)
    got = (w.unsqueeze(-1) * x).sum(2)
    if c is not None:
        got = got - c * w.sum(-1, keepdim=True)
    direct = normalize_tensor(x, normalization, None if c is None else c.unsqueeze(1))
    expected = (direct * weights.unsqueeze(-1)).sum(2)
    torch.testing.assert_close(got, expected)
