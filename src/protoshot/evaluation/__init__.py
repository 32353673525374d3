"""Meta-test evaluation: many N-way K-shot episodes, scored in bulk, reported with a 95% CI.

Where to look:

- :mod:`~protoshot.evaluation.api`: :func:`evaluate`, :func:`evaluate_grid` (episodes sampled
  for you) and :func:`evaluate_episodes` (episodes you give), the public entry points.
- :mod:`~protoshot.evaluation.engine`: the batched engine: checks episode blocks, cuts them into
  chunks of bounded memory, asks a method for scores and counts correct queries.
- :mod:`~protoshot.evaluation.results`: :class:`EvalResult`, :class:`GridResult`, :func:`mean_ci`.
- :mod:`~protoshot.evaluation.protocols`: the all-class K-shot protocol and Omniglot's 20 runs.
- :mod:`~protoshot.evaluation.reports`: the ``--json`` document (with its schema) and PNG plots.

The method interface (:mod:`protoshot.methods.base`): the engine hands a method an
``EpisodeBlock`` (support and query indices ``[E, N, K]`` / ``[E, N, Q]`` into the embedding
table, a ``RowReader`` over the table, unbalanced shot counts, a fixed centre) and the shot counts
to evaluate; the method yields scores ``[E, N * Q, N]`` for each shot count x its variants.
Prototypes (:mod:`protoshot.methods.prototypes`) is one such method; others plug in beside it
without touching the engine. Formulas live in :mod:`protoshot.maths`, the bulk row reads in
:mod:`protoshot.kernels`.
"""

from __future__ import annotations

from protoshot.evaluation.api import evaluate, evaluate_episodes, evaluate_grid
from protoshot.evaluation.results import EvalResult, GridResult, mean_ci

__all__ = ["EvalResult", "GridResult", "evaluate", "evaluate_episodes", "evaluate_grid", "mean_ci"]
