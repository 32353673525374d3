"""The maths core: pure functions on tensors with a leading episode axis.

One implementation, used by the evaluator (many episodes) and the classifier (one episode).
"""

from __future__ import annotations

from protoshot.maths.distances import DEFAULT_TEMPERATURE, METRICS, predict_proba, scores
from protoshot.maths.normalize import NORMALIZATIONS, normalize, normalize_episode
from protoshot.maths.prototypes import class_sums, prototypes

__all__ = [
    "DEFAULT_TEMPERATURE",
    "METRICS",
    "NORMALIZATIONS",
    "class_sums",
    "normalize",
    "normalize_episode",
    "predict_proba",
    "prototypes",
    "scores",
]
