"""Classification methods behind one interface (:mod:`protoshot.methods.base`).

- :class:`~protoshot.methods.prototypes.Prototypes`: nearest class mean under a normalisation
  and a metric.

A new method is a module here with a class that has ``name``, ``variants()`` and
``scores(block, shots)``; the evaluator runs it unchanged (``evaluate_episodes(..., method=...)``).
"""

from __future__ import annotations

from protoshot.methods.base import EpisodeBlock, Method
from protoshot.methods.prototypes import Prototypes

__all__ = ["EpisodeBlock", "Method", "Prototypes"]
