"""The linear and auto estimators, names as a prior, zero-shot classes, and their model folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from protoshot import AutoClassifier, LinearClassifier, PrototypeClassifier, load_estimator
from protoshot.estimators import MahalanobisClassifier, create_estimator
from protoshot.methods import LinearHead
from protoshot.methods.linear import HeadSettings
from tests.conftest import make_blobs


@parametrize_with_checks(
    [
        LinearClassifier(),
        LinearClassifier(normalization="none", penalty=1e-2),
        AutoClassifier(),
        PrototypeClassifier(normalization="cl2n", prior_weight=2.0),
        MahalanobisClassifier(),
        MahalanobisClassifier(shrinkage="ledoit-wolf", normalization="none"),
    ]
)
def test_sklearn_conformance(estimator, check) -> None:
    check(estimator)


def names_of(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict[int, np.ndarray]:
    return {
        int(c): x[y == c].mean(0) + rng.normal(scale=0.3, size=x.shape[1]) for c in np.unique(y)
    }


def test_the_estimator_is_the_evaluators_method_on_one_episode(blobs) -> None:
    """LinearClassifier on a support set scores queries as the evaluator's linear method does."""
    x, y = blobs
    from protoshot import EpisodeSampler
    from protoshot.evaluation import evaluate_episodes

    episodes = EpisodeSampler(y, n_way=4, n_shot=3, n_query=5, n_episodes=1, seed=3).sample()
    support, query = episodes.support[0], episodes.query[0]
    labels = np.repeat(np.arange(4), 3)
    est = LinearClassifier(normalization="l2", penalty=1e-2, prior_weight=0.0)
    est.fit(x[support.reshape(-1)], labels)
    acc = (est.predict(x[query.reshape(-1)]) == np.repeat(np.arange(4), 5)).mean()
    method = LinearHead("l2", HeadSettings(penalty=1e-2))
    grid = evaluate_episodes(x, episodes, methods=[method], dtype="float64")
    assert acc == grid.results[0].mean


def test_linear_refits_exactly_when_shots_arrive(blobs) -> None:
    x, y = blobs
    whole = LinearClassifier().fit(x[:120], y[:120])
    grown = LinearClassifier().fit(x[:60], y[:60]).partial_fit(x[60:120], y[60:120])
    np.testing.assert_allclose(
        grown.predict_proba(x[120:]), whole.predict_proba(x[120:]), atol=1e-6
    )
    assert grown.converged_ and grown.shot_counts_.sum() == 120


@pytest.mark.parametrize(
    "estimator",
    [
        PrototypeClassifier(normalization="cl2n", prior_weight=2.0),
        LinearClassifier(),
        AutoClassifier(),
    ],
    ids=["named-prototypes", "linear", "auto"],
)
def test_a_class_from_its_name_alone(estimator, blobs, rng) -> None:
    x, y = blobs
    names = names_of(x, y, rng)
    seen = y < 6
    estimator.fit(x[seen][::4], y[seen][::4], class_embeddings={c: names[c] for c in range(6)})
    estimator.add_class_embeddings({6: names[6]})
    assert 6 in estimator.classes_ and estimator.shot_counts_[estimator.classes_ == 6] == 0
    assert (estimator.predict(x[y == 6]) == 6).mean() > 2 / 7  # twice chance among 7 classes


def test_without_a_prior_a_class_needs_shots(blobs, rng) -> None:
    x, y = blobs
    model = PrototypeClassifier().fit(x, y)
    with pytest.raises(ValueError, match=r"classes \[99\] have no shots"):
        model.add_class_embeddings({99: x[0]})


def test_names_lift_one_shot_accuracy(rng) -> None:
    x, y = make_blobs(rng, n_classes=20, per_class=30, dim=32, spread=2.5)
    names = names_of(x, y, rng)
    one = np.array([np.flatnonzero(y == c)[0] for c in range(20)])
    rest = np.setdiff1d(np.arange(len(y)), one)
    plain = PrototypeClassifier(normalization="cl2n").fit(x[one], y[one]).score(x[rest], y[rest])
    named = AutoClassifier().fit(x[one], y[one], class_embeddings=names)
    assert named.selection_["how"] == "closed form" and named.chosen_ == "named-linear"
    assert named.score(x[rest], y[rest]) > plain


@pytest.mark.parametrize(
    "method", ["prototypes", "named-prototypes", "linear", "named-linear", "auto", "mahalanobis"]
)
def test_every_method_saves_and_loads_identically(method, blobs, rng, tmp_path: Path) -> None:
    x, y = blobs
    labels = np.array([f"intent_{c}" for c in y])
    names = {f"intent_{c}": v for c, v in names_of(x, y, rng).items()}
    model = create_estimator(method).fit(x[::3], labels[::3], class_embeddings=names)
    model.save(tmp_path / "m")
    loaded = load_estimator(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-12)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["method"] == model.method
    loaded.remove_classes(["intent_0"])
    assert "intent_0" not in loaded.classes_ and len(loaded.classes_) == 11


