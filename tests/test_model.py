"""FewShotModel over the real bundled MiniLM: fit, grow, reject, save/load with fingerprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from protoshot import PrototypeClassifier
from protoshot.data import load_source
from protoshot.embedders import CallableEmbedder
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def banking() -> tuple[list[str], np.ndarray]:
    samples = load_source("banking77:test", root=DATA_DIR)
    keep = np.isin(samples.labels, np.unique(samples.labels)[:8])
    return [t for t, k in zip(samples.items, keep, strict=True) if k], samples.labels[keep]


@pytest.fixture(scope="module")
def minilm():
    return embedder_for("minilm")


def split(texts: list[str], labels: np.ndarray, shots: int) -> tuple[list[int], list[int]]:
    support = [i for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:shots]]
    rest = sorted(set(range(len(texts))) - set(support))
    return support, rest


def test_fit_predict_on_real_texts(banking, minilm, cache_dir: Path) -> None:
    texts, labels = banking
    support, query = split(texts, labels, 5)
    model = FewShotModel(minilm, cache=cache_dir).fit([texts[i] for i in support], labels[support])
    preds = model.predict([texts[i] for i in query], top_k=3)
    accuracy = np.mean([p.label == labels[i] for p, i in zip(preds, query, strict=True)])
    assert accuracy > 0.7
    assert all(len(p.top_k) == 3 and p.top_k[0][0] == p.label for p in preds)
    assert all(p.top_k[0][1] >= p.top_k[1][1] >= p.top_k[2][1] for p in preds)
    assert isinstance(preds[0].to_dict()["top_k"][0]["label"], str)
    assert model.class_counts() == {c: 5 for c in np.unique(labels)}


def test_grow_equals_fit_and_remove(banking, minilm, cache_dir: Path) -> None:
    texts, labels = banking
    support, _ = split(texts, labels, 4)
    items, y = [texts[i] for i in support], labels[support]
    whole = FewShotModel(minilm, cache=cache_dir).fit(items, y)
    grown = FewShotModel(minilm, cache=cache_dir).fit(items[:10], y[:10])
    grown.add_examples(items[10:], y[10:])
    queries = whole.embed(texts[:50])
    assert grown.method == whole.method
    np.testing.assert_allclose(
        grown.classifier.predict_proba(queries), whole.classifier.predict_proba(queries), atol=1e-6
    )
    grown.remove_classes([y[0]])
    assert y[0] not in grown.classes and len(grown.classes) == 7
    with pytest.raises(ValueError, match="unknown classes"):
        grown.remove_classes(["no such intent"])
    with pytest.raises(ValueError, match="no items given"):
        grown.add_examples([], [])
    with pytest.raises(ValueError, match="got 2 items but 1 labels"):
        grown.add_examples(["a", "b"], ["x"])


def test_open_set_threshold_from_held_out_classes(banking, minilm, cache_dir: Path) -> None:
    texts, labels = banking
    classes = np.unique(labels)
    known, unknown = classes[:5], classes[5:]
    support, rest = split(texts, labels, 5)
    support = [i for i in support if labels[i] in known]
    model = FewShotModel(minilm, cache=cache_dir).fit([texts[i] for i in support], labels[support])
    calib_idx, test_idx = rest[::2], rest[1::2]
    calib = model.calibrate([texts[i] for i in calib_idx], labels[calib_idx], false_accept_rate=0.1)
    assert calib.false_accept_rate <= 0.1 and calib.n_unknown > 0 and calib.n_known > 0
    assert model.threshold == calib.threshold
    preds = model.predict([texts[i] for i in test_idx])
    is_unknown = np.isin(labels[test_idx], unknown)
    rejected = np.array([p.rejected for p in preds])
    assert all(p.label is None for p in preds if p.rejected)
    # held-out classes are rejected far more often than known ones
    assert rejected[is_unknown].mean() > 0.5 > rejected[~is_unknown].mean()
    with pytest.raises(ValueError, match="needs held-out items of both known classes and unknown"):
        model.calibrate([texts[i] for i in support[:3]], labels[support[:3]])


def test_save_load_recreates_embedder_and_refuses_other_weights(
    banking, minilm, cache_dir: Path, tmp_path: Path
) -> None:
    texts, labels = banking
    support, query = split(texts, labels, 3)
    model = FewShotModel(minilm, cache=cache_dir).fit([texts[i] for i in support], labels[support])
    model.calibrate_on_shots()
    model.save(tmp_path / "m")
    loaded = FewShotModel.load(tmp_path / "m", cache=cache_dir)
    assert loaded.embedder.fingerprint == minilm.fingerprint
    assert loaded.threshold == model.threshold and loaded.rejection.rule == model.rejection.rule
    np.testing.assert_array_equal(loaded.rejection.center, model.rejection.center)
    items = [texts[i] for i in query[:20]]
    assert [p.to_dict() for p in loaded.predict(items)] == [
        p.to_dict() for p in model.predict(items)
    ]
    other = CallableEmbedder(
        lambda xs: np.ones((len(xs), 384), np.float32), name="ones", modality="text"
    )
    with pytest.raises(ValueError, match="would not match these vectors"):
        FewShotModel.load(tmp_path / "m", embedder=other)
    PrototypeClassifier().fit(np.eye(3), [0, 1, 2]).save(tmp_path / "bare")
    with pytest.raises(ValueError, match="no embedder: it was not saved by FewShotModel"):
        FewShotModel.load(tmp_path / "bare")
    numbered = FewShotModel(minilm, cache=cache_dir).fit(["a b", "c d"], [3, 7])
    assert numbered.as_class_values(["7", 3]) == [7, 3]
    with pytest.raises(ValueError, match="class 'seven' is not an integer"):
        numbered.remove_classes(["seven"])


def test_a_copy_changes_alone_and_embeddings_add_like_items(
    banking, minilm, cache_dir: Path
) -> None:
    texts, labels = banking
    support, _ = split(texts, labels, 3)
    items, y = [texts[i] for i in support], labels[support]
    model = FewShotModel(minilm, cache=cache_dir).fit(items[:9], y[:9])
    model.calibrate_on_shots(accept=0.5)
    copy = model.copy()
    copy.add_embeddings(model.embed(items[9:]), y[9:])
    assert model.class_counts() != copy.class_counts() and len(model.classes) == 3
    assert copy.embedder is model.embedder and copy.threshold == model.threshold
    direct = (
        FewShotModel(minilm, cache=cache_dir).fit(items[:9], y[:9]).add_examples(items[9:], y[9:])
    )
    queries = model.embed(texts[:20])
    np.testing.assert_array_equal(
        copy.classifier.predict_proba(queries), direct.classifier.predict_proba(queries)
    )


def test_remove_saved_classes_needs_no_embedder(tmp_path: Path) -> None:
    from protoshot import PrototypeClassifier
    from protoshot.model import remove_saved_classes

    rng = np.random.default_rng(0)
    PrototypeClassifier().fit(rng.normal(size=(6, 4)), [1, 1, 2, 2, 3, 3]).save(tmp_path)
    assert remove_saved_classes(tmp_path, ["2", 3]) == [1]
    assert PrototypeClassifier.load(tmp_path).classes_.tolist() == [1]
    with pytest.raises(ValueError, match="cannot remove every class"):
        remove_saved_classes(tmp_path, [1])


def test_descriptions_names_and_zero_shot_classes(banking, minilm, cache_dir: Path) -> None:
    texts, labels = banking
    support, _ = split(texts, labels, 3)
    items, y = [texts[i] for i in support], labels[support]
    first = str(y[0])
    described = FewShotModel(minilm, cache=cache_dir).fit(
        items, y, class_descriptions={first: "the customer's new card has not arrived"}
    )
    named = FewShotModel(minilm, cache=cache_dir).fit(items, y)
    i = int(np.flatnonzero(described.classifier.classes_ == first)[0])
    assert not np.allclose(described.classifier.names_[i], named.classifier.names_[i])
    assert described.method.startswith("auto: ")
    described.add_descriptions({"crypto": "buying and holding bitcoin or ethereum"})
    assert described.class_counts()["crypto"] == 0
    assert described.predict(["can I buy bitcoin"])[0].label == "crypto"
    with pytest.raises(ValueError, match="descriptions name 1 classes that have no examples"):
        FewShotModel(minilm, cache=cache_dir).fit(items, y, class_descriptions={"nope": "x"})
    with pytest.raises(ValueError, match="no description gave text to embed"):
        described.add_descriptions({"digits": "12345"})
    with pytest.warns(UserWarning, match="2 classes have no name to embed"):
        FewShotModel(minilm, cache=cache_dir).fit(["a b", "c d"], [3, 7])


def test_python_api_traps(banking, minilm, cache_dir: Path) -> None:
    texts, labels = banking
    model = FewShotModel(minilm, cache=cache_dir).fit(texts[:40], labels[:40])
    with pytest.raises(TypeError, match="give a list of items"):
        model.predict("I lost my card")
    model.add_examples(["where is my parcel", "parcel not here"], "parcel")
    assert model.class_counts()["parcel"] == 2
    from protoshot import FewShotModel as exported

    assert exported is FewShotModel


def test_predict_proba_score_and_score_report(banking, minilm, cache_dir: Path) -> None:
    texts, labels = banking
    support, query = split(texts, labels, 5)
    known = np.unique(labels)[:6]
    fit_rows = [i for i in support if labels[i] in known]
    model = FewShotModel(minilm, cache=cache_dir).fit(
        [texts[i] for i in fit_rows], labels[fit_rows]
    )
    items, truth = [texts[i] for i in query], labels[query]
    proba = model.predict_proba(items)
    assert proba.shape == (len(items), 6) and np.allclose(proba.sum(1), 1)
    inside = np.isin(truth, known)
    picked = np.array(model.classes)[proba.argmax(1)]
    in_items = [t for t, k in zip(items, inside, strict=True) if k]
    assert model.score(in_items, truth[inside]) == pytest.approx(
        np.mean(picked[inside] == truth[inside])
    )
    outside_label = np.where(inside, truth, "elsewhere")
    report = model.score_report(items, outside_label, unknown_label="elsewhere")
    assert report.n_unknown == int((~inside).sum()) and report.false_accept_rate == 1.0
    model.calibrate_on_shots()
    strict = model.score_report(items, outside_label, unknown_label="elsewhere")
    accepted = ~model.rejection.rejected(model.classifier, model.embed(items))
    assert strict.accept_rate == pytest.approx(accepted.mean())
    assert strict.unknown_recall > 0
    with pytest.warns(UserWarning, match="no item is labelled 'nowhere'"):
        model.score_report(in_items, truth[inside], unknown_label="nowhere")


def saved_with_metadata(banking, minilm, cache_dir: Path, folder: Path, edit: dict) -> None:
    """A model saved to ``folder / "m"``, its config's metadata then edited by hand."""
    import json

    texts, labels = banking
    support, _ = split(texts, labels, 2)
    model = FewShotModel(minilm, cache=cache_dir)
    model.fit([texts[i] for i in support], labels[support]).save(folder / "m")
    path = folder / "m" / "config.json"
    config = json.loads(path.read_text())
    for key, value in edit.items():
        current = config["metadata"].get(key)
        config["metadata"][key] = {**current, **value} if isinstance(current, dict) else value
    path.write_text(json.dumps(config))


