"""Open-set rejection: answer "unknown" when a query is not similar enough to any class.

The score is a similarity (:mod:`protoshot.maths.openset`), not a softmax probability: it
does not shrink as classes are added, and its centre is fixed when the threshold is chosen, so
a threshold stays valid after ``add`` (a new class is scored on the same scale). Three ways to
choose the threshold:

- :func:`from_shots`: from the model's own shots alone (no out-of-scope example needed): each
  shot is scored with itself left out, and the threshold accepts ``accept`` of them (90% by
  default). This is the default because out-of-scope data is rarely at hand.
- :func:`from_traffic`: from unlabelled traffic and the share of it known to be out of scope
  (from logs): the threshold rejects that share.
- :func:`from_held_out`: from labelled held-out data that includes classes the model does not
  know: the threshold accepts at most a target share of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from protoshot.maths.openset import MIX, class_similarity, leave_one_out_similarity

#: Share of the model's own shots accepted (leave-one-out) by the train-only threshold.
ACCEPT = 0.90


@dataclass(frozen=True)
class Rejection:
    """Reject a query whose similarity to its best class is below ``threshold``.

    ``center`` [n_features] is fixed when the threshold is chosen; ``rule`` says how it was
    chosen, in words.
    """

    threshold: float
    center: np.ndarray
    rule: str
    mix: float = MIX

    def best_similarity(self, classifier: Any, vectors: np.ndarray) -> np.ndarray:
        """Each query's similarity ``[n]`` to its most similar class of ``classifier``."""
        shots, codes, names, named = _classes(classifier)
        similarity = class_similarity(
            torch.as_tensor(np.ascontiguousarray(vectors), dtype=torch.float64), shots, codes, names,
            named, torch.as_tensor(self.center), mix=self.mix,
        )  # fmt: skip
        return similarity.amax(-1).numpy()

    def rejected(self, classifier: Any, vectors: np.ndarray) -> np.ndarray:
        """Which queries ``[n]`` are answered "unknown"."""
        return self.best_similarity(classifier, vectors) < self.threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON for the model folder's metadata."""
        return {
            "score": "similarity",
            "threshold": self.threshold,
            "rule": self.rule,
            "mix": self.mix,
            "center": self.center.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], n_features: int) -> Rejection:
        """Read :meth:`to_dict`'s JSON, checked.

        Raises
        ------
        ValueError
            If a field is missing or out of range, naming it.
        """
        center = np.asarray(data.get("center", ()), dtype=np.float64)
        threshold, mix = data.get("threshold"), data.get("mix", MIX)
        if center.shape != (n_features,) or not np.isfinite(center).all():
            raise ValueError(f"rejection.center must be {n_features} finite numbers")
        if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"rejection.threshold must be a finite number, got {threshold!r}")
        if not isinstance(mix, (int, float)) or not 0 <= mix <= 1:
            raise ValueError(f"rejection.mix must be in [0, 1], got {mix!r}")
        return cls(float(threshold), center, str(data.get("rule", "")), float(mix))


def from_shots(classifier: Any, *, accept: float = ACCEPT, mix: float = MIX) -> Rejection:
    """The train-only threshold: it accepts ``accept`` of the model's own shots, each scored
    with itself left out of its class. Only shots whose class keeps another shot or a name
    count (a lone shot's best similarity is to another class, which says nothing of genuine
    inputs); with fewer than two such shots there is no threshold to take."""
    if not 0 < accept <= 1:
        raise ValueError(f"accept must be in (0, 1], got {accept}")
    center = _center(classifier)
    shots, codes, names, named = _classes(classifier)
    scores = leave_one_out_similarity(shots, codes, names, named, torch.as_tensor(center), mix=mix)
    comparable = scores.numpy()[np.isfinite(scores.numpy())]
    if len(comparable) < 2:
        raise ValueError(
            "a threshold from the shots needs classes with two shots or a name (a lone shot "
            "has nothing of its class to be compared with): add shots, or calibrate on "
            "traffic (--expected-unknown-rate) or held-out data"
        )
    threshold = float(np.quantile(comparable, 1 - accept))
    rule = (
        f"accepts {100 * accept:g}% of the model's {len(comparable)} shots that have another "
        "shot or a name in their class, each left out in turn"
    )
    return Rejection(threshold, center, rule, mix)


