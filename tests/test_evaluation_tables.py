"""``evaluate_table``: class selection, centring and protocol dispatch, as the CLI uses them."""

from __future__ import annotations

import numpy as np
import pytest

from protoshot import evaluate_grid
from protoshot.data import EmbeddingTable
from protoshot.episodes import split_classes
from protoshot.evaluation.protocols import all_class_kshot
from protoshot.evaluation.tables import evaluate_table
from protoshot.labels import labels_like
from tests.conftest import make_blobs

SETTINGS = {"shots": (1, 3), "n_query": 4, "n_episodes": 40, "seed": 2}


@pytest.fixture
def table(rng) -> EmbeddingTable:
    x, y = make_blobs(rng, n_classes=10, per_class=12)
    return EmbeddingTable.from_arrays(x, y, model="blobs", fingerprint="f1")


def _means(grid) -> list[float]:
    return [r.mean for r in grid]


def test_episodic_equals_evaluate_grid(table: EmbeddingTable) -> None:
    expected = evaluate_grid(table.vectors, table.labels, **SETTINGS)
    assert _means(evaluate_table(table, **SETTINGS)) == _means(expected)


def test_classes_given_as_text_are_converted_to_the_labels_type(table: EmbeddingTable) -> None:
    got = evaluate_table(table, classes=["0", "1", "2", "3", "4"], **SETTINGS)
    expected = evaluate_grid(table.vectors, table.labels, classes=[0, 1, 2, 3, 4], **SETTINGS)
    assert _means(got) == _means(expected)


def test_a_split_with_the_base_centre(table: EmbeddingTable) -> None:
    parts = split_classes(table.classes, (0.5, 0.0, 0.5), seed=1)
    base_mean = table.vectors[np.isin(table.labels, parts["base"])].mean(0)
    got = evaluate_table(
        table, split="novel", split_fractions=(0.5, 0.0, 0.5), split_seed=1, center="base",
        n_way=5, **SETTINGS,
    )  # fmt: skip
    expected = evaluate_grid(
        table.vectors, table.labels, classes=parts["novel"].tolist(), center=base_mean,
        n_way=5, **SETTINGS,
    )  # fmt: skip
    assert _means(got) == _means(expected)


def test_all_class_on_a_test_table(table: EmbeddingTable, rng) -> None:
    x, y = make_blobs(np.random.default_rng(5), n_classes=10, per_class=6)
    test = EmbeddingTable.from_arrays(x, y, model="blobs", fingerprint="f1")
    got = evaluate_table(table, protocol="all-class", test=test, shots=(2,), n_episodes=3)
    expected = all_class_kshot(
        table.vectors, table.labels, test.vectors, test.labels, shots=(2,), n_seeds=3,
        metrics=("sqeuclidean", "cosine"), normalizations=("none", "l2", "cl2n"),
    )  # fmt: skip
    assert _means(got) == _means(expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"protocol": "loo"}, "unknown protocol 'loo'"),
        ({"protocol": "all-class"}, "needs a test table"),
        ({"classes": [0, 1], "split": "novel"}, "not both"),
        ({"split": "train"}, "unknown split 'train'"),
        ({"center": "base"}, "needs a split"),
        ({"center": "middle"}, "unknown centre 'middle'"),
        ({"classes": ["zero"]}, "class 'zero' is not an integer"),
    ],
)
def test_bad_options_are_named(table: EmbeddingTable, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_table(table, **options)


def test_tables_of_other_models_are_refused(table: EmbeddingTable) -> None:
    other = EmbeddingTable.from_arrays(table.vectors, table.labels, model="x", fingerprint="f2")
    with pytest.raises(ValueError, match="another model"):
        evaluate_table(table, protocol="all-class", test=other)
    with pytest.raises(ValueError, match="another model"):
        evaluate_table(table, center=other)
    one = EmbeddingTable.from_arrays(np.ones((3, 2)), ["a"] * 3)
    with pytest.raises(ValueError, match="needs at least 2"):
        evaluate_table(one)


def test_labels_like_follows_the_classes_type() -> None:
    assert labels_like(["3", 4, " -1"], np.array([1, 2])) == [3, 4, -1]
    assert labels_like(["3"], np.array(["a"])) == ["3"]
    with pytest.raises(ValueError, match="'x' is not an integer"):
        labels_like(["x"], np.array([1]))
