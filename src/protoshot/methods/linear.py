"""A linear (softmax) head per episode, started from the prototypes and fitted to the shots.

The head starts as the cosine prototype classifier (:func:`~protoshot.maths.heads.prototype_head`)
and is fitted by full-batch L-BFGS with a penalty toward that start
(:func:`~protoshot.maths.heads.fit_head`); class names, when given, are extra examples with
weight ``prior_weight``. Where the fit does not converge, that episode keeps the prototype head
and a warning says so. :class:`~protoshot.estimators.LinearClassifier` is the same method as a
scikit-learn estimator.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from protoshot._validation import check_choice
from protoshot.maths.heads import (
    DEFAULT_HEAD_TEMPERATURE,
    DEFAULT_PENALTY,
    Head,
    fit_head,
    prototype_head,
)
from protoshot.maths.normalize import NORMALIZATIONS
from protoshot.methods.base import EpisodeBlock
from protoshot.methods.support import SupportSet, block_support


@dataclass(frozen=True)
class HeadSettings:
    """How a linear head is fitted (see :func:`~protoshot.maths.heads.fit_head`)."""

    penalty: float = DEFAULT_PENALTY
    temperature: float = DEFAULT_HEAD_TEMPERATURE
    prior_weight: float = 0.0
    max_iter: int = 200

    def __post_init__(self) -> None:
        for name in ("penalty", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.prior_weight >= 0:
            raise ValueError(f"prior_weight must be >= 0, got {self.prior_weight}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")


def fit_linear(support: SupportSet, settings: HeadSettings) -> Head:
    """Fit a head to every episode of ``support``; unconverged episodes keep the prototype head."""
    weight0, bias0 = prototype_head(support.prototypes(settings.prior_weight), settings.temperature)
    x, y, w = support.rows(settings.prior_weight)
    head = fit_head(x, y, w, weight0, bias0, penalty=settings.penalty, max_iter=settings.max_iter)
    if bool(head.converged.all()):
        return head
    failed = int((~head.converged).sum())
    warnings.warn(
        f"the linear head did not converge in {settings.max_iter} iterations for {failed} of "
        f"{len(head.converged)} fits; those use the prototype head instead",
        RuntimeWarning,
        stacklevel=2,
    )
    keep = head.converged.view(-1, 1, 1)
    return Head(
        torch.where(keep, head.weight, weight0),
        torch.where(keep[:, :, 0], head.bias, bias0),
        head.converged,
        head.n_iter,
    )


class LinearHead:
    """Evaluate a fitted linear head (with or without class names) on blocks of episodes.

    Parameters
    ----------
    normalization : {"none", "l2", "cl2n"}
        Applied to shots, names and queries before the head (CL2N centre as for prototypes).
    settings : HeadSettings
        ``prior_weight > 0`` uses class names as extra examples (the method is then
        ``"named-linear"``) and allows a 0-shot row.
    """

    def __init__(self, normalization: str = "cl2n", settings: HeadSettings | None = None) -> None:
        check_choice("normalization", normalization, NORMALIZATIONS)
        self.normalization = normalization
        self.settings = settings or HeadSettings()
        named = self.settings.prior_weight > 0
        self.name = "named-linear" if named else "linear"
        self.min_shots = 0 if named else 1

    def variants(self) -> list[dict[str, Any]]:
        prior = {"prior_weight": self.settings.prior_weight} if self.settings.prior_weight else {}
        return [{"normalization": self.normalization, "penalty": self.settings.penalty, **prior}]

    def scores(self, block: EpisodeBlock, shots: Sequence[int]) -> Iterator[torch.Tensor]:
        if self.settings.prior_weight:
            block.name_embeddings(self.name)  # a clear error when there are no names
        queries = block.query_embeddings()
        for k in shots:
            support = block_support(block, k, self.normalization)
            yield fit_linear(support, self.settings).scores(support.normalize(queries))
