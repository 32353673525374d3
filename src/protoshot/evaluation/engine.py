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
from protoshot.scoring import ECE_BINS

#: Bytes of prototypes and references per chunk (see :func:`episodes_per_chunk`).
CHUNK_BYTES = 64 * 2**20


def run(
    rows: RowReader,
    blocks: Iterable[Episodes],
    methods: Sequence[Method],
    *,
    shots: Sequence[int] | None,
    center: torch.Tensor | None = None,
    names: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    chunk_size: int | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Every :data:`MEASURES` of every configuration on every episode of ``blocks``.

    Returns the configurations (``method``, ``n_way``, ``n_shot``, ``n_query`` and the method's
    variant), the measures, float64 ``[n_measures, n_configs, n_episodes]``, and per class (a
    position of the blocks' ``ways``) the correct and all queries summed over the episodes,
    float64 ``[2, n_configs, n_classes]``. All blocks must have the same shape. ``names`` and ``targets`` are as in :class:`EpisodeBlock` (``targets`` [M] is
    the way of each query of a block whose queries are one ``[E, 1, M]`` set).
    """
    first: Episodes | None = None
    shot_list: list[int] = []
    fewest = None  # fewest shots of a class in unbalanced supports, over all blocks
    chunks: list[np.ndarray] = []
    per_class = np.zeros((2, 0, 0))
    for block in blocks:
        if first is None:
            fewest_shots = min(m.min_shots for m in methods)
            first, shot_list = block, _shots(block, shots, fewest_shots)
            methods = [m for m in methods if _usable(shot_list, m)]  # e.g. only a 0-shot row
        _check_block(block, first, rows.x.shape[0], names, targets)
        if block.n_support is not None:
            low = int(block.n_support.min())
            fewest = low if fewest is None else min(fewest, low)
        step = chunk_size or episodes_per_chunk(block, rows.x)
        for start in range(0, len(block), step):
            part = block[start : start + step]
            chunk = episode_block(rows, part, center, names, targets)
            scored = [episode_metrics(chunk, m, _usable(shot_list, m)) for m in methods]
            chunks.append(np.concatenate([measures for measures, _ in scored], axis=1))
            per_class = _summed(per_class, np.concatenate([c for _, c in scored], axis=1))
            advance(len(part))
    if first is None:
        raise ValueError("no episodes to evaluate")
    configs = [
        {
            "method": method.name,
            "n_way": first.n_way,
            "n_shot": k if fewest is None else f"{fewest}-{first.n_shot}",
            "n_query": first.n_query,
            **variant,
        }
        for method in methods
        for k, variant in itertools.product(_usable(shot_list, method), method.variants())
    ]
    return configs, np.concatenate(chunks, axis=2), per_class


def _summed(total: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``total + part`` over the classes either has (the last axis; a chunk may see fewer)."""
    n = max(total.shape[-1], part.shape[-1])
    out = np.zeros((*part.shape[:-1], n))
    out[..., : part.shape[-1]] += part
    if total.size:
        out[..., : total.shape[-1]] += total
    return out


def episode_block(
    rows: RowReader,
    episodes: Episodes,
    center: torch.Tensor | None = None,
    names: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
) -> EpisodeBlock:
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
        names=names,
        targets=None if targets is None else targets.to(dev).expand(len(episodes), -1),
    )


#: The per-episode measures :func:`episode_metrics` gives, in this order.
MEASURES = ("accuracy", "macro_f1", "nll", "ece")


def episode_metrics(
    block: EpisodeBlock, method: Method, shots: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Each :data:`MEASURES` of each episode, float64 ``[n_measures, n_configs, E]`` (one
    config per shot x variant), and each class's correct and all queries over the episodes,
    float64 ``[2, n_configs, n_classes]`` (classes are the positions in ``block.ways``).

    Macro-F1 averages over the classes with queries in the episode, so an unbalanced query
    set (the all-class protocol) cannot hide a class the method misses; NLL and ECE (top-label,
    :data:`ECE_BINS` bins) measure the probabilities, the softmax of the method's logits.
    """
    if block.targets is None:
        dev = block.rows.x.device
        target = torch.arange(block.n_way, device=dev).repeat_interleave(block.n_query)
    else:
        target = block.targets
    target = target.expand(block.n_episodes, -1)
    scored = [_measures(s, target, block.n_way) for s in method.scores(block, shots)]
    ways = torch.as_tensor(np.asarray(block.ways), device=target.device).reshape(-1)
    n_classes = int(ways.max()) + 1 if len(ways) else 0
    if not scored:
        return np.zeros((len(MEASURES), 0, block.n_episodes)), np.zeros((2, 0, n_classes))
    per_class = [
        torch.zeros(n_classes, dtype=torch.float64, device=ways.device).index_add_(
            0, ways, counts.reshape(-1)
        )
        for _, correct, queried in scored
        for counts in (correct, queried)
    ]  # correct, queried of each config in turn
    by_config = torch.stack(per_class).view(len(scored), 2, n_classes).transpose(0, 1)
    measures = torch.stack([m for m, _, _ in scored], dim=1)
    return measures.cpu().numpy(), by_config.cpu().numpy()


def _measures(
    logits: torch.Tensor, target: torch.Tensor, n_way: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:data:`MEASURES` ``[4, E]`` of logits ``[E, M, N]`` against ``target`` [E, M], each
    counted with one bincount over (episode, way or bin) cells; and each way's correct and all
    queries ``[E, N]``."""
    n_episodes, n_queries = target.shape
    log_p = torch.log_softmax(logits.to(torch.float64), dim=-1)
    confidence, pred = log_p.max(-1)
    hit = (pred == target).to(torch.float64)

    def per_cell(index: torch.Tensor, n: int, weights: torch.Tensor | None = None) -> torch.Tensor:
        offset = torch.arange(n_episodes, device=index.device).unsqueeze(-1) * n
        flat = (index + offset).reshape(-1)
        w = None if weights is None else weights.reshape(-1)
        return torch.bincount(flat, w, minlength=n_episodes * n).view(n_episodes, n).double()

    true_pos, predicted, actual = (
        per_cell(target, n_way, hit),
        per_cell(pred, n_way),
        per_cell(target, n_way),
    )
    f1 = 2 * true_pos / (predicted + actual).clamp_min(1)
    present = (actual > 0).to(torch.float64)
    macro_f1 = (f1 * present).sum(-1) / present.sum(-1).clamp_min(1)
    nll = -log_p.gather(-1, target.unsqueeze(-1)).squeeze(-1).mean(-1)
    p = confidence.exp()
    bins = (p * ECE_BINS).long().clamp_max(ECE_BINS - 1)
    gap = per_cell(bins, ECE_BINS, p - hit).abs().sum(-1) / n_queries
    return torch.stack([hit.mean(-1), macro_f1, nll, gap]), true_pos, actual


def episodes_per_chunk(block: Episodes, x: torch.Tensor) -> int:
    """Episodes whose prototypes and references (or query scores, for large query sets) take
    about :data:`CHUNK_BYTES`: enough episodes per chunk that each class recurs many times (the
    fused kernel then finds its rows in cache) and the per-chunk overhead is amortised, while
    memory stays bounded (``benchmarks/episodes.py``)."""
    refs = 2 * block.n_way * x.shape[1]
    scores = 8 * block.query[0].size * block.n_way  # a few score tensors [N * Q, N] per episode
    return max(8, CHUNK_BYTES // (max(refs, scores) * x.element_size()))


def _usable(shots: list[int], method: Method) -> list[int]:
    """The shot counts ``method`` can classify with (a 0-shot row only for methods using names)."""
    return [k for k in shots if k >= method.min_shots]


def _shots(block: Episodes, shots: Sequence[int] | None, fewest: int) -> list[int]:
    if shots is None:
        return [block.n_shot]
    if block.n_support is not None:
        raise ValueError("shots cannot be chosen for episodes with unbalanced supports")
    for k in shots:
        if not fewest <= k <= block.n_shot:
            zero = " (0 shots needs a method that uses class names)" if k == 0 else ""
            raise ValueError(
                f"shots must be between {fewest} and the episodes' {block.n_shot}, got {k}{zero}"
            )
    return sorted(set(shots))


def _check_block(
    block: Episodes,
    first: Episodes,
    n_samples: int,
    names: torch.Tensor | None,
    targets: torch.Tensor | None,
) -> None:
    shape = (block.n_way, block.n_shot, block.n_query, block.n_support is None)
    if shape != (first.n_way, first.n_shot, first.n_query, first.n_support is None):
        raise ValueError(
            "episode blocks differ in shape: every block needs the first one's "
            f"{first.n_way} ways, {first.n_shot} shots and {first.n_query} queries"
        )
    high = max(int(block.support.max()), int(block.query.max()))
    if high >= n_samples or min(int(block.support.min()), int(block.query.min())) < 0:
        raise ValueError(f"episode index {high} is out of range for {n_samples} embeddings")
    if block.n_support is not None and int(block.n_support.min()) < 1:
        raise ValueError("every class of an episode needs at least one shot (n_support >= 1)")
    if names is not None and int(block.ways.max()) >= names.shape[0]:
        raise ValueError(
            f"episodes use class {int(block.ways.max())}, but there are class embeddings for "
            f"{names.shape[0]} classes only"
        )
    shared = block.query.shape[1] != block.n_way  # one query set for all ways
    if shared and targets is None:
        raise ValueError("queries shared by all ways ([E, 1, M]) need targets: the way of each")
    if targets is not None:
        if targets.shape != (block.query.shape[1] * block.query.shape[2],):
            raise ValueError(
                f"targets must give the way of each of the {block.query[0].size} queries, "
                f"got shape {tuple(targets.shape)}"
            )
        if int(targets.min()) < 0 or int(targets.max()) >= block.n_way:
            raise ValueError(
                f"targets must be ways in [0, {block.n_way}), got {int(targets.max())}"
            )
