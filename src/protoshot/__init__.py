"""protoshot: few-shot classification with prototypes over frozen foundation-model embeddings.

Embed once (cached), average each class's support embeddings into a prototype, classify by the
nearest prototype, and evaluate over thousands of N-way K-shot episodes with confidence intervals.

Heavy modules are imported on first use, so ``import protoshot`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it; resolved lazily on first attribute access
_EXPORTS = {
    "prototypes": "protoshot.maths",
    "class_sums": "protoshot.maths",
    "scores": "protoshot.maths",
    "predict_proba": "protoshot.maths",
    "METRICS": "protoshot.maths",
    "normalize": "protoshot.maths",
    "normalize_episode": "protoshot.maths",
    "NORMALIZATIONS": "protoshot.maths",
    "EpisodeSampler": "protoshot.episodes",
    "Episodes": "protoshot.episodes",
    "evaluate": "protoshot.evaluation",
    "evaluate_grid": "protoshot.evaluation",
    "evaluate_episodes": "protoshot.evaluation",
    "mean_ci": "protoshot.evaluation",
    "EvalResult": "protoshot.evaluation",
    "GridResult": "protoshot.evaluation",
    "PrototypeClassifier": "protoshot.estimators",
    "LinearClassifier": "protoshot.estimators",
    "AutoClassifier": "protoshot.estimators",
    "load_estimator": "protoshot.estimators",
    "METHODS": "protoshot.methods",
    "FewShotModel": "protoshot.model",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from protoshot.episodes import Episodes, EpisodeSampler
    from protoshot.estimators import (
        AutoClassifier,
        LinearClassifier,
        PrototypeClassifier,
        load_estimator,
    )
    from protoshot.evaluation import (
        EvalResult,
        GridResult,
        evaluate,
        evaluate_episodes,
        evaluate_grid,
        mean_ci,
    )
    from protoshot.maths import (
        METRICS,
        NORMALIZATIONS,
        class_sums,
        normalize,
        normalize_episode,
        predict_proba,
        prototypes,
        scores,
    )
    from protoshot.methods import METHODS
    from protoshot.model import FewShotModel


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'protoshot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
