"""``SupportSet``: the normalised shots (and class-name embeddings) of many episodes, padded.

Methods that fit something to the shots (a linear head, per-episode selection) work on this one
shape, so the evaluator (thousands of episodes from an :class:`EpisodeBlock`) and the
scikit-learn estimators (one episode from ``X, y``) run the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from protoshot.maths.normalize import normalize_tensor
from protoshot.maths.prototypes import prototypes_with_prior
from protoshot.methods.base import EpisodeBlock


@dataclass(frozen=True)
class SupportSet:
    """Normalised support of ``E`` episodes, ``K`` slots for each of ``N`` classes.

    Attributes
    ----------
    x : float [E, N, K, D]
        Normalised shots; slots where ``mask`` is 0 are padding.
    mask : float [E, N, K]
        1 where a slot holds a shot.
    names : float [E, N, D] or None
        Normalised class-name embeddings, if the classes have names.
    normalization : {"none", "l2", "cl2n"}
    center : float [E, 1, D] or None
        The CL2N centre the shots were normalised with (queries get the same).
    named : float [E, N] or None
        1 for classes that have a name (rows of ``names`` elsewhere are ignored); ``None``: all.
    """

    x: torch.Tensor
    mask: torch.Tensor
    names: torch.Tensor | None
    normalization: str
    center: torch.Tensor | None
    named: torch.Tensor | None = None

    @property
    def n_episodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_way(self) -> int:
        return int(self.x.shape[1])

    def episodes(self, start: int, size: int) -> SupportSet:
        """Episodes ``start .. start + size``."""
        part = slice(start, start + size)

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[part]

        return replace(
            self, x=self.x[part], mask=self.mask[part], names=cut(self.names),
            center=cut(self.center), named=cut(self.named),
        )  # fmt: skip

    def counts(self) -> torch.Tensor:
        """Shots per class, ``[E, N]``."""
        return self.mask.sum(-1)

    def sums(self) -> torch.Tensor:
        """Per-class sums of the shots, ``[E, N, D]``."""
        return torch.einsum("enk,enkd->end", self.mask, self.x)

    def prototypes(self, prior_weight: float = 0.0) -> torch.Tensor:
        """``[E, N, D]`` class means, the name embedding counted as ``prior_weight`` shots."""
        sums, counts = self.sums(), self.counts()
        if prior_weight and self.names is not None:
            return prototypes_with_prior(sums, counts, self.names, self._name_weights(prior_weight))
        return sums / counts.unsqueeze(-1).clamp_min(1.0)

    def _name_weights(self, prior_weight: float) -> torch.Tensor | float:
        return prior_weight if self.named is None else prior_weight * self.named

    def normalize(self, queries: torch.Tensor) -> torch.Tensor:
        """Queries ``[E, M, D]`` normalised as the shots were."""
        return normalize_tensor(queries.to(self.x.dtype), self.normalization, self.center)

    def rows(self, prior_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training rows ``[E, M, D]``, their classes ``[E, M]`` and weights ``[E, M]``.

        The shots (weight 1, padding 0), then each class's name with weight ``prior_weight``.
        """
        e, n, k, d = self.x.shape
        x = self.x.reshape(e, n * k, d)
        y = torch.arange(n, device=x.device).repeat_interleave(k).expand(e, -1)
        w = self.mask.reshape(e, n * k)
        if prior_weight and self.names is not None:
            x = torch.cat([x, self.names], 1)
            y = torch.cat([y, torch.arange(n, device=x.device).expand(e, -1)], 1)
            name_w = torch.as_tensor(
                self._name_weights(prior_weight), dtype=w.dtype, device=w.device
            )
            w = torch.cat([w, name_w.expand(e, n)], 1)
        return x, y, w

    def folds(self, n_folds: int) -> tuple[SupportSet, torch.Tensor]:
        """Cross-validation splits, stacked on the episode axis: ``n_folds * E`` episodes.

        Fold ``f`` holds out the shots in slots ``f, f + n_folds, ...`` of every class with at
        least two shots (so every class keeps one). Returns the training supports and the
        held-out mask ``[n_folds * E, N, K]``.
        """
        slot = torch.arange(self.x.shape[2], device=self.x.device)
        several = (self.counts() >= 2).unsqueeze(-1)
        held = torch.stack([(slot % n_folds == f) & several for f in range(n_folds)])
        held = held.to(self.mask.dtype) * self.mask  # [F, E, N, K]
        repeat = (n_folds,) + (1,) * (self.x.dim() - 1)
        train = replace(
            self,
            x=self.x.repeat(repeat),
            mask=(self.mask - held).reshape(-1, *self.mask.shape[1:]),
            names=None if self.names is None else self.names.repeat(n_folds, 1, 1),
            center=None if self.center is None else self.center.repeat(n_folds, 1, 1),
            named=None if self.named is None else self.named.repeat(n_folds, 1),
        )
        return train, held.reshape(-1, *self.mask.shape[1:])


