"""Prototypes: each class is the mean of its (normalised) support embeddings; queries are scored
by a distance to each mean (Snell et al. 2017; centring + L2 from SimpleShot, Wang et al. 2019).
With a prior weight ``w > 0`` ("named prototypes"), the embedding of the class's name or
description counts as ``w`` more shots, so a class works with its name alone (zero-shot).

Evaluated for every normalisation x metric at once, and fast: normalising is an affine map
(:mod:`protoshot.maths.affine`), so the queries, the bulk of the data, are read once into raw
products with every variant's prototypes and centres, and a normalised prototype is a weighted
sum of raw support rows. :class:`~protoshot.estimators.PrototypeClassifier` is the same method
as a scikit-learn estimator.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from protoshot._validation import check_choice
from protoshot.maths.affine import normalized_mean_weights, normalized_products
from protoshot.maths.distances import (
    METRICS,
    default_temperature,
    scores_from_products,
    squared_norms,
)
from protoshot.maths.normalize import NORMALIZATIONS, normalize_tensor
from protoshot.maths.prototypes import prototypes_with_prior
from protoshot.methods.base import EpisodeBlock


class Prototypes:
    """Nearest-prototype scores under each normalisation x metric.

    Parameters
    ----------
    normalizations : names from :data:`protoshot.NORMALIZATIONS`
    metrics : names from :data:`protoshot.METRICS`
    prior_weight : float
        How many shots the class-name embedding counts as; 0 (plain prototypes) ignores names.
    """

    def __init__(
        self,
        normalizations: Sequence[str] = ("none",),
        metrics: Sequence[str] = ("sqeuclidean",),
        *,
        prior_weight: float = 0.0,
    ) -> None:
        for norm in normalizations:
            check_choice("normalization", norm, NORMALIZATIONS)
        for metric in metrics:
            check_choice("metric", metric, METRICS)
        if not prior_weight >= 0:
            raise ValueError(f"prior_weight must be >= 0, got {prior_weight}")
        self.normalizations = list(dict.fromkeys(normalizations))
        self.metrics = list(dict.fromkeys(metrics))
        self.prior_weight = float(prior_weight)
        self.name = "named-prototypes" if prior_weight else "prototypes"
        self.min_shots = 0 if prior_weight else 1

    def variants(self) -> list[dict[str, Any]]:
        prior = {"prior_weight": self.prior_weight} if self.prior_weight else {}
        return [
            {"normalization": norm, "metric": metric, **prior}
            for norm, metric in itertools.product(self.normalizations, self.metrics)
        ]

    def scores(self, block: EpisodeBlock, shots: Sequence[int]) -> Iterator[torch.Tensor]:
        rows = block.rows
        refs: list[torch.Tensor] = []
        parts: dict[tuple[int, str], tuple[int, torch.Tensor, torch.Tensor | None]] = {}
        for k, norm in itertools.product(shots, self.normalizations):
            protos, c = _prototypes(block, k, norm)
            if self.prior_weight:
                protos, c = self._with_prior(block, k, norm, protos, c)
            parts[k, norm] = (sum(r.shape[1] for r in refs), protos, c)
            refs += [protos] if c is None else [protos, c]
        # low-precision products (bf16 / fp16 on GPUs) are combined in float32
        acc = torch.float32 if rows.x.dtype in (torch.bfloat16, torch.float16) else rows.x.dtype
        all_refs = refs[0] if len(refs) == 1 else torch.cat(refs, dim=1)
        products = rows.products(block.query, block.query_ways, all_refs).to(acc)
        q_sq = rows.take("q_sq", block.query.reshape(-1), rows.sq_norms).view(block.n_episodes, -1)
        n = block.n_way
        for k, norm in itertools.product(shots, self.normalizations):
            col, protos, c = parts[k, norm]
            centre: dict[str, torch.Tensor] = {}
            if c is not None:
                centre = {
                    "x_c": products[..., col + n],
                    "c_p": torch.bmm(c, protos.transpose(1, 2)).to(acc),
                    "c_sq": squared_norms(c.to(acc)),
                }
            qp, qq = normalized_products(products[..., col : col + n], q_sq, norm, **centre)
            p_sq = squared_norms(protos.to(acc))
            for metric in self.metrics:  # logits: the estimator's probabilities follow
                yield scores_from_products(qp, qq, p_sq, metric) / default_temperature(metric, norm)

    def _with_prior(
        self,
        block: EpisodeBlock,
        k: int,
        norm: str,
        protos: torch.Tensor,
        c: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prototypes that count each (normalised) name embedding as ``prior_weight`` shots.

        With no shots and a per-episode CL2N centre, the centre is the names' mean.
        """
        names = block.name_embeddings(self.name).to(protos.dtype)
        if norm == "cl2n" and k == 0 and block.center is None:
            c = names.mean(1, keepdim=True)
        counts = block.n_shots(k).to(protos.dtype)
        sums = protos * counts.unsqueeze(-1)
        return prototypes_with_prior(
            sums, counts, normalize_tensor(names, norm, c), self.prior_weight
        ), c


def _prototypes(block: EpisodeBlock, k: int, norm: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prototypes ``[E, N, D]`` of the first ``k`` shots, and the cl2n centre ``[E, 1, D]``.

    A normalised prototype is the weighted sum ``sum_s w_s x_s - c sum_s w_s``
    (:func:`~protoshot.maths.affine.normalized_mean_weights`); each sum is one fused
    gather-and-add over the table.
    """
    rows = block.rows
    support = block.support[:, :, :k]
    e = support.shape[0]
    if k == 0:  # zero-shot: no shots to average; a prior supplies the prototypes
        fixed = norm == "cl2n" and block.center is not None
        c = block.center.expand(e, -1).unsqueeze(1) if fixed else None  # type: ignore[union-attr]
        return rows.x.new_zeros((e, block.n_way, rows.x.shape[1])), c
    mask = block.shot_mask(k)
    weights = None if mask is None else mask / mask.sum(-1, keepdim=True)
    c = None
    if norm == "cl2n":
        c = (
            block.center.expand(e, -1)
            if block.center is not None
            else _support_mean(block, support, mask)
        ).unsqueeze(1)
    if norm != "none":
        sq = rows.sq_norms[support]
        centre: dict[str, torch.Tensor] = {}
        if c is not None:
            x_c = rows.products(support, block.ways, c).view(support.shape).to(sq.dtype)
            centre = {"x_c": x_c, "c_sq": squared_norms(c.to(sq.dtype)).unsqueeze(-1)}
        weights = normalized_mean_weights(sq, weights, **centre)
    protos = rows.weighted_sums(support, block.ways, weights)
    if c is not None and weights is not None:
        protos.addcmul_(c, weights.sum(-1, keepdim=True).to(rows.x.dtype), value=-1.0)
    return protos, c


def _support_mean(
    block: EpisodeBlock, support: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Each episode's mean support embedding ``[E, D]``, the default cl2n centre."""
    e, n, k = support.shape
    weights = None if mask is None else (mask / mask.sum((1, 2), keepdim=True)).view(e, 1, -1)
    return block.rows.weighted_sums(
        support.reshape(e, 1, n * k), block.ways[:, :1], weights
    ).squeeze(1)
