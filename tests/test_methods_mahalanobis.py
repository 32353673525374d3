"""Mahalanobis (shrunk shared covariance) and the transductive methods, against plain references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.covariance import OAS, LedoitWolf

from protoshot import EpisodeSampler
from protoshot.estimators import MahalanobisClassifier
from protoshot.evaluation import evaluate_episodes
from protoshot.maths.covariance import shrinkage, shrunk_covariance, within_class_scatter
from protoshot.maths.transductive import balance, sinkhorn, soft_kmeans
from protoshot.transductive import predict_transductive
from tests.reference import naive_sinkhorn, naive_soft_kmeans


@pytest.mark.parametrize(("method", "reference"), [("oas", OAS), ("ledoit-wolf", LedoitWolf)])
def test_shrunk_covariance_matches_scikit_learn(method, reference, rng) -> None:
    x = torch.as_tensor(rng.normal(size=(3, 4, 5, 7)))
    mask = torch.ones(3, 4, 5, dtype=torch.float64)
    mask[1, 2, 3:] = 0  # unbalanced: padding rows must not count
    rows, scatter, n = within_class_scatter(x, mask)
    amount = shrinkage(rows, scatter, n, method)
    cov = shrunk_covariance(scatter, amount)
    for e in range(3):
        keep = rows[e][mask[e].reshape(-1) > 0].numpy()
        ref = reference(assume_centered=True).fit(keep)
        assert abs(float(amount[e]) - ref.shrinkage_) < 1e-12
        mu = np.trace(keep.T @ keep / len(keep)) / keep.shape[1]  # scaled to unit mean variance
        np.testing.assert_allclose(cov[e].numpy() * mu, ref.covariance_, atol=1e-12)


def test_evaluator_and_estimator_agree_with_a_plain_inverse(blobs) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=4, n_shot=5, n_query=3, n_episodes=6, seed=2).sample()
    grid = evaluate_episodes(x, episodes, methods=["mahalanobis"], dtype="float64")
    for e in range(len(episodes)):
        s, q = x[episodes.support[e].reshape(-1)], x[episodes.query[e].reshape(-1)]
        s = s.astype(np.float32).astype(np.float64)  # the estimator keeps its shots in float32
        labels = np.repeat(np.arange(4), 5)
        model = MahalanobisClassifier().fit(s, labels)
        # by hand: CL2N on the shots' mean, pooled within-class covariance, OAS, inverse
        c = s.mean(0)
        z = (s - c) / np.linalg.norm(s - c, axis=1, keepdims=True)
        zq = (q - c) / np.linalg.norm(q - c, axis=1, keepdims=True)
        means = np.stack([z[labels == k].mean(0) for k in range(4)])
        cov = OAS(assume_centered=True).fit(z - means[labels]).covariance_
        inv = np.linalg.inv(cov)
        d = np.einsum("mnd,de,mne->mn", zq[:, None] - means, inv, zq[:, None] - means)
        np.testing.assert_array_equal(model.predict(q), d.argmin(1))
        target = np.repeat(np.arange(4), 3)
        assert grid.results[0].per_episode[e] == (d.argmin(1) == target).mean()
        np.testing.assert_allclose(model.covariance_, cov / (np.trace(cov) / len(cov)), atol=1e-10)


def test_one_shot_mahalanobis_is_euclidean_prototypes(blobs) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=5, n_shot=1, n_query=4, n_episodes=50).sample()
    grid = evaluate_episodes(
        x, episodes, methods=["mahalanobis", "prototypes"], normalizations=["cl2n"]
    )
    np.testing.assert_array_equal(grid.results[0].per_episode, grid.results[1].per_episode)


def test_soft_kmeans_matches_a_plain_loop(rng) -> None:
    support = rng.normal(size=(2, 3, 4, 5))
    queries = rng.normal(size=(2, 9, 5))
    sums = torch.as_tensor(support.sum(2))
    counts = torch.full((2, 3), 4.0, dtype=torch.float64)
    got = soft_kmeans(sums, counts, torch.as_tensor(queries), steps=4, beta=2.0)
    for e in range(2):
        ref = naive_soft_kmeans(
            support[e].reshape(-1, 5), np.repeat(np.arange(3), 4), queries[e], 4, 2.0
        )
        np.testing.assert_allclose(got[e].numpy(), 2.0 * ref, atol=1e-10)  # logits: beta x scores


@settings(max_examples=25, deadline=None)
@given(m=st.integers(2, 12), n=st.integers(2, 5), seed=st.integers(0, 1000))
def test_sinkhorn_balances_and_matches_a_plain_loop(m, n, seed) -> None:
    scores = np.random.default_rng(seed).normal(size=(m, n))
    plan = balance(torch.as_tensor(scores)[None], iterations=200)[0].exp().numpy()
    np.testing.assert_allclose(plan.sum(1), 1.0, atol=1e-8)
    np.testing.assert_allclose(plan.sum(0), m / n, atol=1e-6)
    np.testing.assert_allclose(plan, naive_sinkhorn(scores, 200), atol=1e-6)


def test_transductive_rows_stand_apart_and_help_on_balanced_episodes(blobs) -> None:
    x, y = blobs
    sampler = EpisodeSampler(y, n_way=5, n_shot=1, n_query=10, n_episodes=200, seed=3)
    grid = evaluate_episodes(
        x, sampler, methods=["prototypes", "soft-kmeans", "sinkhorn"], normalizations=["cl2n"]
    )
    rows = {r.config["method"]: r for r in grid}
    assert rows["sinkhorn"].config["transductive"] and rows["sinkhorn"].config["assumes"]
    assert rows["sinkhorn"].paired["mean"] > 0  # balanced queries: the assumption holds
    assert grid.best() is rows["prototypes"]  # never the best against inductive rows
    assert "(transductive)" in str(grid)


def test_the_transductive_api(blobs) -> None:
    x, y = blobs
    support = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(4)])
    queries = np.concatenate([np.flatnonzero(y == c)[2:12] for c in range(4)])
    for method in ("soft-kmeans", "sinkhorn"):
        labels, proba = predict_transductive(x[support], y[support], x[queries], method=method)
        assert proba.shape == (40, 4) and np.allclose(proba.sum(1), 1.0)
        assert (labels == y[queries]).mean() > 0.5
    with pytest.raises(ValueError, match="unknown transductive method"):
        predict_transductive(x[support], y[support], x[queries], method="tim")
    with pytest.raises(ValueError, match="support embeddings but"):
        predict_transductive(x[support], y[support][:3], x[queries])


def test_sinkhorn_refinement_keeps_a_balanced_plan(rng) -> None:
    def unit(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a / np.linalg.norm(a, axis=-1, keepdims=True))

    ones = torch.ones(2, 3, dtype=torch.float64)
    plan = sinkhorn(unit(rng.normal(size=(2, 3, 4))), ones, unit(rng.normal(size=(2, 6, 4))))
    np.testing.assert_allclose(plan.exp().sum(2).numpy(), 1.0, atol=1e-9)  # one unit a query
    np.testing.assert_allclose(plan.exp().sum(1).numpy(), 2.0, atol=1e-2)  # 6 queries / 3 classes


def test_probabilities_keep_their_scale_as_shots_arrive(rng) -> None:
    """The covariance is scaled to unit mean variance: a second shot per class does not turn
    every probability into 1 (it did when the scale jumped from the identity to the scatter)."""
    means = rng.normal(size=(5, 64))
    y = np.repeat(np.arange(5), 3)
    x = means[y] + 0.8 * rng.normal(size=(15, 64))
    noise = rng.normal(size=(50, 64)) * 3
    one = MahalanobisClassifier().fit(x[::3], y[::3]).predict_proba(noise).max(1).mean()
    two = MahalanobisClassifier().fit(x[y < 9][np.arange(15) % 3 < 2], y[np.arange(15) % 3 < 2])
    assert two.predict_proba(noise).max(1).mean() < 0.99
    assert 0.2 < one < 0.99


def test_an_isotropic_scatter_never_breaks_the_factorisation() -> None:
    """Rounding can make OAS's denominator <= 0; the shrinkage stays in [0, 1] and the
    covariance positive definite."""
    x = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    x[0, 0] = torch.eye(4)  # centred shots along the axes: S is a multiple of I
    x[0, 1] = -torch.eye(4)
    mask = torch.ones(1, 2, 4, dtype=torch.float64)
    rows, scatter, n = within_class_scatter(x, mask)
    for method in ("oas", "ledoit-wolf"):
        a = shrinkage(rows, scatter, n, method)
        assert 0.0 <= float(a[0]) <= 1.0
        assert bool(torch.linalg.eigvalsh(shrunk_covariance(scatter, a)).min() > 0)


def test_sinkhorn_refuses_a_batch_smaller_than_the_classes(blobs) -> None:
    x, y = blobs
    support = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(4)])
    with pytest.raises(ValueError, match="2 inputs cannot cover 4 classes"):
        predict_transductive(x[support], y[support], x[:2], method="sinkhorn")
    labels, _ = predict_transductive(x[support], y[support], x[:1], method="soft-kmeans")
    assert labels.shape == (1,)


def test_transductive_rows_come_last_whatever_the_order_asked(blobs) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=4, n_shot=2, n_query=3, n_episodes=5).sample()
    grid = evaluate_episodes(x, episodes, methods=["soft-kmeans", "prototypes", "mahalanobis"])
    assert [r.config["method"] for r in grid] == ["prototypes", "mahalanobis", "soft-kmeans"]
