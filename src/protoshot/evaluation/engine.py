"""The batched engine: episodes in bounded chunks -> a method's scores -> per-episode accuracy.

Methods (:mod:`protoshot.methods`) turn a chunk of episodes into scores; the engine owns
everything around that: checking the episode blocks, sizing chunks so memory stays bounded
whatever the episode count, and counting correct queries. It never sees a formula.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from protoshot.episodes import Episodes
from protoshot.kernels import RowReader
from protoshot.methods.base import EpisodeBlock, Method

#: Bytes of prototypes and references per chunk (see :func:`episodes_per_chunk`).
CHUNK_BYTES = 64 * 2**20


def run(
    rows: RowReader,
    blocks: Iterable[Episodes],
    method: Method,
    *,
    shots: Sequence[int] | None,
    center: torch.Tensor | None = None,
    chunk_size: int | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Accuracy of every configuration on every episode of ``blocks``.

    Returns the configurations (``n_way``, ``n_shot``, ``n_query`` and the method's variant) and
    the accuracies, float64 ``[n_configs, n_episodes]``. All blocks must have the same shape.
    """
    first: Episodes | None = None
    shot_list: list[int] = []
    fewest = None  # fewest shots of a class in unbalanced supports, over all blocks
    chunks: list[np.ndarray] = []
    for block in blocks:
        if first is None:
            first, shot_list = block, _shots(block, shots)
        _check_block(block, first, rows.x.shape[0])
        if block.n_support is not None:
            low = int(block.n_support.min())
            fewest = low if fewest is None else min(fewest, low)
        step = chunk_size or episodes_per_chunk(block, rows.x)
        for start in range(0, len(block), step):
            part = block[start : start + step]
            chunks.append(accuracies(episode_block(rows, part, center), method, shot_list))
            advance(len(part))
    if first is None:
        raise ValueError("no episodes to evaluate")
    configs = [
        {
            "n_way": first.n_way,
            "n_shot": k if fewest is None else f"{fewest}-{first.n_shot}",
            "n_query": first.n_query,
            **variant,
        }
        for k, variant in itertools.product(shot_list, method.variants())
    ]
    return configs, np.concatenate(chunks, axis=1)


def episode_block(rows: RowReader, episodes: Episodes, center: torch.Tensor | None) -> EpisodeBlock:
    """The :class:`EpisodeBlock` of ``episodes``, its indices on the table's device."""
    dev = rows.x.device
    n_support = episodes.n_support
    return EpisodeBlock(
        rows=rows,
        support=torch.from_numpy(episodes.support).to(dev),
        query=torch.from_numpy(episodes.query).to(dev),
        ways=episodes.ways,
        n_support=None if n_support is None else torch.from_numpy(n_support).to(dev),
        center=center,
    )


def accuracies(block: EpisodeBlock, method: Method, shots: Sequence[int]) -> np.ndarray:
    """Fraction of correct queries, float64 ``[n_configs, E]``, one row per shot x variant."""
    target = torch.arange(block.n_way, device=block.rows.x.device).repeat_interleave(block.n_query)
    correct = [(s.argmax(-1) == target).sum(-1) for s in method.scores(block, shots)]
    return torch.stack(correct).cpu().numpy() / (block.n_way * block.n_query)


def episodes_per_chunk(block: Episodes, x: torch.Tensor) -> int:
    """Episodes whose prototypes and references take about :data:`CHUNK_BYTES`: enough episodes
    per chunk that each class recurs many times (the fused kernel then finds its rows in cache)
    and the per-chunk overhead is amortised, while memory stays bounded
    (``benchmarks/episodes.py``)."""
    rows = 2 * block.n_way
    return max(8, CHUNK_BYTES // (rows * x.shape[1] * x.element_size()))


def _shots(block: Episodes, shots: Sequence[int] | None) -> list[int]:
    if shots is None:
        return [block.n_shot]
    if block.n_support is not None:
        raise ValueError("shots cannot be chosen for episodes with unbalanced supports")
    for k in shots:
        if not 1 <= k <= block.n_shot:
            raise ValueError(f"shots must be between 1 and the episodes' {block.n_shot}, got {k}")
    return sorted(set(shots))


def _check_block(block: Episodes, first: Episodes, n_samples: int) -> None:
    shape = (block.n_way, block.n_shot, block.n_query, block.n_support is None)
    if shape != (first.n_way, first.n_shot, first.n_query, first.n_support is None):
        raise ValueError(
            "episode blocks differ in shape: every block needs the first one's "
            f"{first.n_way} ways, {first.n_shot} shots and {first.n_query} queries"
        )
    high = max(int(block.support.max()), int(block.query.max()))
    if high >= n_samples or min(int(block.support.min()), int(block.query.min())) < 0:
        raise ValueError(f"episode index {high} is out of range for {n_samples} embeddings")
