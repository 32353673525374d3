"""PrototypeClassifier: scikit-learn conformance, references, exact updates, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.neighbors import NearestCentroid
from sklearn.utils.estimator_checks import parametrize_with_checks

from protoshot import METRICS, NORMALIZATIONS, PrototypeClassifier
from tests.conftest import make_blobs
from tests.reference import naive_predict


@parametrize_with_checks(
    [PrototypeClassifier(), PrototypeClassifier("cosine", normalization="cl2n")]
)
def test_sklearn_conformance(estimator, check) -> None:
    check(estimator)


def test_matches_nearest_centroid(blobs) -> None:
    x, y = blobs
    ours = PrototypeClassifier().fit(x[::2], y[::2])
    ref = NearestCentroid().fit(x[::2], y[::2])
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))
    np.testing.assert_allclose(ours.prototypes_, ref.centroids_)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("metric", METRICS)
def test_matches_naive_reference(metric: str, normalization: str, blobs) -> None:
    x, y = blobs
    model = PrototypeClassifier(metric, normalization=normalization).fit(x[::3], y[::3])
    t = torch.as_tensor
    ref = naive_predict(t(x[::3]), t(y[::3]), t(x), metric=metric, normalization=normalization)
    np.testing.assert_array_equal(model.predict(x), ref.numpy())


def test_arbitrary_labels_map_back(blobs) -> None:
    x, y = blobs
    names = np.array([f"intent_{i}" for i in range(12)])[y]
    model = PrototypeClassifier().fit(x, names)
    assert model.classes_.dtype.kind == "U"
    assert set(model.predict(x[:20])) <= set(names)
    assert model.score(x, names) > 0.6


def test_probabilities_and_temperature(blobs) -> None:
    x, y = blobs
    model = PrototypeClassifier("cosine").fit(x, y)
    p = model.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_array_equal(p.argmax(1), model.decision_function(x).argmax(1))
    binary = PrototypeClassifier().fit(x[y < 2], y[y < 2])
    assert binary.decision_function(x).shape == (len(x),)
    np.testing.assert_array_equal(binary.predict(x), (binary.decision_function(x) > 0).astype(int))
    sharp = PrototypeClassifier("cosine", temperature=0.01).fit(x, y).predict_proba(x)
    assert sharp.max(1).mean() > p.max(1).mean()  # a lower temperature is more confident
    s = model.decision_function(x)  # the temperature fitted on the shots
    np.testing.assert_allclose(
        p, torch.softmax(torch.as_tensor(s) / model.temperature_, -1).numpy()
    )
    one_shot = np.unique(y, return_index=True)[1]  # nothing to hold out: the fixed defaults
    assert PrototypeClassifier("cosine").fit(x[one_shot], y[one_shot]).temperature_ == 0.1
    unit = PrototypeClassifier(normalization="l2").fit(x[one_shot], y[one_shot])
    s = torch.as_tensor(unit.decision_function(x))  # bounded scores: a sharper default
    np.testing.assert_allclose(unit.predict_proba(x), torch.softmax(s / 0.2, -1).numpy())


def test_translation_invariance_of_euclidean(blobs) -> None:
    x, y = blobs
    shift = np.full(x.shape[1], 100.0)
    a = PrototypeClassifier().fit(x, y)
    b = PrototypeClassifier().fit(x + shift, y)
    np.testing.assert_array_equal(a.predict(x), b.predict(x + shift))


@given(st.integers(0, 2**16), st.sampled_from(NORMALIZATIONS))
def test_partial_fit_equals_fit_on_everything(seed: int, normalization: str) -> None:
    x, y = make_blobs(np.random.default_rng(seed), n_classes=5, per_class=6, dim=4)
    labels = np.array(list("abcde"))[y]
    order = np.random.default_rng(seed).permutation(len(y))
    first, rest = order[:12], order[12:]
    center = x.mean(0)
    whole = PrototypeClassifier(normalization=normalization, center=center).fit(x, labels)
    grown = PrototypeClassifier(normalization=normalization, center=center).fit(
        x[first], labels[first]
    )
    for part in np.array_split(rest, 3):  # new shots and, usually, new classes
        grown.partial_fit(x[part], labels[part])
    np.testing.assert_array_equal(grown.classes_, whole.classes_)
    np.testing.assert_array_equal(grown.counts_, whole.counts_)
    np.testing.assert_allclose(grown.sums_, whole.sums_, atol=1e-12)


def test_cl2n_center_is_fixed_after_first_fit(blobs) -> None:
    x, y = blobs
    model = PrototypeClassifier(normalization="cl2n").fit(x[y < 6], y[y < 6])
    np.testing.assert_allclose(model.center_, x[y < 6].mean(0))
    model.partial_fit(x[y >= 6], y[y >= 6])
    np.testing.assert_allclose(model.center_, x[y < 6].mean(0))


def test_remove_classes(blobs) -> None:
    x, y = blobs
    model = PrototypeClassifier().fit(x, y)
    model.remove_classes([0, 5])
    assert 0 not in model.classes_ and 5 not in model.classes_ and len(model.classes_) == 10
    ref = PrototypeClassifier().fit(x[(y != 0) & (y != 5)], y[(y != 0) & (y != 5)])
    np.testing.assert_allclose(model.sums_, ref.sums_)
    with pytest.raises(ValueError, match=r"unknown classes \[42\]"):
        model.remove_classes([42])
    with pytest.raises(ValueError, match="cannot remove every class"):
        model.remove_classes(model.classes_)


@pytest.mark.parametrize(
    "labels", [np.arange(12), np.array([f"c{i}" for i in range(12)]), np.arange(12) * 1.0]
)
def test_save_load_round_trip_is_identical(labels, blobs, tmp_path: Path) -> None:
    x, y = blobs
    model = PrototypeClassifier("cosine", normalization="cl2n", temperature=0.05).fit(x, labels[y])
    model.metadata_ = {"embedder": {"spec": "minilm", "fingerprint": "abc"}}
    model.save(tmp_path / "m")
    loaded = PrototypeClassifier.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.classes_.dtype == model.classes_.dtype
    assert loaded.get_params() == {**model.get_params(), "center": None}
    assert loaded.metadata_ == model.metadata_
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files[0] == "config.json" and len(files) == 3
    assert files[1].startswith("journal-") and files[2].endswith(".safetensors")


def test_classifier_bad_input(blobs) -> None:
    x, y = blobs
    with pytest.raises(ValueError, match="unknown metric 'hamming'"):
        PrototypeClassifier("hamming").fit(x, y)
    with pytest.raises(ValueError, match="unknown normalization 'pca'"):
        PrototypeClassifier(normalization="pca").fit(x, y)
    model = PrototypeClassifier().fit(x, y)
    with pytest.raises(
        ValueError, match="X has 3 features, but PrototypeClassifier is expecting 16"
    ):
        model.predict(x[:, :3])
    with pytest.raises(ValueError, match=r"Input X contains NaN\."):
        model.predict(np.full((1, 16), np.nan))
    with pytest.raises(ValueError, match=r"0 sample|labels are empty"):
        PrototypeClassifier().fit(np.zeros((0, 4)), [])
    with pytest.raises(TypeError, match="labels must all be of one type"):
        PrototypeClassifier().fit(x[:2], [1, "a"])
    with pytest.raises(TypeError, match="new labels are of type"):
        model.partial_fit(x[:1], ["new"])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        PrototypeClassifier(temperature=-1.0).fit(x, y)
    with pytest.raises(ValueError, match=r"center must be finite with shape \(16,\)"):
        PrototypeClassifier(normalization="cl2n", center=np.ones(3)).fit(x, y)


def test_saved_files_are_json_safetensors_and_a_journal(blobs, tmp_path: Path) -> None:
    from safetensors import safe_open

    x, y = blobs
    PrototypeClassifier().fit(x, y).save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    with safe_open(tmp_path / config["arrays_file"], framework="numpy") as f:
        assert sorted(f.keys()) == ["counts", "sums", "support", "support_codes", "updated"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["config.json", config["arrays_file"], config["journal_file"]]
    )


def test_the_held_out_temperature_of_many_classes_comes_from_a_sample(monkeypatch) -> None:
    import protoshot.estimators._base as base

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(300, 8))
    x = np.repeat(centres, 3, axis=0) + 0.5 * rng.normal(size=(900, 8))
    y = np.repeat(np.arange(300), 3)
    full = PrototypeClassifier().fit(x, y).temperature_
    monkeypatch.setattr(base, "MAX_CLASSES_HELD", 100)
    sampled = PrototypeClassifier().fit(x, y).temperature_
    assert sampled != full and 0.5 < sampled / full < 2