def test_an_older_probability_threshold_is_dropped_with_a_warning(
    banking, minilm, cache_dir: Path, tmp_path: Path
) -> None:
    edit = {"rejection": {"threshold": 0.2}}  # what an older version saved
    saved_with_metadata(banking, minilm, cache_dir, tmp_path, edit)
    with pytest.warns(UserWarning, match="threshold on probabilities from an older version"):
        loaded = FewShotModel.load(tmp_path / "m", cache=cache_dir)
    assert loaded.rejection is None


def test_score_and_calibrate_take_labels_of_either_kind(banking, minilm, cache_dir: Path) -> None:
    """Digit labels read as text, integer labels from numpy, an out-of-scope label of the
    other kind: each is matched to the model's classes where it can be one of them."""
    texts, labels = banking
    support, query = split(texts, labels, 4)
    codes = np.unique(labels, return_inverse=True)[1]
    keep = [i for i in support if codes[i] < 5]
    model = FewShotModel(minilm, cache=cache_dir).fit(
        [texts[i] for i in keep], [str(codes[i]) for i in keep]
    )
    vectors = model.embed([texts[i] for i in query])
    truth = np.where(codes[query] < 5, codes[query], -1)  # integers, -1 out of scope
    report = model.score_report_embeddings(vectors, truth, unknown_label="-1")
    assert report.n_unknown == int((truth == -1).sum()) > 0 and report.known_accuracy > 0.5
    numbers = FewShotModel(minilm, cache=cache_dir).fit([texts[i] for i in keep], codes[keep])
    mixed = [str(c) if c < 5 else "NO_MATCH" for c in codes[query]]  # text, one not a number
    calibration = numbers.calibrate_embeddings(vectors, mixed, false_accept_rate=0.1)
    assert calibration.n_unknown == mixed.count("NO_MATCH") and calibration.false_accept_rate <= 0.1


