"""``auto``: cross-validation on each episode's own shots, batched, never seeing the queries."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot import EpisodeSampler
from protoshot.evaluation import evaluate_episodes
from protoshot.methods.auto import candidates, choose
from protoshot.methods.support import SupportSet, rows_support


def support_of(x, y, n_shot, n_episodes=10, seed=0, names=None):
    episodes = EpisodeSampler(
        y, n_way=4, n_shot=n_shot, n_query=2, n_episodes=n_episodes, seed=seed
    ).sample()
    xt = torch.as_tensor(x, dtype=torch.float64)
    s = xt[torch.as_tensor(episodes.support)]
    s = s / s.norm(dim=-1, keepdim=True)
    named = None if names is None else torch.as_tensor(names, dtype=torch.float64)[episodes.ways]
    return SupportSet(s, torch.ones(s.shape[:3], dtype=torch.float64), named, "l2", None)


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 6), min_size=2, max_size=6), n_folds=st.integers(2, 4))
def test_folds_hold_out_each_shot_once_and_leave_every_class_a_shot(counts, n_folds) -> None:
    k = max(max(counts), 1)
    mask = torch.tensor([[[1.0] * c + [0.0] * (k - c) for c in counts]])
    support = SupportSet(torch.zeros(1, len(counts), k, 2), mask, None, "none", None)
    train, held = support.folds(n_folds)
    held_total = held.sum(0)
    several = torch.tensor(counts) >= 2
    # a shot of a class with two or more is held out exactly once; others never
    torch.testing.assert_close(held_total[several], mask[0][several])
    assert float(held_total[~several].sum()) == 0
    # every fold leaves each class that had shots at least one
    kept = train.mask.sum(-1)
    assert bool((kept[:, torch.tensor(counts) > 0] >= 1).all())
    torch.testing.assert_close(train.mask + held, mask.expand(n_folds, -1, -1))


def test_choice_is_per_episode_and_ignores_the_batch(blobs) -> None:
    x, y = blobs
    support = support_of(x, y, n_shot=4)
    options = candidates(named=False)
    together = choose(support, options)
    assert together.how == "cross-validation"
    for e in range(support.n_episodes):
        alone = choose(
            SupportSet(support.x[e : e + 1], support.mask[e : e + 1], None, "l2", None), options
        )
        assert int(alone.index[0]) == int(together.index[e])
        torch.testing.assert_close(alone.held_out_accuracy[:, 0], together.held_out_accuracy[:, e])


def test_held_out_accuracy_of_prototypes_matches_a_plain_loop(blobs) -> None:
    x, y = blobs
    support = support_of(x, y, n_shot=4, n_episodes=3)
    choice = choose(support, candidates(named=False))
    for e in range(3):
        correct = total = 0
        s = support.x[e]  # [N, K, D]
        for f in range(3):  # three folds: slots f, f + 3
            held = [j for j in range(4) if j % 3 == f]
            keep = [j for j in range(4) if j % 3 != f]
            protos = s[:, keep].mean(1)
            for c in range(4):
                for j in held:
                    correct += int(torch.cdist(s[c, j][None], protos).argmin() == c)
                    total += 1
        assert abs(float(choice.held_out_accuracy[0, e]) - correct / total) < 1e-12


def test_one_shot_takes_the_closed_form_choice(blobs, rng) -> None:
    x, y = blobs
    names = rng.normal(size=(12, x.shape[1]))
    plain = choose(support_of(x, y, n_shot=1), candidates(named=False))
    named = choose(support_of(x, y, n_shot=1, names=names), candidates(named=True))
    assert plain.how == named.how == "closed form"
    assert set(plain.index.tolist()) == {0}  # prototypes
    assert set(named.index.tolist()) == {1}  # the named linear head


def test_auto_scores_are_the_chosen_candidates(blobs) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=4, n_shot=4, n_query=3, n_episodes=30, seed=5).sample()
    grid = evaluate_episodes(
        x, episodes, methods=["auto", "prototypes", "linear"], normalizations=["cl2n"],
        dtype="float64",
    )  # fmt: skip
    auto, protos, linear = (r.per_episode for r in grid)
    from_each = np.where(np.isclose(auto, protos), protos, linear)
    np.testing.assert_array_equal(auto, from_each)
    assert grid.results[0].config["candidates"] == "prototypes|linear"


def test_rows_support_pads_each_class_in_order() -> None:
    x = torch.arange(12, dtype=torch.float64).view(6, 2) + 1
    codes = torch.tensor([2, 0, 2, 2, 0, 1])
    support = rows_support(x, codes, 4, normalization="none", center=None)
    assert support.x.shape == (1, 4, 3, 2)
    torch.testing.assert_close(
        support.counts()[0], torch.tensor([2.0, 1.0, 3.0, 0.0], dtype=torch.float64)
    )
    torch.testing.assert_close(support.x[0, 2, :3], x[[0, 2, 3]])
    torch.testing.assert_close(support.x[0, 0, :2], x[[1, 4]])


def test_an_episode_with_one_shot_per_class_takes_the_closed_form_in_any_batch(blobs, rng) -> None:
    """Unbalanced supports: whether an episode can hold shots out is decided per episode."""
    x, y = blobs
    names = rng.normal(size=(12, x.shape[1]))
    sampler = EpisodeSampler(y, n_way=4, n_shot=(1, 3), n_query=3, n_episodes=40, seed=1)
    episodes = sampler.sample()
    alone = [
        evaluate_episodes(x, episodes[e : e + 1], methods=["auto"], class_embeddings=names)
        .results[0]
        .mean
        for e in range(len(episodes))
    ]
    together = evaluate_episodes(x, episodes, methods=["auto"], class_embeddings=names)
    np.testing.assert_allclose(together.results[0].per_episode, alone, atol=1e-6)
