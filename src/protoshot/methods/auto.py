"""``auto``: pick the method per fit by cross-validation on the user's own shots.

Selection is honest by construction: it sees only the support set of the fit (in evaluation,
of each episode), never the queries it is scored on. The candidates are prototypes and the
fitted linear head, each with the class names as a prior when the classes have names. Every
class with at least two shots lends shots to held-out folds (slots ``f, f + F, ...``); the
candidate with the most correct held-out shots wins, ties going to the simpler (prototypes).
With one shot per class there is nothing to hold out, and the closed-form choice is taken: the
named linear head when names exist (it led at one shot on SNIPS), else prototypes (which the
head equals at one shot there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from protoshot.maths.distances import default_temperature, episode_scores
from protoshot.methods.base import EpisodeBlock
from protoshot.methods.linear import HeadSettings, fit_linear
from protoshot.methods.support import SupportSet, block_support

#: Cross-validation folds (fewer when classes have fewer shots).
N_FOLDS = 3
#: How much a class name counts, in shots, for the named candidates: chosen on SNIPS all-class
#: (50 seeds, 1-10 shots; ``benchmarks/accuracy.py --select``), never on a reported data set.
PRIOR_WEIGHT = 2.0
NORMALIZATION = "cl2n"

Scorer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Candidate:
    """One method ``auto`` can pick: ``"prototypes"`` or ``"linear"``, named or not."""

    kind: str
    prior_weight: float = 0.0

    @property
    def name(self) -> str:
        return ("named-" if self.prior_weight else "") + self.kind

    def fit(self, support: SupportSet) -> Scorer:
        """Fit to ``support``; the scorer maps normalised queries ``[E, M, D]`` to ``[E, M, N]``."""
        if self.kind == "prototypes":
            protos = support.prototypes(self.prior_weight)
            temperature = default_temperature("sqeuclidean", NORMALIZATION)
            return lambda q: episode_scores(q, protos, "sqeuclidean") / temperature
        return fit_linear(support, HeadSettings(prior_weight=self.prior_weight)).scores


def candidates(named: bool) -> list[Candidate]:
    """What ``auto`` chooses from, simplest first."""
    weight = PRIOR_WEIGHT if named else 0.0
    return [
        Candidate("prototypes", weight),
        Candidate("linear", weight),
    ]


@dataclass(frozen=True)
class Choice:
    """What :func:`choose` picked for each episode, and why."""

    #: int64 [E]: position of the chosen candidate.
    index: torch.Tensor
    #: ``"cross-validation"``, or ``"closed form"`` when no class has two shots to hold out.
    how: str
    #: float [C, E]: each candidate's held-out accuracy (cross-validation only).
    held_out_accuracy: torch.Tensor | None = None


def choose(support: SupportSet, options: Sequence[Candidate]) -> Choice:
    """The candidate each episode's own shots favour (see the module docstring)."""
    most = int(support.counts().max()) if support.x.shape[2] else 0
    if most < 2:
        index = torch.full((support.n_episodes,), _closed_form(options), device=support.x.device)
        return Choice(index, "closed form")
    train, held = support.folds(min(N_FOLDS, most))
    e, n, k, d = train.x.shape
    queries = train.x.reshape(e, n * k, d)
    target = torch.arange(n, device=queries.device).repeat_interleave(k)
    weights = held.reshape(e, n * k)
    correct = torch.stack(
        [
            ((option.fit(train)(queries).argmax(-1) == target) * weights)
            .sum(-1)
            .view(-1, support.n_episodes)
            .sum(0)
            for option in options
        ]
    )  # [C, E]
    # ties go to the earlier (simpler) candidate
    order = torch.arange(len(options), 0, -1, device=correct.device, dtype=correct.dtype)
    index = (correct + 1e-3 * order.unsqueeze(1)).argmax(0)
    n_held = weights.sum(-1).view(-1, support.n_episodes).sum(0)
    # an episode with one shot per class (others in the batch have more) holds nothing out
    index = torch.where(n_held > 0, index, _closed_form(options))
    how = "cross-validation" if bool((n_held > 0).any()) else "closed form"
    return Choice(index, how, correct / n_held)


def _closed_form(options: Sequence[Candidate]) -> int:
    """The choice without held-out shots: the last (named head) with names, else prototypes."""
    return len(options) - 1 if options[0].prior_weight else 0


class Auto:
    """Evaluate ``auto``: per episode, the candidate that cross-validation picks on its shots."""

    def __init__(self, named: bool = False) -> None:
        self.options = candidates(named)
        self.name = "auto"
        self.min_shots = 0 if named else 1

    def variants(self) -> list[dict[str, Any]]:
        return [
            {
                "normalization": NORMALIZATION,
                "candidates": "|".join(option.name for option in self.options),
            }
        ]

    def scores(self, block: EpisodeBlock, shots: Sequence[int]) -> Iterator[torch.Tensor]:
        if self.options[0].prior_weight:
            block.name_embeddings(self.name)
        queries = block.query_embeddings()
        for k in shots:
            support = block_support(block, k, NORMALIZATION)
            q = support.normalize(queries)
            chosen = choose(support, self.options).index
            used = chosen.unique().tolist()
            scores = {i: self.options[i].fit(support)(q) for i in used}
            if len(used) == 1:
                yield scores[used[0]]
                continue
            fill = scores[used[0]]  # for candidates no episode chose
            stacked = torch.stack([scores.get(i, fill) for i in range(len(self.options))])
            yield stacked[chosen, torch.arange(support.n_episodes, device=q.device)]