def block_support(block: EpisodeBlock, n_shot: int, normalization: str) -> SupportSet:
    """The first ``n_shot`` shots of each class of ``block``, gathered and normalised.

    The CL2N centre is the block's fixed one, else each episode's mean shot (the mean name
    embedding when there are no shots).
    """
    x = block.support_embeddings(n_shot)
    dtype = torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype
    x = x.to(dtype)
    mask = block.shot_mask(n_shot)
    mask = torch.ones(x.shape[:3], dtype=dtype, device=x.device) if mask is None else mask.to(dtype)
    names = block.way_names
    names = None if names is None else names.to(dtype)
    center = None
    if normalization == "cl2n":
        if block.center is not None:
            center = block.center.to(dtype).expand(x.shape[0], 1, -1)
        elif n_shot:
            total = torch.einsum("enk,enkd->ed", mask, x) / mask.sum((1, 2)).unsqueeze(-1)
            center = total.unsqueeze(1)
        elif names is not None:
            center = names.mean(1, keepdim=True)
    x = normalize_tensor(x, normalization, None if center is None else center.unsqueeze(1))
    names = None if names is None else normalize_tensor(names, normalization, center)
    return SupportSet(x, mask, names, normalization, center)


def rows_support(
    x: torch.Tensor,
    codes: torch.Tensor,
    n_classes: int,
    *,
    normalization: str,
    center: torch.Tensor | None,
    names: torch.Tensor | None = None,
    named: torch.Tensor | None = None,
) -> SupportSet:
    """One episode from labelled rows (an estimator's shots): ``x`` [n, D], classes ``codes`` [n].

    Rows are normalised (CL2N around ``center``) and padded class by class to the largest
    count; ``names`` [n_classes, D] (raw) with ``named`` [n_classes] bool say which classes have
    a name.
    """
    counts = torch.bincount(codes, minlength=n_classes)
    k = int(counts.max()) if len(codes) else 0
    order = torch.argsort(codes, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slots = torch.arange(len(codes), device=x.device) - starts[codes[order]]
    padded = x.new_zeros((1, n_classes, k, x.shape[1]))
    mask = x.new_zeros((1, n_classes, k))
    padded[0, codes[order], slots] = normalize_tensor(x[order], normalization, center)
    mask[0, codes[order], slots] = 1.0
    c = None if center is None else center.view(1, 1, -1)
    name_rows = None if names is None else normalize_tensor(names, normalization, center)[None]
    flags = None if named is None else named.to(x.dtype)[None]
    return SupportSet(padded, mask, name_rows, normalization, c, flags)


#: Classes with two shots or more needed before a temperature is fitted on held-out shots.
MIN_CLASSES_HELD = 3


def held_out_temperature(
    support: SupportSet,
    fit: Callable[[SupportSet], Callable[[torch.Tensor], torch.Tensor]],
    n_folds: int = 3,
) -> float | None:
    """The softmax temperature that makes the shots' own held-out probabilities honest: a
    scorer is fitted (``fit``) on each cross-validation fold of one episode's ``support``, the
    held-out shots are scored, and the temperature minimises their NLL
    (:func:`~protoshot.maths.calibration.fit_temperature`). ``None`` when fewer than
    :data:`MIN_CLASSES_HELD` classes have two shots to hold out, or the held-out scores do not
    vary.
    """
    from protoshot.maths.calibration import fit_temperature

    counts = support.counts()
    most = int(counts.max()) if support.x.shape[2] else 0
    # too few held-out shots make a wild temperature (one shot right or wrong sends it to an
    # end of its range): then keep the default
    if support.n_episodes != 1 or most < 2 or int((counts >= 2).sum()) < MIN_CLASSES_HELD:
        return None
    train, held = support.folds(min(n_folds, most))
    f, n, k, d = train.x.shape
    scores = fit(train)(train.x.reshape(f, n * k, d))  # [F, N * K, N]
    target = torch.arange(n, device=scores.device).repeat_interleave(k).expand(f, -1)
    chosen = held.reshape(f, n * k) > 0
    try:
        return fit_temperature(scores[chosen], target[chosen])
    except ValueError:
        return None
