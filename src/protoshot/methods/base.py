"""The method interface: what a classification method gets from a block of episodes, and returns.

A method scores the queries of many episodes at once. It receives an :class:`EpisodeBlock`
(index arrays into the embedding table and a :class:`~protoshot.kernels.RowReader` over it) and
the shot counts to evaluate, and yields one score tensor ``[E, N * Q, N]`` (higher = more likely;
query ``j`` of way ``w`` is row ``w * Q + j``) for each shot count and each of its variants. The
evaluator turns scores into accuracies; a method never sees the query labels.

A simple method takes gathered embeddings (:meth:`EpisodeBlock.support_embeddings`,
:meth:`EpisodeBlock.query_embeddings`); a fast one works on the table's rows through the reader,
as :class:`~protoshot.methods.prototypes.Prototypes` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from protoshot.kernels import RowReader
from protoshot.maths.shots import shot_mask


@dataclass(frozen=True)
class EpisodeBlock:
    """A chunk of ``E`` episodes as index arrays into the table ``rows`` reads.

    Attributes
    ----------
    rows : RowReader
        The embedding table ``[n_samples, D]`` (on the evaluation device) and its squared norms.
    support : int64 [E, N, K]
        Table rows of each class's shots; with ``n_support``, only the first ``n_support[e, n]``.
    query : int64 [E, N, Q]
        Table rows of each class's queries.
    ways : int [E, N]
        The class (in the whole label set) of each way; only the visiting order depends on it.
    n_support : int64 [E, N] or None
        Shots per class of unbalanced supports; ``None`` when every class has ``K``.
    center : float [D] or None
        A fixed centre for ``"cl2n"`` (e.g. the base classes' mean); ``None``: per episode.
    names : float [n_classes, D] or None
        An embedding of each class's name or description (row ``c`` for class ``c`` of
        ``ways``), for methods that use them as a prior; ``None`` when there are none.
    targets : int64 [E, M] or None
        The way of each query, when the queries are not ``Q`` per way in way order (the
        all-class protocol classifies a whole test split: ``query`` is then ``[E, 1, M]``).
    """

    rows: RowReader
    support: torch.Tensor
    query: torch.Tensor
    ways: np.ndarray
    n_support: torch.Tensor | None = None
    center: torch.Tensor | None = None
    names: torch.Tensor | None = None
    targets: torch.Tensor | None = None

    @property
    def n_episodes(self) -> int:
        return int(self.support.shape[0])

    @property
    def n_way(self) -> int:
        return int(self.support.shape[1])

    @property
    def n_query(self) -> int:
        return int(self.query.shape[2])

    @property
    def query_ways(self) -> np.ndarray:
        """The class of each query group ``[E, query.shape[1]]``: ``ways``, or zeros for one
        shared query set (only the fused kernel's visiting order depends on it)."""
        if self.query.shape[1] == self.ways.shape[1]:
            return self.ways
        return np.zeros(self.query.shape[:2], dtype=self.ways.dtype)

    def shot_mask(self, n_shot: int) -> torch.Tensor | None:
        """``[E, N, n_shot]``: 1 where a class has a shot among its first ``n_shot`` slots, else 0.

        ``None`` for balanced supports, where every slot holds a shot.
        """
        if self.n_support is None:
            return None
        return shot_mask(self.n_support, n_shot, self.rows.sq_norms.dtype)

    def support_embeddings(self, n_shot: int) -> torch.Tensor:
        """The first ``n_shot`` shots of each class, gathered: ``[E, N, n_shot, D]``."""
        index = self.support[:, :, :n_shot]
        return self.rows.x[index.reshape(-1)].view(*index.shape, self.rows.x.shape[1])

    def n_shots(self, n_shot: int) -> torch.Tensor:
        """``[E, N]``: how many of the first ``n_shot`` slots of each class hold a shot."""
        if self.n_support is None:
            return torch.full(self.support.shape[:2], n_shot, device=self.support.device)
        return self.n_support.clamp(max=n_shot)

    @property
    def way_names(self) -> torch.Tensor | None:
        """Each way's name embedding ``[E, N, D]``, or ``None`` without names."""
        if self.names is None:
            return None
        ways = torch.from_numpy(np.ascontiguousarray(self.ways)).to(self.names.device)
        return self.names[ways]

    def name_embeddings(self, method: str) -> torch.Tensor:
        """:attr:`way_names`, with a clear error naming ``method`` if there are none."""
        names = self.way_names
        if names is None:
            raise ValueError(
                f"the {method!r} method needs class-name embeddings (class_embeddings=...); "
                "integer-coded labels have no names"
            )
        return names

    def query_embeddings(self) -> torch.Tensor:
        """The queries, gathered: ``[E, N * Q, D]``."""
        return self.rows.x[self.query.reshape(-1)].view(self.n_episodes, -1, self.rows.x.shape[1])


class Method(Protocol):
    """A classification method the evaluator can score on blocks of episodes."""

    #: Short name that identifies the method (e.g. ``"prototypes"``).
    name: str

    #: Fewest shots the method can classify with (0: class names alone).
    min_shots: int

    def variants(self) -> list[dict[str, Any]]:
        """The settings the method is evaluated under, each a dict of its parameters."""
        ...

    def scores(self, block: EpisodeBlock, shots: Sequence[int]) -> Iterator[torch.Tensor]:
        """Scores ``[E, N * Q, N]`` for each shot count in ``shots`` and each variant, in order

        (``for k in shots: for v in variants(): yield ...``), using each class's first ``k`` shots.
        The scores are logits: their softmax is the method's class probabilities at its
        default temperature (its estimator's ``predict_proba`` when given that temperature; a
        fitted prototype or Mahalanobis estimator refines it on its shots), which the
        evaluator's NLL and ECE measure.
        """
        ...
