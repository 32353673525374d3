"""Mahalanobis: class means with one covariance shared by the classes, estimated from the
episode's shots and shrunk (OAS or Ledoit-Wolf; the Simple-CNAPS family, Bateni et al. 2020).

Queries are scored by ``-(q - p)^T C^-1 (q - p)``: the shots and queries are whitened by the
Cholesky factor of ``C`` and compared by squared Euclidean distance. With one shot per class
there is no within-class scatter and ``C`` is the identity (prototypes under squared Euclidean).
Episodes are processed in slices so that the ``D x D`` covariances stay within a bounded memory.
:class:`~protoshot.estimators.MahalanobisClassifier` is the same method as an estimator.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from protoshot._validation import check_choice
from protoshot.maths.covariance import (
    SHRINKAGES,
    shrinkage,
    shrunk_covariance,
    whiten,
    whitener,
    within_class_scatter,
)
from protoshot.maths.distances import default_temperature, episode_scores
from protoshot.maths.normalize import NORMALIZATIONS
from protoshot.methods.base import EpisodeBlock
from protoshot.methods.support import SupportSet, block_support

#: Bytes of covariances per slice of episodes.
SLICE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SharedCovariance:
    """The fit of each episode: its shrunk covariance, how much it was shrunk, its Cholesky
    factor, and the class means whitened by it."""

    covariance: torch.Tensor
    shrinkage: torch.Tensor
    factor: torch.Tensor
    means: torch.Tensor

    def scores(self, queries: torch.Tensor) -> torch.Tensor:
        """Scores ``[E, M, N]`` of normalised ``queries`` [E, M, D]: minus the Mahalanobis
        distance squared."""
        factor, means = self.factor.to(queries.dtype), self.means.to(queries.dtype)
        return episode_scores(whiten(factor, queries), means, "sqeuclidean")


def fit_shared_covariance(support: SupportSet, method: str) -> SharedCovariance:
    """Class means and the covariance they share, shrunk by ``method``, for each episode."""
    rows, scatter, n = within_class_scatter(support.x, support.mask)
    amount = shrinkage(rows, scatter, n, method)
    cov = shrunk_covariance(scatter, amount)
    factor = whitener(cov)
    return SharedCovariance(cov, amount, factor, whiten(factor, support.prototypes()))


class Mahalanobis:
    """Evaluate Mahalanobis scores under each shrinkage on blocks of episodes.

    Parameters
    ----------
    shrinkages : names from :data:`protoshot.maths.covariance.SHRINKAGES`
    normalization : {"none", "l2", "cl2n"}
    """

    name = "mahalanobis"
    min_shots = 1

    def __init__(self, shrinkages: Sequence[str] = ("oas",), normalization: str = "cl2n") -> None:
        for method in shrinkages:
            check_choice("shrinkage", method, SHRINKAGES)
        check_choice("normalization", normalization, NORMALIZATIONS)
        self.shrinkages = list(dict.fromkeys(shrinkages))
        self.normalization = normalization

    def variants(self) -> list[dict[str, Any]]:
        return [{"normalization": self.normalization, "shrinkage": s} for s in self.shrinkages]

    def scores(self, block: EpisodeBlock, shots: Sequence[int]) -> Iterator[torch.Tensor]:
        queries = block.query_embeddings()
        d = queries.shape[-1]
        step = max(1, SLICE_BYTES // (3 * d * d * 4))  # computed in float32 or wider
        for k in shots:
            support = block_support(block, k, self.normalization)
            q = support.normalize(queries)
            temperature = default_temperature("sqeuclidean", self.normalization)
            for method in self.shrinkages:  # logits: the estimator's probabilities follow
                yield (1 / temperature) * torch.cat(
                    [
                        fit_shared_covariance(support.episodes(i, step), method).scores(
                            q[i : i + step]
                        )
                        for i in range(0, support.n_episodes, step)
                    ]
                )
