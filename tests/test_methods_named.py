"""Named prototypes: the class name's embedding as a prior, in the fast evaluator and alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot import EpisodeSampler
from protoshot.evaluation import evaluate_episodes
from protoshot.evaluation.protocols import all_class_kshot
from protoshot.maths.prototypes import prototypes_with_prior
from protoshot.methods import Prototypes
from tests.reference import naive_named_prototypes, naive_predict


def name_rows(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A noisy class mean per class: names that say something about their class."""
    means = np.stack([x[y == c].mean(0) for c in np.unique(y)])
    return means + rng.normal(scale=0.5, size=means.shape)


def naive_named_accuracy(x, names, episodes, k, w, normalization, metric):
    accs = []
    xt, nt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(names, dtype=torch.float64)
    for e in range(len(episodes)):
        ways = episodes.ways[e]
        s_idx = episodes.support[e, :, :k].reshape(-1)
        labels = torch.arange(len(ways)).repeat_interleave(k)
        protos, c = naive_named_prototypes(xt[s_idx], labels, nt[ways], w, normalization)
        q = xt[episodes.query[e].reshape(-1)]
        if normalization != "none":
            q = q - c if c is not None else q
            q = q / q.norm(dim=1, keepdim=True)
        target = torch.arange(len(ways)).repeat_interleave(episodes.n_query)
        # score against the ready prototypes: the naive predictor with one "shot" per prototype
        pred = naive_predict(protos, torch.arange(len(ways)), q, metric=metric)
        accs.append(float((pred == target).double().mean()))
    return np.array(accs)


@pytest.mark.parametrize("normalization", ["none", "l2", "cl2n"])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_named_prototypes_match_the_naive_reference(blobs, rng, normalization, k) -> None:
    x, y = blobs
    names = name_rows(x, y, rng)
    sampler = EpisodeSampler(y, n_way=4, n_shot=3, n_query=4, n_episodes=40, seed=1)
    episodes = sampler.sample()
    method = Prototypes([normalization], ["sqeuclidean", "cosine"], prior_weight=1.5)
    grid = evaluate_episodes(x, episodes, shots=[k], methods=[method], class_embeddings=names)
    for r in grid:
        ref = naive_named_accuracy(x, names, episodes, k, 1.5, normalization, r.config["metric"])
        np.testing.assert_allclose(r.per_episode, ref, atol=1e-12)
        assert r.config["prior_weight"] == 1.5 and r.config["method"] == "named-prototypes"


def test_names_lift_one_shot_accuracy_and_zero_shot_works(blobs, rng) -> None:
    x, y = blobs
    names = name_rows(x, y, rng)
    sampler = EpisodeSampler(y, n_way=5, n_shot=1, n_query=5, n_episodes=200, seed=0)
    grid = evaluate_episodes(
        x, sampler, shots=[0, 1], methods=["prototypes", "named-prototypes"],
        class_embeddings=names,
    )  # fmt: skip
    rows = {(r.config["method"], r.config["n_shot"]): r for r in grid}
    assert ("prototypes", 0) not in rows  # plain prototypes have no zero-shot row
    assert rows["named-prototypes", 0].mean > 0.5  # 5-way chance is 0.2
    named = rows["named-prototypes", 1]
    assert named.paired is not None and named.paired["mean"] > 0
    np.testing.assert_allclose(
        named.paired["mean"], (named.per_episode - rows["prototypes", 1].per_episode).mean()
    )


