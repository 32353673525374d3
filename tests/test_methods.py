"""The method interface: a method written on gathered embeddings plugs into the engine as is."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from protoshot import METRICS, NORMALIZATIONS, EpisodeSampler
from protoshot.evaluation import evaluate_episodes
from protoshot.maths.distances import episode_scores
from protoshot.maths.normalize import normalize_episode_tensors
from protoshot.maths.prototypes import episode_prototypes
from protoshot.methods import EpisodeBlock, Prototypes


class GatheredPrototypes:
    """Prototypes the plain way: gather, normalise, average, score (the interface's simple path)."""

    name = "gathered-prototypes"
    min_shots = 1

    def __init__(self, normalizations: Sequence[str], metrics: Sequence[str]) -> None:
        self.pairs = list(itertools.product(normalizations, metrics))

    def variants(self) -> list[dict[str, Any]]:
        return [{"normalization": n, "metric": m} for n, m in self.pairs]

    def scores(self, block: EpisodeBlock, shots: Sequence[int]) -> Iterator[torch.Tensor]:
        for k, (norm, metric) in itertools.product(shots, self.pairs):
            s, q = normalize_episode_tensors(
                block.support_embeddings(k), block.query_embeddings(), norm,
                center=block.center, n_support=block.n_support,
            )  # fmt: skip
            yield episode_scores(q, episode_prototypes(s, block.n_support), metric)


@pytest.mark.parametrize("n_shot", [4, (1, 4)])
def test_a_gathered_method_matches_prototypes_through_the_engine(blobs, n_shot) -> None:
    x, y = blobs
    sampler = EpisodeSampler(y, n_way=4, n_shot=n_shot, n_query=3, n_episodes=50, seed=3)
    shots = None if isinstance(n_shot, tuple) else (1, 4)
    fast = evaluate_episodes(x, sampler, shots=shots, methods=[Prototypes(NORMALIZATIONS, METRICS)])
    plain = evaluate_episodes(
        x, sampler, shots=shots, methods=[GatheredPrototypes(NORMALIZATIONS, METRICS)]
    )

    def settings(grid):
        return [{k: v for k, v in r.config.items() if k != "method"} for r in grid]

    assert settings(fast) == settings(plain)
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(a.per_episode, b.per_episode)


def test_prototypes_variants_in_order_without_repeats() -> None:
    method = Prototypes(["l2", "none", "l2"], ["cosine", "dot"])
    assert method.variants() == [
        {"normalization": "l2", "metric": "cosine"},
        {"normalization": "l2", "metric": "dot"},
        {"normalization": "none", "metric": "cosine"},
        {"normalization": "none", "metric": "dot"},
    ]


def test_prototypes_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown normalization 'l3'"):
        Prototypes(["l3"])
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        Prototypes(metrics=["manhattan"])


def test_methods_are_named_and_not_empty(blobs) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=3, n_shot=2, n_query=2, n_episodes=4).sample()
    with pytest.raises(ValueError, match="methods is empty"):
        evaluate_episodes(x, episodes, methods=[])
    with pytest.raises(ValueError, match="unknown method 'knn'"):
        evaluate_episodes(x, episodes, methods=["knn"])
    with pytest.raises(ValueError, match="needs class names"):
        evaluate_episodes(x, episodes, methods=["named-prototypes"])


def test_empty_variant_lists_are_refused(blobs) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=3, n_shot=2, n_query=2, n_episodes=4).sample()
    with pytest.raises(ValueError, match="metrics is empty"):
        evaluate_episodes(x, episodes, metrics=[])


def test_blocks_of_different_shapes_are_refused(blobs) -> None:
    x, y = blobs
    five = EpisodeSampler(y, n_way=5, n_shot=2, n_query=2, n_episodes=4).sample()
    three = EpisodeSampler(y, n_way=3, n_shot=2, n_query=2, n_episodes=4).sample()
    with pytest.raises(ValueError, match="episode blocks differ in shape"):
        evaluate_episodes(x, [five, three])


def test_unbalanced_shot_label_spans_every_block(blobs) -> None:
    x, y = blobs
    blocks = [
        EpisodeSampler(y, n_way=3, n_shot=(1, 4), n_query=2, n_episodes=30, seed=s).sample()
        for s in range(3)
    ]
    fewest = min(int(b.n_support.min()) for b in blocks)
    result = evaluate_episodes(x, blocks).results[0]
    assert result.config["n_shot"] == f"{fewest}-4"
    assert result.n_episodes == 90
