"""``PrototypeClassifier``: a scikit-learn estimator that classifies by the nearest prototype.

It is the one-episode case of the maths core that the evaluator uses. It keeps per-class sums and
counts of the (normalised) support embeddings, so adding shots or classes and removing classes
are exact, cheap updates, and it saves to safetensors + JSON (never pickle).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from protoshot import store
from protoshot._device import best_device
from protoshot._validation import check_choice
from protoshot.labels import check_label_kinds, encode_labels
from protoshot.maths.distances import (
    DEFAULT_TEMPERATURE,
    METRICS,
    UNIT_SPHERE_TEMPERATURE,
    episode_scores,
)
from protoshot.maths.normalize import NORMALIZATIONS, normalize_tensor
from protoshot.maths.prototypes import class_sums_tensors

_PARAMS = ("metric", "normalization", "temperature")


class PrototypeClassifier(ClassifierMixin, BaseEstimator):
    """Nearest-prototype classifier over (frozen) embeddings.

    Parameters
    ----------
    metric : {"sqeuclidean", "euclidean", "cosine", "dot"}
        Score between a query and a prototype; higher is closer. ``"sqeuclidean"`` is the
        negative *squared* Euclidean distance of Prototypical Networks.
    normalization : {"none", "l2", "cl2n"}
        Applied to every embedding (support and query) before prototypes are built. ``"cl2n"``
        subtracts ``center`` (by default the mean of the first fitted support, then kept fixed so
        that later updates stay exact) and L2-normalises.
    temperature : float, optional
        ``predict_proba`` is ``softmax(scores / temperature)``; by default 1 (0.1 for cosine) on
        raw embeddings, and 0.2 for squared Euclidean (0.1 otherwise) on normalised ones.
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
    center_ : float64 [n_features] or None
        The centre used by ``"cl2n"``.
    n_features_in_ : int
    metadata_ : dict
        Free-form JSON metadata saved with the model (e.g. the embedder's spec and fingerprint).
    """

    def __init__(
        self,
        metric: str = "sqeuclidean",
        *,
        normalization: str = "none",
        temperature: float | None = None,
        center: np.ndarray | None = None,
        device: str | None = None,
    ) -> None:
        self.metric = metric
        self.normalization = normalization
        self.temperature = temperature
        self.center = center
        self.device = device

    # ----------------------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any) -> PrototypeClassifier:
        """Build one prototype per class from support embeddings ``X`` [n_samples, n_features]."""
        self._check_params()
        check_label_kinds(y)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=True)
        check_classification_targets(y)
        self.center_ = self._initial_center(X)
        self.classes_, codes = encode_labels(y)
        self.sums_, self.counts_ = self._sums(X, codes, len(self.classes_))
        self.metadata_: dict[str, Any] = getattr(self, "metadata_", {})
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> PrototypeClassifier:
        """Add support shots to existing or new classes: an exact update of sums and counts.

        ``classes`` is accepted for scikit-learn compatibility and not needed: any call may bring
        new classes, and a class exists once it has a shot (a prototype needs one).
        """
        if not hasattr(self, "classes_"):
            return self.fit(X, y)
        self._check_params()
        check_label_kinds(y)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=False)
        check_classification_targets(y)
        new_classes, codes = encode_labels(y)
        merged = np.union1d(self.classes_, new_classes)
        if merged.dtype.kind != self.classes_.dtype.kind:
            raise TypeError(
                f"new labels are of type {new_classes.dtype}, but the classifier's are {self.classes_.dtype}"
            )
        sums = np.zeros((len(merged), X.shape[1]))
        counts = np.zeros(len(merged), dtype=np.int64)
        old = np.searchsorted(merged, self.classes_)
        sums[old], counts[old] = self.sums_, self.counts_
        add_sums, add_counts = self._sums(X, codes, len(new_classes))
        new = np.searchsorted(merged, new_classes)
        sums[new] += add_sums
        counts[new] += add_counts
        self.classes_, self.sums_, self.counts_ = merged, sums, counts
        return self

    def remove_classes(self, labels: Sequence[Any]) -> PrototypeClassifier:
        """Forget the given classes (exact: their sums and counts are dropped)."""
        check_is_fitted(self)
        labels_arr = np.asarray(labels)
        unknown = labels_arr[~np.isin(labels_arr, self.classes_)]
        if unknown.size:
            raise ValueError(
                f"unknown classes {unknown.tolist()}; known: {self.classes_.tolist()[:20]}"
            )
        keep = ~np.isin(self.classes_, labels_arr)
        if not keep.any():
            raise ValueError("cannot remove every class; at least one must remain")
        self.classes_, self.sums_, self.counts_ = (
            self.classes_[keep],
            self.sums_[keep],
            self.counts_[keep],
        )
        return self

    @property
    def prototypes_(self) -> np.ndarray:
        """float64 [n_classes, n_features]: the mean normalised support embedding of each class."""
        check_is_fitted(self)
        return self.sums_ / self.counts_[:, None]

    # ----------------------------------------------------------------------------- inference
    def decision_function(self, X: Any) -> np.ndarray:
        """Scores [n_samples, n_classes] against each prototype; higher is closer.

        As in scikit-learn, two classes give one column, ``score(classes_[1]) - score(classes_[0])``.
        """
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def _scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        dev = best_device(self.device)
        dtype = torch.float64 if dev.type == "cpu" else torch.float32
        query = self._normalized(torch.tensor(X, device=dev, dtype=dtype))
        protos = torch.as_tensor(self.prototypes_, device=dev, dtype=dtype)
        return episode_scores(query[None], protos[None], self.metric)[0].cpu().numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [n_samples, n_classes]: softmax of scores over the temperature."""
        scores = torch.from_numpy(self._scores(X))
        return torch.softmax(scores / self._temperature(), dim=-1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The label of the closest prototype for each sample."""
        scores = self._scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    # ----------------------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the model to ``directory``: arrays in safetensors, everything else in JSON.

        The write is atomic and durable (see :mod:`protoshot.store`): a reader, or a crash, sees
        the old model or the new one, never a mix.
        """
        check_is_fitted(self)
        arrays = {"sums": self.sums_, "counts": self.counts_}
        if self.center_ is not None:
            arrays["center"] = self.center_
        config = {
            "params": {name: getattr(self, name) for name in _PARAMS},
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str,
            "n_features_in": int(self.n_features_in_),
            "metadata": self.metadata_,
        }
        return store.write_model(directory, config, arrays, overwrite=overwrite)

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, device: str | None = None
    ) -> PrototypeClassifier:
        """Load a model written by :meth:`save` (safetensors + JSON; nothing is unpickled)."""
        stored = store.read_model(directory)
        config, arrays = stored.config, stored.arrays
        model = cls(device=device, **config["params"])
        model.classes_ = np.asarray(config["classes"], dtype=np.dtype(config["classes_dtype"]))
        model.sums_, model.counts_ = arrays["sums"], arrays["counts"]
        model.center_ = arrays.get("center")
        model.n_features_in_ = int(config["n_features_in"])
        model.metadata_ = dict(config.get("metadata") or {})
        if model.sums_.shape != (len(model.classes_), model.n_features_in_):
            raise ValueError(
                f"{stored.arrays_path} holds sums of shape {model.sums_.shape}, not matching config.json"
            )
        return model

    # ----------------------------------------------------------------------------- internals
    def _check_params(self) -> None:
        check_choice("metric", self.metric, METRICS)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def _temperature(self) -> float:
        if self.temperature is not None:
            return float(self.temperature)
        table = DEFAULT_TEMPERATURE if self.normalization == "none" else UNIT_SPHERE_TEMPERATURE
        return table[self.metric]

    def _initial_center(self, X: np.ndarray) -> np.ndarray | None:
        if self.normalization != "cl2n":
            return None
        if self.center is None:
            return X.mean(axis=0).astype(np.float64)
        center = np.asarray(self.center, dtype=np.float64)
        if center.shape != (X.shape[1],) or not np.isfinite(center).all():
            raise ValueError(
                f"center must be finite with shape ({X.shape[1]},), got {center.shape}"
            )
        return center

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        center = (
            None
            if self.center_ is None
            else torch.as_tensor(self.center_, device=x.device, dtype=x.dtype)
        )
        return normalize_tensor(x, self.normalization, center)

    def _sums(
        self, X: np.ndarray, codes: np.ndarray, n_classes: int
    ) -> tuple[np.ndarray, np.ndarray]:
        x = self._normalized(torch.tensor(X, dtype=torch.float64))
        sums, counts = class_sums_tensors(x[None], torch.from_numpy(codes)[None], n_classes)
        return sums[0].numpy(), counts[0].numpy()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = False
        return tags