def from_traffic(
    classifier: Any, vectors: np.ndarray, *, unknown_rate: float, mix: float = MIX
) -> Rejection:
    """The threshold that rejects ``unknown_rate`` of unlabelled traffic ``vectors`` (the share
    of out-of-scope inputs, as known from logs)."""
    if not 0 <= unknown_rate < 1:
        raise ValueError(f"the expected unknown rate must be in [0, 1), got {unknown_rate}")
    probe = Rejection(0.0, _center(classifier), "")
    best = probe.best_similarity(classifier, vectors)
    threshold = float(np.quantile(best, unknown_rate))
    rule = (
        f"rejects {100 * unknown_rate:g}% of {len(best)} traffic inputs (the expected unknown rate)"
    )
    return Rejection(threshold, probe.center, rule)


def from_held_out(
    classifier: Any,
    vectors: np.ndarray,
    known: np.ndarray,
    *,
    false_accept_rate: float,
    mix: float = MIX,
) -> Rejection:
    """The lowest threshold that accepts at most ``false_accept_rate`` of the held-out inputs
    whose class the model does not know (``known`` [n] is False for them)."""
    if not 0 <= false_accept_rate < 1:
        raise ValueError(f"false_accept_rate must be in [0, 1), got {false_accept_rate}")
    if known.all() or not known.any():
        raise ValueError(
            "calibration needs held-out items of both known classes and unknown classes "
            f"(got {int(known.sum())} known, {int((~known).sum())} unknown)"
        )
    probe = Rejection(0.0, _center(classifier), "", mix)
    unknown_best = np.sort(probe.best_similarity(classifier, vectors[~known]))
    allowed = int(np.floor(false_accept_rate * len(unknown_best)))
    threshold = _above(unknown_best, len(unknown_best) - allowed - 1)
    rule = (
        f"accepts at most {100 * false_accept_rate:g}% of {len(unknown_best)} held-out inputs "
        "of unknown classes"
    )
    return Rejection(threshold, probe.center, rule, mix)


def _above(ordered: np.ndarray, k: int) -> float:
    """A threshold that rejects ``ordered[: k + 1]`` and accepts the rest (``s >= t``), placed
    midway to the next higher value: the same input scored in another batch may differ in its
    last bits, which a threshold one float step above it would not survive."""
    value = ordered[k]
    higher = ordered[np.searchsorted(ordered, value, side="right") :]
    return float((value + higher[0]) / 2) if len(higher) else float(value + 1e-6)


def _center(classifier: Any) -> np.ndarray:
    """The mean of the model's shots now: fixed from here on, so later updates keep the scale."""
    shots = _classes(classifier)[0]
    if not len(shots):
        raise ValueError("rejection needs shots: a model of class names alone has none")
    return shots.mean(0).numpy()


def _classes(classifier: Any) -> tuple[torch.Tensor, ...]:
    """The model's shots, their class positions, its name embeddings and which classes have
    one, as float64 tensors.

    Raises
    ------
    ValueError
        If the model was saved without its shots (prototype folders of an older version).
    """
    if len(classifier.support_) != int(classifier.shot_counts_.sum()):
        raise ValueError(
            "this model was saved without its shots (an older prototypes folder), so it cannot "
            "reject by similarity: fit it again"
        )
    return (
        torch.as_tensor(np.asarray(classifier.support_), dtype=torch.float64),
        torch.as_tensor(np.asarray(classifier.support_codes_), dtype=torch.int64),
        torch.as_tensor(np.asarray(classifier.names_), dtype=torch.float64),
        torch.as_tensor(np.asarray(classifier.named_, dtype=bool)),
    )
