"""scikit-learn estimators over embeddings, one per method, built on :mod:`protoshot.methods`.

- :class:`PrototypeClassifier`: nearest prototype (``prior_weight > 0``: named prototypes).
- :class:`LinearClassifier`: a softmax head started from the prototypes, fitted to the shots.
- :class:`AutoClassifier`: whichever of these cross-validation on the shots favours.
- :class:`MahalanobisClassifier`: class means under a shared, shrunk covariance.

All take ``class_embeddings`` (label -> embedding of the class's name or description) in
``fit`` / ``partial_fit``, update exactly, and save to a model folder through
:mod:`protoshot.store` (safetensors + JSON); :func:`load_estimator` reads any of them back.
"""

from __future__ import annotations

import os
from typing import Any

from protoshot import store
from protoshot.estimators._base import ClassEmbeddings, FewShotEstimator
from protoshot.estimators.auto import AutoClassifier
from protoshot.estimators.linear import LinearClassifier
from protoshot.estimators.mahalanobis import MahalanobisClassifier
from protoshot.estimators.prototypes import PrototypeClassifier
from protoshot.methods import METHODS
from protoshot.methods.auto import PRIOR_WEIGHT

ESTIMATORS: dict[str, type[FewShotEstimator]] = {
    cls.method: cls
    for cls in (PrototypeClassifier, LinearClassifier, AutoClassifier, MahalanobisClassifier)
}


def create_estimator(method: str = "auto", **params: Any) -> FewShotEstimator:
    """The estimator of a method name of :data:`protoshot.methods.METHODS`.

    ``named-prototypes`` is a :class:`PrototypeClassifier` with ``prior_weight`` (default the
    chosen weight) on CL2N; ``linear`` ignores names (``prior_weight=0``), ``named-linear`` uses
    them. ``params`` go to the estimator.
    """
    if method not in METHODS:  # transductive methods are not estimators
        raise ValueError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
    if method == "named-prototypes":
        defaults: dict[str, Any] = {"normalization": "cl2n", "prior_weight": PRIOR_WEIGHT}
        return PrototypeClassifier(**(defaults | params))
    if method == "linear":
        return LinearClassifier(**({"prior_weight": 0.0} | params))
    if method == "named-linear":
        return LinearClassifier(**params)
    return ESTIMATORS[method](**params)


def load_estimator(directory: str | os.PathLike[str], *, device: str | None = None) -> Any:
    """Load any estimator saved by ``save`` (safetensors + JSON; nothing is unpickled)."""
    stored = store.read_model(directory)
    method = stored.config.get("method")
    if method not in ESTIMATORS:
        raise ValueError(f"{directory} holds an unknown method {method!r}")
    return ESTIMATORS[method]._from_stored(stored, device)


__all__ = [
    "ESTIMATORS",
    "AutoClassifier",
    "ClassEmbeddings",
    "FewShotEstimator",
    "LinearClassifier",
    "MahalanobisClassifier",
    "PrototypeClassifier",
    "create_estimator",
    "load_estimator",
]