@pytest.mark.parametrize("method", ["prototypes", "linear", "auto", "mahalanobis"])
def test_each_class_records_when_it_last_changed(method, blobs, rng, tmp_path: Path) -> None:
    x, y = blobs
    before = time.time()
    model = create_estimator(method).fit(x[::3], y[::3])
    fitted = model.updated_.copy()
    assert fitted.shape == (12,) and (fitted >= before).all() and (fitted <= time.time()).all()
    time.sleep(0.01)
    model.partial_fit(x[1:2], y[1:2])  # one shot of one class
    changed = model.updated_ != fitted
    assert (
        changed.tolist() == (model.classes_ == y[1]).tolist()
        and model.updated_.max() > fitted.max()
    )
    model.add_class_embeddings({y[4]: x[0]})  # a name for another class
    assert model.updated_[model.classes_ == y[4]][0] == model.updated_.max()
    model.remove_classes([y[1]])
    assert len(model.updated_) == len(model.classes_) == 11
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(load_estimator(tmp_path / "m").updated_, model.updated_)


def test_loading_the_wrong_kind_names_the_way(blobs, tmp_path: Path) -> None:
    x, y = blobs
    LinearClassifier().fit(x, y).save(tmp_path / "m")
    with pytest.raises(ValueError, match="holds a 'linear' model, not 'prototypes'"):
        PrototypeClassifier.load(tmp_path / "m")


def test_a_format_1_folder_is_read_as_plain_prototypes(blobs, tmp_path: Path) -> None:
    x, y = blobs
    PrototypeClassifier("cosine").fit(x, y).save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    del config["method"], config["params"]["prior_weight"]
    path.write_text(json.dumps({**config, "format_version": 1}))
    model = load_estimator(tmp_path / "m")
    assert isinstance(model, PrototypeClassifier) and model.prior_weight == 0.0
    assert model.metric == "cosine"


def test_bad_class_embeddings_are_refused(blobs) -> None:
    x, y = blobs
    with pytest.raises(ValueError, match="finite vectors of 16 features"):
        LinearClassifier().fit(x, y, class_embeddings={0: np.ones(3)})
    with pytest.raises(ValueError, match="finite vectors"):
        LinearClassifier().fit(x, y, class_embeddings={0: np.full(16, np.nan)})
    with pytest.raises(ValueError, match="unknown method 'knn'"):
        create_estimator("knn")


def test_the_head_beats_prototypes_where_classes_are_not_round(rng) -> None:
    """Elongated classes: a fitted head separates them where class means alone do not."""
    n, d = 200, 2
    stretch = np.diag([6.0, 0.3])
    x = np.concatenate([rng.normal(size=(n, d)) @ stretch + [0, m] for m in (0.0, 1.2)])
    y = np.repeat([0, 1], n)
    train = rng.permutation(2 * n)[:40]
    test = np.setdiff1d(np.arange(2 * n), train)
    protos = PrototypeClassifier(normalization="none").fit(x[train], y[train])
    head = LinearClassifier(normalization="none", penalty=1e-3).fit(x[train], y[train])
    assert head.score(x[test], y[test]) > protos.score(x[test], y[test]) + 0.05


@pytest.mark.parametrize("cls", [LinearClassifier, AutoClassifier, PrototypeClassifier])
def test_a_failed_update_changes_nothing(cls, blobs) -> None:
    x, y = blobs
    model = cls().fit(x[::2], y[::2])
    before = model.predict_proba(x)
    with pytest.raises(ValueError, match="finite vectors"):
        model.partial_fit(x[:3], [99, 99, 99], class_embeddings={99: np.ones(3)})
    if cls is PrototypeClassifier:  # no prior: a class from its name alone is refused
        with pytest.raises(ValueError, match=r"classes \[98\] have no shots"):
            model.add_class_embeddings({98: x[0]})
    with pytest.raises(TypeError, match="new labels are of type"):
        model.partial_fit(x[:1], ["text"])
    assert 99 not in model.classes_ and 98 not in model.classes_
    np.testing.assert_array_equal(model.predict_proba(x), before)


def test_auto_keeps_working_when_only_named_classes_remain(rng) -> None:
    centres = rng.normal(size=(3, 6)) * 3
    model = AutoClassifier().fit(
        centres[1] + rng.normal(size=(3, 6)), ["b"] * 3,
        class_embeddings={"a": centres[0], "b": centres[1], "c": centres[2]},
    )  # fmt: skip
    model.remove_classes(["b"])
    assert model.predict(centres[[0, 2]]).tolist() == ["a", "c"]


