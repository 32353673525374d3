"""Transductive methods in the evaluator: each episode's queries refine its classes.

Results are labelled ``transductive`` in every row (``config.transductive``) and never stand
beside inductive published numbers; ``sinkhorn`` also says that it assumes balanced queries. In
the all-class protocol the "queries" are the whole test split, which is not balanced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from protoshot._validation import check_choice
from protoshot.maths.normalize import NORMALIZATIONS
from protoshot.maths.transductive import sinkhorn, soft_kmeans
from protoshot.methods.base import EpisodeBlock
from protoshot.methods.support import block_support

#: Transductive method names. Settings are the papers' (Ren et al. 2018; PT-MAP), not tuned.
TRANSDUCTIVE = ("soft-kmeans", "sinkhorn")
REFINE = {"soft-kmeans": soft_kmeans, "sinkhorn": sinkhorn}


class Transductive:
    """Evaluate ``soft-kmeans`` or ``sinkhorn`` on blocks of episodes (CL2N by default)."""

    min_shots = 1

    def __init__(self, name: str = "soft-kmeans", normalization: str = "cl2n") -> None:
        check_choice("transductive method", name, TRANSDUCTIVE)
        check_choice("normalization", normalization, NORMALIZATIONS)
        self.name = name
        self.normalization = normalization

    def variants(self) -> list[dict[str, Any]]:
        assumes = {"assumes": "balanced queries"} if self.name == "sinkhorn" else {}
        return [{"normalization": self.normalization, "transductive": True, **assumes}]

    def scores(self, block: EpisodeBlock, shots: Sequence[int]) -> Iterator[torch.Tensor]:
        queries = block.query_embeddings()
        for k in shots:
            support = block_support(block, k, self.normalization)
            yield REFINE[self.name](support.sums(), support.counts(), support.normalize(queries))
