"""Classification methods behind one interface (:mod:`protoshot.methods.base`).

- ``prototypes`` (:class:`~protoshot.methods.prototypes.Prototypes`): nearest class mean under a
  normalisation and a metric.
- ``named-prototypes``: the same, the class name's embedding counted as one more shot
  (zero-shot when a class has no shots).
- ``linear`` / ``named-linear`` (:class:`~protoshot.methods.linear.LinearHead`): a softmax head
  started from the prototypes and fitted to the shots (names as extra examples).
- ``auto`` (:class:`~protoshot.methods.auto.Auto`): per fit, the one of these that
  cross-validation on the shots picks.
- ``mahalanobis`` (:class:`~protoshot.methods.mahalanobis.Mahalanobis`): class means with a
  shared covariance shrunk by OAS or Ledoit-Wolf.
- ``soft-kmeans`` and ``sinkhorn`` (:mod:`protoshot.methods.transductive`): *transductive*: they
  refine the classes with the unlabelled queries of the same episode (batch work only).

A new method is a module here with a class that has ``name``, ``min_shots``, ``variants()`` and
``scores(block, shots)``; the evaluator runs it unchanged (``evaluate_episodes(..., methods=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence

from protoshot.methods.auto import PRIOR_WEIGHT, Auto
from protoshot.methods.base import EpisodeBlock, Method
from protoshot.methods.linear import HeadSettings, LinearHead
from protoshot.methods.mahalanobis import Mahalanobis
from protoshot.methods.prototypes import Prototypes
from protoshot.methods.transductive import TRANSDUCTIVE, Transductive

#: Inductive method names, simplest first.
METHODS = ("prototypes", "named-prototypes", "linear", "named-linear", "auto", "mahalanobis")
#: Every method name, the transductive ones last (see :data:`TRANSDUCTIVE`).
ALL_METHODS = (*METHODS, *TRANSDUCTIVE)
#: Methods that need class names (``auto`` uses them when there are some).
NAMED_METHODS = ("named-prototypes", "named-linear")


def create_method(
    name: str,
    *,
    named: bool = False,
    normalizations: Sequence[str] = ("none",),
    metrics: Sequence[str] = ("sqeuclidean",),
) -> Method:
    """The evaluation method called ``name`` (see :data:`METHODS`).

    ``named`` says whether class-name embeddings exist (``auto`` then uses them; the named
    methods require them). ``normalizations`` and ``metrics`` are the prototype methods' grid.
    """
    if name not in ALL_METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of: {', '.join(ALL_METHODS)}")
    if name in NAMED_METHODS and not named:
        raise ValueError(
            f"the {name!r} method needs class names; integer-coded labels have none "
            "(give class descriptions, or use the unnamed method)"
        )
    if name == "auto":
        return Auto(named=named)
    if name == "mahalanobis":
        return Mahalanobis()
    if name in TRANSDUCTIVE:
        return Transductive(name)
    weight = PRIOR_WEIGHT if name in NAMED_METHODS else 0.0
    if name.endswith("prototypes"):
        return Prototypes(normalizations, metrics, prior_weight=weight)
    return LinearHead(settings=HeadSettings(prior_weight=weight))


__all__ = [
    "ALL_METHODS",
    "METHODS",
    "TRANSDUCTIVE",
    "Auto",
    "EpisodeBlock",
    "HeadSettings",
    "LinearHead",
    "Mahalanobis",
    "Method",
    "Prototypes",
    "Transductive",
    "create_method",
]