def test_a_fixed_centre_stays_fixed_after_loading(blobs, tmp_path: Path) -> None:
    x, y = blobs
    centre = x.mean(0) + 1.0
    model = LinearClassifier(center=centre).fit(x[::2], y[::2])
    model.save(tmp_path / "m")
    loaded = load_estimator(tmp_path / "m")
    for m in (model, loaded):
        m.partial_fit(x[1::4], y[1::4])
        np.testing.assert_array_equal(m.center_, centre)
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-12)


def test_class_embeddings_must_be_a_mapping_of_the_classes_kind(blobs) -> None:
    x, y = blobs
    labels = np.array([f"c{v}" for v in y])
    with pytest.raises(TypeError, match="must map each class label"):
        LinearClassifier().fit(x, labels, class_embeddings=x[:12])
    with pytest.raises(TypeError, match="new labels are of type"):
        LinearClassifier().fit(x, labels, class_embeddings={3: x[0]})


@pytest.mark.parametrize(
    ("estimator", "method"),
    [
        (PrototypeClassifier("cosine", normalization="cl2n"), "prototypes"),
        (PrototypeClassifier(normalization="none"), "prototypes"),
        (LinearClassifier(), "linear"),
        (MahalanobisClassifier(), "mahalanobis"),
        (AutoClassifier(), "auto"),
    ],
    ids=["prototypes-cosine-cl2n", "prototypes", "linear", "mahalanobis", "auto"],
)
def test_the_evaluators_nll_and_ece_are_the_estimators_logits_at_the_default_temperature(
    estimator, method, blobs
) -> None:
    """The evaluator's logits are the estimator's scores at the method's default temperature
    (a fitted estimator then refines its temperature on its own shots): the same NLL and ECE."""
    from protoshot import EpisodeSampler
    from protoshot.evaluation import evaluate_episodes
    from protoshot.maths.distances import default_temperature
    from protoshot.methods import create_method
    from protoshot.scoring import expected_calibration_error

    x, y = blobs
    episodes = EpisodeSampler(y, n_way=4, n_shot=5, n_query=6, n_episodes=1, seed=5).sample()
    support, query = episodes.support[0], episodes.query[0]
    estimator.fit(x[support.reshape(-1)], np.repeat(np.arange(4), 5))
    params = estimator.get_params()
    metric, norm = params.get("metric", "sqeuclidean"), params["normalization"]
    chosen = getattr(estimator, "chosen_", method)
    head = "linear" in chosen
    scores = torch.from_numpy(estimator.decision_function(x[query.reshape(-1)]))
    proba = torch.softmax(scores / (1.0 if head else default_temperature(metric, norm)), -1).numpy()
    truth = np.repeat(np.arange(4), 6)
    grid = {"normalizations": [norm], "metrics": [metric]}
    result = evaluate_episodes(
        x, episodes, methods=[create_method(method, **grid)], dtype="float64"
    ).results[0]
    assert result.nll == pytest.approx(-np.log(proba[np.arange(24), truth]).mean(), rel=1e-6)
    assert result.ece == pytest.approx(expected_calibration_error(proba, truth), abs=1e-6)


def test_a_saved_auto_model_is_restored_not_refitted(rng, tmp_path: Path) -> None:
    from tests.test_store_validation import edit_config, rewrite_arrays

    d = 8  # elongated classes: cross-validation picks the fitted head
    stretch = np.diag([6.0] + [0.3] * (d - 1))
    shifts = [np.array([0, 1.2 * m, m % 2] + [0] * (d - 3)) for m in range(4)]
    x = np.concatenate([rng.normal(size=(10, d)) @ stretch + shift for shift in shifts])
    y = np.repeat(np.arange(4), 10)
    model = AutoClassifier(normalization="none").fit(x, y)
    assert model.chosen_ == "linear"
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(
        load_estimator(tmp_path / "m").predict_proba(x), model.predict_proba(x)
    )
    # the saved head is what answers: scaled on disk, the answers change
    rewrite_arrays(tmp_path / "m", lambda a: a.__setitem__("chosen.coef", 3 * a["chosen.coef"]))
    scaled = load_estimator(tmp_path / "m").predict_proba(x)
    assert not np.allclose(scaled, model.predict_proba(x))
    # a folder written before the head was kept is refitted, to the same model
    rewrite_arrays(
        tmp_path / "m", lambda a: [a.pop(k) for k in ("chosen.coef", "chosen.intercept")]
    )
    edit_config(tmp_path / "m", lambda c: c["state"].pop("chosen_state"))
    np.testing.assert_allclose(
        load_estimator(tmp_path / "m").predict_proba(x), model.predict_proba(x), atol=1e-12
    )
    edit_config(tmp_path / "m", lambda c: c["state"].__setitem__("chosen_state", {}))
    with pytest.raises(ValueError, match="the saved head is missing"):
        load_estimator(tmp_path / "m")
