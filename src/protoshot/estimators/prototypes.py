"""``PrototypeClassifier``: a scikit-learn estimator that classifies by the nearest prototype.

It is the one-episode case of the maths core that the evaluator uses. It keeps per-class sums and
counts of the (normalised) support embeddings, so adding shots or classes and removing classes
are exact, cheap updates. With ``prior_weight > 0`` a class's name embedding counts as that many
more shots, and a class known only by its name works (zero-shot).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from protoshot._validation import check_choice
from protoshot.estimators._arrays import PatchedRows
from protoshot.estimators._base import FewShotEstimator
from protoshot.maths.distances import (
    METRICS,
    default_temperature,
    episode_scores,
)
from protoshot.maths.normalize import normalize_tensor
from protoshot.maths.prototypes import prototypes_with_prior
from protoshot.methods.support import SupportSet


class PrototypeClassifier(FewShotEstimator):
    """Nearest-prototype classifier over (frozen) embeddings.

    Parameters
    ----------
    metric : {"sqeuclidean", "euclidean", "cosine", "dot"}
        Score between a query and a prototype; higher is closer. ``"sqeuclidean"`` is the
        negative *squared* Euclidean distance of Prototypical Networks.
    normalization : {"none", "l2", "cl2n"}
        Applied to every embedding (support, names and query) before prototypes are built.
        ``"cl2n"`` subtracts ``center`` (by default the mean of the first fitted support, then
        kept fixed so that later updates stay exact) and L2-normalises.
    temperature : float, optional
        ``predict_proba`` is ``softmax(scores / temperature)``. By default the one that makes
        the shots' own cross-validated probabilities honest (least NLL, refitted on every
        update); with one shot per class, 1 (0.1 for cosine) on raw embeddings and 0.2 for
        squared Euclidean (0.1 otherwise) on normalised ones.
    prior_weight : float
        How many shots a class's name embedding (``class_embeddings``) counts as; 0 ignores names.
    center : array [n_features], optional
        Fixed centre for ``"cl2n"``, e.g. the mean embedding of a large base set.
    device : str, optional
        Where to compute scores; by default cuda, then mps, then cpu.

    Attributes
    ----------
    classes_ : ndarray [n_classes]
        The class labels, sorted.
    sums_ : float64 [n_classes, n_features]
        Per-class sums of the normalised support embeddings.
    counts_ : int64 [n_classes]
        Shots per class.
    names_, named_ : float64 [n_classes, n_features], bool [n_classes]
        Class-name embeddings (raw), and which classes have one.
    updated_ : float64 [n_classes]
        When each class last gained shots or a name (Unix seconds; 0: not recorded).
    temperature_ : float
        The softmax temperature in use (given, or fitted on the shots).
    center_ : float64 [n_features] or None
        The centre used by ``"cl2n"``.
    n_features_in_ : int
    metadata_ : dict
        Free-form JSON metadata saved with the model (e.g. the embedder's spec and fingerprint).
    """

    method = "prototypes"
    _params = ("metric", "normalization", "temperature", "prior_weight")
    _per_class = ("sums_", "counts_")
    #: Per-class sums of the normalised shots; an update patches the rows it changes.
    sums_ = PatchedRows()

    def __init__(
        self,
        metric: str = "sqeuclidean",
        *,
        normalization: str = "none",
        temperature: float | None = None,
        prior_weight: float = 0.0,
        center: np.ndarray | None = None,
        device: str | None = None,
    ) -> None:
        self.metric = metric
        self.normalization = normalization
        self.temperature = temperature
        self.prior_weight = prior_weight
        self.center = center
        self.device = device

    @property
    def prototypes_(self) -> np.ndarray:
        """float64 [n_classes, n_features]: each class's mean normalised shot, with its prior."""
        check_is_fitted(self)
        return self._prototypes(torch.float64, torch.device("cpu")).numpy()

    def _prototypes(
        self, dtype: torch.dtype, dev: torch.device, rows: np.ndarray | None = None
    ) -> torch.Tensor:
        """Prototypes ``[C, D]``, or only those of the classes at positions ``rows``."""
        pick = slice(None) if rows is None else rows
        raw = self.sums_ if rows is None else PrototypeClassifier.sums_.rows(self, rows)
        sums = torch.as_tensor(raw, dtype=dtype, device=dev)
        counts = torch.as_tensor(self.counts_[pick], device=dev)
        if not self.prior_weight or not self.named_.any():
            return sums / counts.unsqueeze(-1).to(dtype).clamp_min(1.0)
        names = torch.as_tensor(self.names_[pick], dtype=dtype, device=dev)
        named = torch.as_tensor(self.named_[pick], device=dev)
        prior = normalize_tensor(names, self.normalization, self._center_tensor(sums))
        return prototypes_with_prior(sums, counts, prior, self.prior_weight * named.to(dtype))

    def prototype_rows(self, rows: np.ndarray) -> np.ndarray:
        """float32 [len(rows), n_features]: the prototypes of the classes at positions ``rows``
        (what a :class:`~protoshot.index.PrototypeIndex` holds), without computing the others."""
        check_is_fitted(self)
        return self._prototypes(torch.float64, torch.device("cpu"), rows).float().numpy()

    def candidate_proba(self, X: Any, candidates: np.ndarray) -> np.ndarray:
        """Probabilities [n_samples, k] over each sample's own ``candidates`` (class positions
        [n_samples, k], ``-1`` for none): the softmax of the exact scores of those classes only."""
        query = self.normalized(X)
        valid = candidates >= 0
        protos = self._prototypes(query.dtype, query.device, np.where(valid, candidates, 0).ravel())
        found = episode_scores(
            query[:, None, :], protos.reshape(*candidates.shape, -1), self.metric
        )[:, 0, :]
        found = found.masked_fill(~torch.from_numpy(valid), -torch.inf)
        return torch.softmax(found / self._temperature(), dim=-1).numpy()

    # ----------------------------------------------------------------------------- hooks
    def _reset(self, n_classes: int, n_features: int) -> None:
        self.sums_ = np.zeros((n_classes, n_features))
        self.counts_ = np.zeros(n_classes, dtype=np.int64)

    def _absorb(self, X: np.ndarray, codes: np.ndarray) -> None:
        super()._absorb(X, codes)
        x = self._normalized(torch.tensor(X, dtype=torch.float64)).numpy()
        touched, inverse = np.unique(codes, return_inverse=True)
        rows = PrototypeClassifier.sums_.rows(self, touched)
        np.add.at(rows, inverse, x)  # each row's shots added in order, as one at a time would
        PrototypeClassifier.sums_.patch(self, touched, rows)
        self.counts_ = self.counts_ + np.bincount(codes, minlength=len(self.counts_))

    def _refit(self) -> None:
        self._check_every_class_scored(self.prior_weight)
        default = default_temperature(self.metric, self.normalization)
        self.temperature_ = (
            float(self.temperature)
            if self.temperature is not None
            else self._held_out_temperature(self._held_out_scorer, default)
        )

    def _held_out_scorer(self, support: SupportSet) -> Callable[[torch.Tensor], torch.Tensor]:
        protos = support.prototypes(self.prior_weight)
        return lambda q: episode_scores(q, protos, self.metric)

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.counts_ = self.counts_.astype(np.int64)
        self._refit()

    def _scores(self, query: torch.Tensor) -> torch.Tensor:
        protos = self._prototypes(query.dtype, query.device)
        return episode_scores(query[None], protos[None], self.metric)[0]

    def _check_params(self) -> None:
        super()._check_params()
        check_choice("metric", self.metric, METRICS)
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not self.prior_weight >= 0:
            raise ValueError(f"prior_weight must be >= 0, got {self.prior_weight}")

    def _temperature(self) -> float:
        return self.temperature_
