"""The fitted linear head: the batched fit matches a per-episode reference, and its identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot import EpisodeSampler
from protoshot.evaluation import evaluate_episodes
from protoshot.maths.heads import fit_head, prototype_head
from protoshot.methods import HeadSettings, LinearHead
from protoshot.methods.linear import fit_linear
from protoshot.methods.support import SupportSet
from tests.reference import naive_head


def random_problem(seed: int, e: int = 3, n: int = 4, k: int = 3, d: int = 5):
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(e, n, 1, d, generator=gen, dtype=torch.float64)
    x = means + 0.7 * torch.randn(e, n, k, d, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True)
    mask = (torch.rand(e, n, k, generator=gen) > 0.2).to(torch.float64)
    mask[..., 0] = 1.0  # every class keeps a shot
    return SupportSet(x, mask, None, "l2", None)


@pytest.mark.parametrize("penalty", [1e-1, 1e-3])
def test_batched_fit_matches_a_per_episode_reference(penalty) -> None:
    """Episodes solved as one problem land on each episode's own optimum (within 1e-4)."""
    support = random_problem(0)
    w0, b0 = prototype_head(support.prototypes(), 0.1)
    x, y, w = support.rows()
    head = fit_head(x, y, w, w0, b0, penalty=penalty, max_iter=500, tol=1e-8)
    assert bool(head.converged.all())
    for e in range(support.n_episodes):
        ref_w, ref_b = naive_head(
            x[e].numpy(), y[e].numpy(), w[e].numpy(), w0[e].numpy(), b0[e].numpy(), penalty
        )
        np.testing.assert_allclose(head.weight[e].numpy(), ref_w, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(head.bias[e].numpy(), ref_b, rtol=1e-4, atol=1e-4)


def test_padding_rows_change_nothing() -> None:
    support = random_problem(1)
    w0, b0 = prototype_head(support.prototypes(), 0.1)
    x, y, w = support.rows()
    padded = torch.cat([x, torch.randn_like(x)], 1), torch.cat([y, y], 1), torch.cat([w, 0 * w], 1)
    a = fit_head(x, y, w, w0, b0, penalty=1e-2, tol=1e-8, max_iter=500)
    b = fit_head(*padded, w0, b0, penalty=1e-2, tol=1e-8, max_iter=500)
    torch.testing.assert_close(a.weight, b.weight, atol=1e-6, rtol=0)


def test_the_prototype_head_is_the_cosine_classifier() -> None:
    support = random_problem(2)
    protos = support.prototypes()
    weight, bias = prototype_head(protos, 0.25)
    q = torch.nn.functional.normalize(torch.randn(3, 7, 5, dtype=torch.float64), dim=-1)
    cosine = torch.einsum("emd,end->emn", q, torch.nn.functional.normalize(protos, dim=-1))
    torch.testing.assert_close(
        torch.baddbmm(bias.unsqueeze(1), q, weight.transpose(1, 2)), cosine / 0.25
    )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), log_penalty=st.floats(-3, 1))
def test_the_fit_is_a_stationary_point_and_no_worse_than_its_start(seed, log_penalty) -> None:
    support = random_problem(seed, e=2)
    penalty = 10.0**log_penalty
    w0, b0 = prototype_head(support.prototypes(), 0.1)
    x, y, w = support.rows()
    head = fit_head(x, y, w, w0, b0, penalty=penalty, max_iter=500, tol=1e-7)

    def objective(weight, bias):
        logits = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 4), y.reshape(-1), reduction="none"
        )
        ce = (ce.view(2, -1) * w).sum(1)
        return ce + 0.5 * penalty * (
            (weight - w0).square().sum((1, 2)) + (bias - b0).square().sum(1)
        )

    assert bool(head.converged.all())
    assert bool((objective(head.weight, head.bias) <= objective(w0, b0) + 1e-12).all())


def test_a_huge_penalty_keeps_the_prototype_head() -> None:
    support = random_problem(3)
    head = fit_linear(support, HeadSettings(penalty=1e6))
    w0, _ = prototype_head(support.prototypes(), HeadSettings().temperature)
    torch.testing.assert_close(head.weight, w0, atol=1e-4, rtol=0)


def test_an_unconverged_fit_says_so_and_keeps_the_prototype_head() -> None:
    support = random_problem(4)
    with pytest.warns(RuntimeWarning, match="did not converge in 1 iterations"):
        head = fit_linear(support, HeadSettings(penalty=1e-4, max_iter=1))
    w0, b0 = prototype_head(support.prototypes(), HeadSettings().temperature)
    failed = ~head.converged
    torch.testing.assert_close(head.weight[failed], w0[failed])
    torch.testing.assert_close(head.bias[failed], b0[failed])


def test_linear_head_in_the_evaluator_matches_fitting_each_episode_alone(blobs) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=4, n_shot=3, n_query=4, n_episodes=12, seed=2).sample()
    method = LinearHead("l2", HeadSettings(penalty=1e-2))
    together = evaluate_episodes(x, episodes, methods=[method], dtype="float64").results[0]
    alone = [
        evaluate_episodes(x, episodes[e : e + 1], methods=[method], dtype="float64").results[0].mean
        for e in range(len(episodes))
    ]
    np.testing.assert_allclose(together.per_episode, alone)
    assert together.config == {
        "method": "linear", "n_way": 4, "n_shot": 3, "n_query": 4, "normalization": "l2",
        "penalty": 1e-2,
    }  # fmt: skip


def test_settings_are_checked() -> None:
    for bad in ({"penalty": 0}, {"temperature": -1}, {"prior_weight": -1}, {"max_iter": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            HeadSettings(**bad)