def test_a_folder_never_makes_protoshot_download_its_embedder(
    banking, minilm, cache_dir: Path, tmp_path: Path
) -> None:

    from typer.testing import CliRunner

    import protoshot.cli._commands  # noqa: F401
    from protoshot.cli import app
    from protoshot.embedders._registry import fetches_weights

    hub = {"embedder": {"spec": "st:someone/a-model-on-the-hub"}}
    saved_with_metadata(banking, minilm, cache_dir, tmp_path, hub)
    with pytest.raises(ValueError, match="would be fetched from a model hub: pass --model"):
        FewShotModel.load(tmp_path / "m", cache=cache_dir)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "m"), "-t", "hello"])
    assert result.exit_code == 1 and "--allow-download" in result.stderr
    assert not fetches_weights("minilm") and fetches_weights("hf:facebook/dinov2-small")
    assert not fetches_weights(f"hf:{tmp_path}")  # a local folder


def test_blank_shots_and_broken_unicode_are_refused(minilm, cache_dir: Path) -> None:
    model = FewShotModel(minilm, cache=cache_dir)
    with pytest.raises(ValueError, match="shot 1 is an empty text"):
        model.fit(["a real example", "  "], ["x", "y"])
    model.fit(["a real example", "another one"], ["x", "y"])
    with pytest.raises(ValueError, match="shot 0 is an empty text"):
        model.add_examples([""], "x")
    with pytest.raises(ValueError, match="item 0 is not valid Unicode text"):
        model.predict(["\ud800 lone surrogate"])
    assert model.class_counts() == {"x": 1, "y": 1}


