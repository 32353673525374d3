"""The maths core: prototypes, scores, normalisations; hand cases, references and properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from protoshot import (
    METRICS,
    NORMALIZATIONS,
    class_sums,
    normalize,
    normalize_episode,
    predict_proba,
    prototypes,
    scores,
)
from protoshot.maths.distances import DEFAULT_TEMPERATURE, UNIT_SPHERE_TEMPERATURE

finite = st.floats(-10, 10, allow_nan=False, width=64)


def episode_arrays(
    max_e: int = 3, max_n: int = 4, max_k: int = 4, max_d: int = 6
) -> st.SearchStrategy:
    shape = st.tuples(
        st.integers(1, max_e), st.integers(1, max_n), st.integers(1, max_k), st.integers(1, max_d)
    )
    return shape.flatmap(lambda s: arrays(np.float64, s, elements=finite))


# ------------------------------------------------------------------ hand-computed cases
def test_prototypes_hand_case() -> None:
    support = np.array([[[0.0, 0.0], [2.0, 4.0]], [[1.0, 1.0], [3.0, 1.0]]])  # [N=2, K=2, D=2]
    np.testing.assert_array_equal(prototypes(support), [[1.0, 2.0], [2.0, 1.0]])


def test_scores_hand_case() -> None:
    query = np.array([[0.0, 0.0], [3.0, 4.0]])
    protos = np.array([[0.0, 0.0], [3.0, 0.0]])
    np.testing.assert_allclose(scores(query, protos, "sqeuclidean"), [[0, -9], [-25, -16]])
    np.testing.assert_allclose(scores(query, protos, "euclidean"), [[0, -3], [-5, -4]])
    np.testing.assert_allclose(scores(query, protos, "dot"), [[0, 0], [0, 9]])
    np.testing.assert_allclose(scores(query, protos, "cosine"), [[0, 0], [0, 0.6]])


def test_unbalanced_prototypes_hand_case() -> None:
    support = np.array([[0.0], [2.0], [10.0], [-1.0]])
    labels = np.array([0, 0, 1, -1])  # -1 is padding
    np.testing.assert_array_equal(prototypes(support, labels), [[1.0], [10.0]])
    sums, counts = class_sums(support, labels)
    np.testing.assert_array_equal(sums, [[2.0], [10.0]])
    np.testing.assert_array_equal(counts, [2, 1])


def test_normalisations_hand_case() -> None:
    x = np.array([[3.0, 4.0], [1.0, 0.0]])
    np.testing.assert_allclose(normalize(x, "l2"), [[0.6, 0.8], [1.0, 0.0]])
    np.testing.assert_allclose(normalize(x, "cl2n", center=[1.0, 4.0]), [[1.0, 0.0], [0.0, -1.0]])
    np.testing.assert_array_equal(normalize(x, "none"), x)
    support = np.array([[[[0.0, 2.0]], [[2.0, 2.0]]]])  # [E=1, N=2, K=1, D=2], mean (1, 2)
    s, q = normalize_episode(support, np.array([[[1.0, 5.0]]]), "cl2n")
    np.testing.assert_allclose(s[0, :, 0], [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(q[0], [[0.0, 1.0]])


def test_torch_in_torch_out_numpy_in_numpy_out() -> None:
    x = torch.ones(2, 3, 4)
    assert isinstance(prototypes(x), torch.Tensor)
    assert isinstance(prototypes(x.numpy()), np.ndarray)
    assert isinstance(scores(x, x), torch.Tensor)
    assert isinstance(normalize(x.numpy()), np.ndarray)


# ------------------------------------------------------------------ references
@pytest.mark.parametrize("metric", METRICS)
def test_scores_match_cdist_reference(metric: str, rng: np.random.Generator) -> None:
    q = torch.as_tensor(rng.normal(size=(3, 7, 5)))
    p = torch.as_tensor(rng.normal(size=(3, 4, 5)))
    got = scores(q, p, metric)
    d = torch.cdist(q, p)
    ref = {
        "sqeuclidean": -(d**2),
        "euclidean": -d,
        "dot": q @ p.transpose(1, 2),
        "cosine": torch.nn.functional.cosine_similarity(q[:, :, None], p[:, None], dim=-1),
    }[metric]
    torch.testing.assert_close(got, ref)


def test_class_sums_match_index_add(rng: np.random.Generator) -> None:
    support = torch.as_tensor(rng.normal(size=(2, 9, 3)))
    labels = torch.as_tensor(rng.integers(0, 4, size=(2, 9)))
    sums, counts = class_sums(support, labels, n_way=4)
    for e in range(2):
        ref = torch.zeros(4, 3, dtype=torch.float64).index_add_(0, labels[e], support[e])
        torch.testing.assert_close(sums[e], ref)
        torch.testing.assert_close(counts[e], torch.bincount(labels[e], minlength=4))


# ------------------------------------------------------------------ properties
@given(episode_arrays(), st.randoms(use_true_random=False))
def test_prototypes_invariant_to_shot_order(support: np.ndarray, random) -> None:
    perm = list(range(support.shape[2]))
    random.shuffle(perm)
    np.testing.assert_allclose(prototypes(support[:, :, perm]), prototypes(support), atol=1e-9)


@given(episode_arrays())
def test_balanced_and_labelled_prototypes_agree(support: np.ndarray) -> None:
    e, n, k, d = support.shape
    labels = np.broadcast_to(np.repeat(np.arange(n), k), (e, n * k))
    np.testing.assert_allclose(
        prototypes(support.reshape(e, n * k, d), labels, n_way=n), prototypes(support)
    )


@given(episode_arrays(), arrays(np.float64, 6, elements=finite))
def test_sqeuclidean_is_translation_invariant(support: np.ndarray, shift: np.ndarray) -> None:
    shift = shift[: support.shape[-1]]
    query = support[:, :, 0]
    base = scores(query, prototypes(support), "sqeuclidean")
    moved = scores(query + shift, prototypes(support + shift), "sqeuclidean")
    np.testing.assert_allclose(moved, base, atol=1e-7 * (1 + np.abs(base).max()))


@given(episode_arrays(), st.sampled_from(METRICS))
def test_batched_scores_equal_one_episode_at_a_time(support: np.ndarray, metric: str) -> None:
    query, protos = support[:, :, -1], prototypes(support)
    batched = scores(query, protos, metric)
    for e in range(support.shape[0]):
        np.testing.assert_allclose(batched[e], scores(query[e], protos[e], metric), atol=1e-10)


@given(
    arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 6)), elements=finite),
    st.floats(0.01, 100),
)
def test_probabilities_sum_to_one(s: np.ndarray, temperature: float) -> None:
    p = predict_proba(s, temperature)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    assert (p >= 0).all()
    np.testing.assert_array_equal(p.argmax(-1), s.argmax(-1)) if temperature >= 1 else None


@given(episode_arrays(max_d=5), st.sampled_from(NORMALIZATIONS))
def test_normalize_episode_gives_unit_vectors(support: np.ndarray, method: str) -> None:
    s, _ = normalize_episode(support, support[:, :, 0], method)
    if method != "none":
        norms = np.linalg.norm(s, axis=-1)
        assert np.all((np.abs(norms - 1) < 1e-9) | (norms < 1e-9))


def test_default_temperature_covers_every_metric() -> None:
    assert set(DEFAULT_TEMPERATURE) == set(METRICS) == set(UNIT_SPHERE_TEMPERATURE)


# ------------------------------------------------------------------ bad input
def test_bad_input_errors() -> None:
    good = np.ones((2, 3))
    with pytest.raises(
        ValueError, match="unknown metric 'manhattan'; expected one of: sqeuclidean"
    ):
        scores(good, good, "manhattan")
    with pytest.raises(
        ValueError, match="unknown normalization 'zscore'; expected one of: none, l2, cl2n"
    ):
        normalize(good, "zscore")
    with pytest.raises(ValueError, match="query has 4 features, but prototypes has 3"):
        scores(np.ones((2, 4)), good)
    with pytest.raises(ValueError, match="contains 1 NaN or infinite"):
        scores(np.array([[np.nan, 0, 0]]), good)
    with pytest.raises(ValueError, match="contains 1 NaN or infinite"):
        prototypes(np.array([[[np.inf]]]))
    with pytest.raises(ValueError, match="support is empty"):
        prototypes(np.zeros((0, 2, 3)))
    with pytest.raises(ValueError, match="class 1 has no shots"):
        prototypes(np.ones((3, 2)), np.array([0, 0, 2]))
    with pytest.raises(TypeError, match="must be a numeric array"):
        prototypes(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="labels must be integer class positions"):
        class_sums(good, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="labels must have shape"):
        class_sums(good, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        predict_proba(good, 0)
    with pytest.raises(ValueError, match="center has 2 features, but embeddings has 3"):
        normalize(good, "cl2n", center=[1.0, 2.0])
    with pytest.raises(ValueError, match="query has 3 episodes but prototypes have 2"):
        scores(np.ones((3, 2, 2)), np.ones((2, 2, 2)))