def test_named_methods_refuse_missing_names(blobs) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=3, n_shot=2, n_query=2, n_episodes=4).sample()
    with pytest.raises(ValueError, match="needs class-name embeddings"):
        evaluate_episodes(x, episodes, methods=[Prototypes(prior_weight=1.0)])
    with pytest.raises(ValueError, match="0 shots needs a method that uses class names"):
        evaluate_episodes(x, episodes, shots=[0, 1])


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    weight=st.floats(0.0, 5.0),
)
def test_prior_prototypes_are_a_weighted_mean(counts, weight) -> None:
    """A prototype with a prior is the mean of its shots and ``weight`` copies of the prior."""
    if weight == 0:
        counts = [max(c, 1) for c in counts]
    gen = torch.Generator().manual_seed(len(counts))
    shots = [torch.randn(c, 3, generator=gen, dtype=torch.float64) for c in counts]
    prior = torch.randn(len(counts), 3, generator=gen, dtype=torch.float64)
    sums = torch.stack([s.sum(0) for s in shots])
    got = prototypes_with_prior(sums, torch.tensor(counts), prior, weight)
    for c, (s, p) in enumerate(zip(shots, prior, strict=True)):
        if len(s) + weight == 0:
            continue
        expected = (s.sum(0) + weight * p) / (len(s) + weight)
        torch.testing.assert_close(got[c], expected)


def test_all_class_protocol_matches_a_per_seed_loop(blobs, rng) -> None:
    """The all-class protocol through the engine equals scoring each seed's draw by hand."""
    x, y = blobs
    train, test = slice(0, None, 2), slice(1, None, 2)
    names = dict(enumerate(name_rows(x, y, rng)))
    grid = all_class_kshot(
        x[train], y[train], x[test], y[test], shots=(2,), n_seeds=6, seed=4,
        methods=["prototypes", "named-prototypes"], normalizations=["cl2n"],
        class_embeddings=names,
    )  # fmt: skip
    support = EpisodeSampler(y[train], n_way="all", n_shot=2, n_query=1, n_episodes=6, seed=4)
    drawn = support.sample().support
    xt = torch.as_tensor(x, dtype=torch.float64)
    names_t = torch.as_tensor(np.stack(list(names.values())), dtype=torch.float64)
    for r in grid:
        w = r.config.get("prior_weight", 0.0)
        ref = []
        for seed_support in drawn:
            idx = seed_support.reshape(-1)
            labels = torch.arange(seed_support.shape[0]).repeat_interleave(2)
            protos, c = naive_named_prototypes(xt[train][idx], labels, names_t, w, "cl2n")
            q = xt[test] - c
            q = q / q.norm(dim=1, keepdim=True)
            pred = torch.cdist(q, protos).argmin(1).numpy()
            ref.append((pred == y[test]).mean())
        np.testing.assert_allclose(r.per_episode, ref, atol=1e-6)


def test_a_zero_shot_only_run_and_bad_inputs(blobs, rng) -> None:
    x, y = blobs
    names = name_rows(x, y, rng)
    from protoshot.evaluation import evaluate_grid

    grid = evaluate_grid(
        x, y, n_way=4, shots=[0], n_episodes=20, methods=["prototypes", "named-prototypes"],
        metrics=["sqeuclidean"], normalizations=["l2"], class_embeddings=dict(enumerate(names)),
    )  # fmt: skip
    assert [(r.config["method"], r.config["n_shot"]) for r in grid] == [("named-prototypes", 0)]
    episodes = EpisodeSampler(y, n_way=4, n_shot=2, n_query=2, n_episodes=4).sample()
    with pytest.raises(ValueError, match="class embeddings for 5 classes only"):
        evaluate_episodes(x, episodes, methods=["named-prototypes"], class_embeddings=names[:5])
    with pytest.raises(ValueError, match="11 classes have no name embedding"):
        evaluate_grid(x, y, methods=["named-prototypes"], class_embeddings={0: names[0]})
    shared = EpisodeSampler(y, n_way=4, n_shot=2, n_query=2, n_episodes=4).sample()
    from protoshot.episodes import Episodes

    one_set = Episodes(shared.support, shared.query.reshape(4, 1, -1), shared.ways)
    with pytest.raises(ValueError, match="need targets"):
        evaluate_episodes(x, one_set)
    with pytest.raises(ValueError, match=r"targets must be ways in \[0, 4\)"):
        evaluate_episodes(x, one_set, targets=np.full(8, 7))
    with pytest.raises(ValueError, match="the way of each of the 8 queries"):
        evaluate_episodes(x, one_set, targets=np.zeros(3, dtype=int))