def test_a_deferred_embedder_is_built_only_for_an_uncached_item(
    banking, minilm, cache_dir: Path, tmp_path: Path
) -> None:
    texts, _ = banking
    saved_with_metadata(banking, minilm, cache_dir, tmp_path, {})
    seen = texts[-10:]
    want = [p.to_dict() for p in FewShotModel.load(tmp_path / "m", cache=cache_dir).predict(seen)]
    loaded = FewShotModel.load(tmp_path / "m", cache=cache_dir, deferred=True)
    assert [p.to_dict() for p in loaded.predict(seen)] == want
    assert not loaded.embedder.built  # answered from the cache alone: no model was loaded
    loaded.predict([f"a sentence this cache has never held {tmp_path}"])
    assert loaded.embedder.built and loaded.embedder.load().fingerprint == minilm.fingerprint
    # a folder fitted with other weights: its cached answers stand, a new item is refused
    saved_with_metadata(
        banking, minilm, cache_dir, tmp_path / "o", {"embedder": {"fingerprint": "f" * 64}}
    )
    other = FewShotModel.load(tmp_path / "o" / "m", cache=cache_dir, deferred=True)
    with pytest.raises(ValueError, match=r"fitted with f{12}\.\.\.: its prototypes would not"):
        other.predict([f"another sentence never seen {tmp_path}"])
    with pytest.raises(ValueError, match="would not match these vectors"):
        FewShotModel.load(tmp_path / "o" / "m", cache=cache_dir)  # not deferred: at once
