"""One validation for class names and labels, in the library, the CLI and the service."""

from __future__ import annotations

import numpy as np
import pytest

from protoshot import PrototypeClassifier
from protoshot.labels import MAX_NAME_LENGTH, check_name, labels_like

X = np.random.default_rng(0).normal(size=(6, 4))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["a", "a\x00"], r"'a\\x00' holds the control character '\\x00'"),  # once merged into "a"
        (["a", " "], "is empty"),
        (["a", "x" * (MAX_NAME_LENGTH + 1)], f"the limit is {MAX_NAME_LENGTH}"),
        (["a", "line\nbreak"], "control character"),
        (["a", "\ud800"], "control character"),  # a lone surrogate
        (["a", ".."], "no URL path can hold it"),  # /v1/classes/.. is /v1
    ],
)
def test_bad_names_are_refused_everywhere_labels_enter(labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        PrototypeClassifier().fit(X[:2], labels)
    model = PrototypeClassifier().fit(X[:2], ["p", "q"])
    with pytest.raises(ValueError, match=message):
        model.partial_fit(X[2:4], labels)
    assert model.classes_.tolist() == ["p", "q"] and model.shot_counts_.tolist() == [1, 1]
    with pytest.raises(ValueError, match=message):
        model.add_class_embeddings({labels[1]: X[5]})


def test_names_are_nfc_so_one_name_is_one_class() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    model = PrototypeClassifier().fit(X[:3], [composed, decomposed, "tea"])
    assert model.classes_.tolist() == [composed, "tea"] and model.shot_counts_.tolist() == [2, 1]
    model.remove_classes([decomposed])
    assert model.classes_.tolist() == ["tea"]
    assert labels_like([decomposed], np.array(["x"])) == [composed]
    assert check_name(decomposed) == composed


def test_a_label_of_another_type_is_an_error_not_a_conversion() -> None:
    text = PrototypeClassifier().fit(X[:2], ["a", "b"])
    with pytest.raises(TypeError, match="new labels are of type int64"):
        text.partial_fit(X[2:3], [5])  # was: a new class "5"
    numbers = PrototypeClassifier().fit(X[:2], [0, 1])
    with pytest.raises(TypeError, match="new labels are of type bool"):
        numbers.partial_fit(X[2:3], [True])  # was: a shot of class 1
    assert numbers.shot_counts_.tolist() == [1, 1] and text.classes_.tolist() == ["a", "b"]


def test_embeddings_too_large_to_compare_are_refused_not_nan() -> None:
    with pytest.raises(ValueError, match="too large to compare"):
        PrototypeClassifier().fit(X[:2] * 1e200, ["a", "b"])  # was: NaN probabilities
    model = PrototypeClassifier().fit(X[:2], ["a", "b"])
    with pytest.raises(ValueError, match="too large to compare"):
        model.predict_proba(X[2:3] * 1e200)


def test_the_length_limit_counts_the_stored_nfc_form_and_bools_round_trip(tmp_path) -> None:
    from protoshot import load_estimator

    grows = "\u0958" * 150  # 150 characters, 300 once normalised (NFC decomposes it)
    model = PrototypeClassifier(prior_weight=1.0).fit(X[:2], ["a", "b"])
    with pytest.raises(ValueError, match="has 300 characters; the limit is 200"):
        model.add_class_embeddings({grows: X[3]})
    flags = PrototypeClassifier().fit(X[:4], [True, False, True, False])
    flags.save(tmp_path / "m")
    assert load_estimator(tmp_path / "m").classes_.tolist() == [False, True]
