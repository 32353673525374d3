"""EpisodeSampler: invariants (hypothesis), reproducibility and up-front validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protoshot import Episodes, EpisodeSampler
from protoshot.episodes import split_classes
from protoshot.labels import encode_labels


@st.composite
def sampler_args(draw: st.DrawFn) -> dict:
    n_classes = draw(st.integers(2, 8))
    sizes = draw(st.lists(st.integers(4, 12), min_size=n_classes, max_size=n_classes))
    labels = np.repeat(np.array([f"c{i}" for i in range(n_classes)]), sizes)
    labels = labels[np.random.default_rng(draw(st.integers(0, 99))).permutation(len(labels))]
    low = draw(st.integers(1, 2))
    return {
        "labels": labels,
        "n_way": draw(st.one_of(st.integers(2, n_classes), st.just("all"))),
        "n_shot": draw(st.sampled_from([low, (low, 3)])),
        "n_query": draw(st.integers(1, 1)),
        "n_episodes": draw(st.integers(1, 40)),
        "seed": draw(st.integers(0, 2**31)),
    }


@given(sampler_args())
def test_sampler_invariants(args: dict) -> None:
    sampler = EpisodeSampler(**args)
    eps = sampler.sample()
    labels = args["labels"]
    n_way = len(set(labels)) if args["n_way"] == "all" else args["n_way"]
    k_max = args["n_shot"][1] if isinstance(args["n_shot"], tuple) else args["n_shot"]
    assert eps.support.shape == (args["n_episodes"], n_way, k_max)
    assert eps.query.shape == (args["n_episodes"], n_way, args["n_query"])
    way_labels = sampler.classes_[eps.ways]
    # every index belongs to its way's class; ways are distinct classes
    assert (labels[eps.support] == way_labels[..., None]).all()
    assert (labels[eps.query] == way_labels[..., None]).all()
    assert all(len(set(row)) == n_way for row in eps.ways)
    # support and query disjoint, no sample twice in an episode
    both = np.concatenate([eps.support.reshape(len(eps), -1), eps.query.reshape(len(eps), -1)], 1)
    assert all(len(set(row)) == row.size for row in both)
    if isinstance(args["n_shot"], tuple):
        assert eps.n_support is not None
        assert ((eps.n_support >= args["n_shot"][0]) & (eps.n_support <= k_max)).all()
    else:
        assert eps.n_support is None
    # reproducible by seed
    again = EpisodeSampler(**args).sample()
    np.testing.assert_array_equal(again.support, eps.support)
    np.testing.assert_array_equal(again.query, eps.query)


def test_blocks_concatenate_to_the_same_episodes_as_sample() -> None:
    labels = np.repeat(np.arange(50), 30)
    sampler = EpisodeSampler(labels, n_way=5, n_shot=5, n_query=5, n_episodes=2500, seed=3)
    blocks = list(sampler)
    assert len(blocks) == 3 and sum(len(b) for b in blocks) == 2500
    joined = Episodes.concatenate(blocks)
    np.testing.assert_array_equal(joined.query, sampler.sample().query)
    assert len(joined[10:20]) == 10


def test_different_seeds_give_different_episodes() -> None:
    labels = np.repeat(np.arange(20), 10)
    a = EpisodeSampler(labels, n_episodes=5, n_query=2, seed=0).sample()
    b = EpisodeSampler(labels, n_episodes=5, n_query=2, seed=1).sample()
    assert not np.array_equal(a.support, b.support)


def test_ways_and_samples_are_roughly_uniform() -> None:
    labels = np.repeat(np.arange(10), 10)
    eps = EpisodeSampler(labels, n_way=2, n_shot=1, n_query=1, n_episodes=5000, seed=0).sample()
    way_counts = np.bincount(eps.ways.ravel(), minlength=10)
    sample_counts = np.bincount(eps.support.ravel(), minlength=100)
    assert way_counts.min() > 0.85 * way_counts.mean()
    assert sample_counts.min() > 0.6 * sample_counts.mean()


def test_class_subset_restricts_episodes() -> None:
    labels = np.repeat(["a", "b", "c", "d"], 5)
    sampler = EpisodeSampler(labels, n_way="all", n_query=1, n_episodes=4, classes=["b", "d"])
    assert sampler.classes_.tolist() == ["b", "d"]
    assert set(labels[sampler.sample().support.ravel()]) == {"b", "d"}


def test_split_classes_is_a_disjoint_seeded_partition() -> None:
    split = split_classes(np.arange(100), (0.6, 0.2, 0.2), seed=1)
    sizes = [len(split[k]) for k in ("base", "validation", "novel")]
    assert sizes == [60, 20, 20]
    assert len(np.unique(np.concatenate(list(split.values())))) == 100
    np.testing.assert_array_equal(split["novel"], split_classes(np.arange(100), seed=1)["novel"])
    with pytest.raises(ValueError, match="summing to 1"):
        split_classes(np.arange(5), (0.5, 0.1, 0.1))


def test_sampler_bad_input() -> None:
    labels = np.array(["a"] * 10 + ["b"] * 3 + ["c"] * 10)
    with pytest.raises(ValueError, match=r"class 'b' has 3 samples, but n_shot \+ n_query = 6"):
        EpisodeSampler(labels, n_way=2, n_shot=1, n_query=5)
    with pytest.raises(ValueError, match="n_way=4 but only 3 classes are available"):
        EpisodeSampler(labels, n_way=4, n_query=1)
    with pytest.raises(ValueError, match="n_way must be at least 2"):
        EpisodeSampler(labels, n_way=1, n_query=1)
    with pytest.raises(ValueError, match="n_query must be a positive integer, got 0"):
        EpisodeSampler(labels, n_query=0)
    with pytest.raises(ValueError, match="n_shot range must be"):
        EpisodeSampler(labels, n_shot=(3, 1))
    with pytest.raises(ValueError, match=r"classes not found in labels: \['z'\]"):
        EpisodeSampler(labels, n_way=2, n_query=1, classes=["a", "z"])
    with pytest.raises(ValueError, match="labels are empty"):
        EpisodeSampler([], n_query=1)


def test_mixed_label_types_are_refused() -> None:
    with pytest.raises(
        TypeError, match=r"labels must all be of one type, got a mix of \['number', 'str'\]"
    ):
        encode_labels([1, "a", 2])
    classes, codes = encode_labels(np.array([3, 1, 3]))
    assert classes.tolist() == [1, 3] and codes.tolist() == [1, 0, 1]
