"""The prototype index: exact and approximate retrieval, kept in step with updates, served."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot import PrototypeClassifier
from protoshot.embedders import CallableEmbedder
from protoshot.estimators import LinearClassifier
from protoshot.index import IndexedClasses, PrototypeIndex, label_ids
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for
from tests.test_service import banking, serving  # noqa: F401  (a fixture, and the server)

pytest.importorskip("faiss")
D = 16


def clustered(n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class embeddings around a few centres (neighbours that are close, as in real data)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n_classes // 50, 2), D))
    x = centres[rng.integers(len(centres), size=n_classes)] + 0.3 * rng.normal(size=(n_classes, D))
    return x, np.asarray([f"class {i}" for i in range(n_classes)])


def top1(model: FewShotModel, queries: np.ndarray) -> list:
    return [p.label for p in model.predict_embeddings(queries)]


def dense_and_indexed(estimator, kind: str, n_classes: int = 600) -> tuple[FewShotModel, ...]:
    x, y = clustered(n_classes)
    embedder = CallableEmbedder(lambda items: torch.zeros(len(items), D), name="zeros")
    dense = FewShotModel(embedder, estimator.fit(x, y), cache=False)
    return dense, dense.copy().use_index(kind, n_candidates=8)


@pytest.mark.parametrize(
    "estimator",
    [
        PrototypeClassifier(temperature=1.0),
        PrototypeClassifier("cosine", normalization="cl2n"),
        PrototypeClassifier("dot", temperature=1.0),
        PrototypeClassifier("euclidean", normalization="l2", temperature=1.0),
    ],
    ids=["sqeuclidean", "cosine-cl2n", "dot", "euclidean-l2"],
)
def test_a_flat_index_answers_as_scoring_every_class(estimator) -> None:
    dense, indexed = dense_and_indexed(estimator, "flat")
    queries = clustered(600)[0][:100] + 0.2 * np.random.default_rng(1).normal(size=(100, D))
    assert top1(indexed, queries) == top1(dense, queries)
    for p in indexed.predict_embeddings(queries[:5], top_k=8):
        probabilities = [q for _, q in p.top_k]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0)  # over the candidates


def test_an_ivf_index_finds_the_nearest_prototype_almost_always() -> None:
    x, y = clustered(4000)
    estimator = PrototypeClassifier("cosine", normalization="l2").fit(x, y)
    indexed = IndexedClasses(PrototypeIndex("ivf", nprobe=8), n_candidates=4).build(estimator)
    assert indexed.index.kind_ == "ivf"
    queries = x[:500] + 0.1 * np.random.default_rng(2).normal(size=(500, D))
    positions, proba = indexed.candidates(estimator, queries)
    found = positions[np.arange(500), proba.argmax(1)]
    assert (found == estimator.decision_function(queries).argmax(1)).mean() >= 0.97


def test_auto_takes_flat_for_few_classes_and_ivf_for_many(monkeypatch) -> None:
    import protoshot.index

    x, y = clustered(300)
    estimator = PrototypeClassifier(temperature=1.0).fit(x, y)
    assert IndexedClasses(PrototypeIndex()).build(estimator).index.kind_ == "flat"
    monkeypatch.setattr(protoshot.index, "AUTO_IVF_FROM", 200)
    assert IndexedClasses(PrototypeIndex()).build(estimator).index.kind_ == "ivf"


def test_updates_move_add_and_remove_indexed_prototypes() -> None:
    dense, indexed = dense_and_indexed(PrototypeClassifier(temperature=1.0), "flat")
    far = np.full((1, D), 40.0)
    indexed.add_embeddings(far, ["class 3"])  # its prototype moves halfway to `far`
    indexed.add_embeddings(-far, ["brand new"])
    dense.add_embeddings(far, ["class 3"]).add_embeddings(-far, ["brand new"])
    probes = np.concatenate([far, -far, clustered(600)[0][:50]])
    assert top1(indexed, probes) == top1(dense, probes)
    assert top1(indexed, -far) == ["brand new"]
    indexed.remove_classes(["brand new"])
    assert top1(indexed, -far) != ["brand new"]
    assert indexed.index.index.ntotal == 600


@settings(max_examples=30, deadline=None)
@given(labels=st.lists(st.one_of(st.text(max_size=8), st.integers()), min_size=1, max_size=30))
def test_label_keys_are_stable_distinct_and_non_negative(labels) -> None:
    keys = label_ids(labels)
    again = label_ids(list(labels))
    np.testing.assert_array_equal(keys, again)
    assert (keys >= 0).all()
    assert len(set(keys.tolist())) == len({(type(x), x) for x in labels})


def test_bad_settings_and_models_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown kind .hnsw.; expected one of: auto, flat, ivf"):
        PrototypeIndex("hnsw")
    with pytest.raises(ValueError, match="nprobe must be at least 1"):
        PrototypeIndex(nprobe=0)
    with pytest.raises(ValueError, match="n_candidates must be at least 1"):
        IndexedClasses(PrototypeIndex(), n_candidates=0)
    with pytest.raises(ValueError, match="index is empty"):
        PrototypeIndex().search(np.zeros((1, D)), 1)
    x, y = clustered(50)
    with pytest.raises(ValueError, match="needs a prototypes model"):
        IndexedClasses(PrototypeIndex()).build(LinearClassifier().fit(x, y))


@pytest.mark.slow
def test_a_served_index_follows_updates(tmp_path: Path, cache_dir: Path, banking) -> None:  # noqa: F811
    texts, labels = banking
    model = FewShotModel(
        embedder_for("minilm"), PrototypeClassifier("cosine", normalization="cl2n"),
        cache=cache_dir,
    )  # fmt: skip
    model.fit(texts[:60], labels[:60]).save(tmp_path / "m")
    with serving(tmp_path / "m", cache_dir, index="flat") as url:
        ask = {"texts": ["my parcel from the pet shop never came"], "top_k": 2}
        before = httpx.post(url + "/v1/predict", json=ask).json()["predictions"][0]
        assert len(before["top_k"]) == 2
        r = httpx.post(
            url + "/v1/classes/pet_parcel/examples",
            json={"texts": ["the parcel from the pet shop never came"]},
            timeout=60,
        )
        assert r.status_code == 200
        after = httpx.post(url + "/v1/predict", json=ask).json()["predictions"][0]
        assert after["label"] == "pet_parcel"


def test_an_update_reaches_the_shared_index_only_when_committed(tmp_path: Path) -> None:
    served, _ = dense_and_indexed(PrototypeClassifier(temperature=1.0), "flat", n_classes=50)
    served = served.use_index("flat", n_candidates=2)
    served.classifier.save(tmp_path / "m")
    failed = served.copy()
    failed.remove_classes(["class 1"])  # never committed: the index must not lose it
    x = served.classifier.prototypes_[[1]]
    assert top1(served, x) == ["class 1"]
    updated = served.copy()
    far = np.full((3, D), 50.0)
    updated.add_embeddings(far, ["new 1", "new 2", "new 3"])
    updated.commit(tmp_path / "m")
    # the served model's index now holds classes it does not know: it answers all the same
    no_index = FewShotModel(served.embedder, served.classifier, cache=False)
    assert top1(served, far) == top1(no_index, far)
    assert top1(updated, far[:1]) in (["new 1"], ["new 2"], ["new 3"])


def test_index_keys_follow_the_classes_own_values() -> None:
    x, _ = clustered(40)
    dense = FewShotModel(
        CallableEmbedder(lambda items: torch.zeros(len(items), D), name="zeros"),
        PrototypeClassifier(temperature=1.0).fit(x, np.arange(40, dtype=float)), cache=False,
    ).use_index("flat")  # fmt: skip
    dense.add_embeddings(x[:2], [1, 1])  # ints for the float class 1.0
    dense.predict_embeddings(x[:1])
    assert dense.index.index.ntotal == 40
