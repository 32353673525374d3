"""The geometry report: each measure against a direct computation, and on spaces with known shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import skew
from sklearn.neighbors import NearestNeighbors

from protoshot.geometry import inspect_geometry
from tests.conftest import make_blobs


def test_hubness_is_the_skew_of_k_occurrence(blobs) -> None:
    x, y = blobs
    report = inspect_geometry(x, y, normalizations=["none"], k=5)
    neighbours = NearestNeighbors(n_neighbors=6).fit(x).kneighbors(x, return_distance=False)
    occurrence = np.bincount(neighbours[:, 1:].ravel(), minlength=len(x))
    assert abs(report.measures["none"]["hubness"] - skew(occurrence)) < 1e-9


def test_centring_removes_a_common_direction(rng) -> None:
    x, y = make_blobs(rng, n_classes=8, per_class=30, dim=32)
    x = x + 20.0  # every vector shares one large direction
    report = inspect_geometry(x, y, normalizations=["l2", "cl2n"])
    assert report.measures["l2"]["mean_cosine"] > 0.9
    assert abs(report.measures["cl2n"]["mean_cosine"]) < 0.05


def test_effective_rank_counts_the_directions_that_carry_variance(rng) -> None:
    basis = rng.normal(size=(3, 40))
    x = rng.normal(size=(300, 3)) @ basis
    y = np.arange(300) % 4
    assert inspect_geometry(x, y, normalizations=["none"]).measures["none"]["effective_rank"] < 3.01
    wide = rng.normal(size=(300, 40))
    assert (
        inspect_geometry(wide, y, normalizations=["none"]).measures["none"]["effective_rank"] > 30
    )


def test_separation_norms_and_confusable_pairs(rng) -> None:
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [10.5, 0.0]])
    y = np.repeat(np.arange(3), 50)
    x = centres[y] + 0.1 * rng.normal(size=(150, 2))
    m = inspect_geometry(x, [f"c{v}" for v in y], normalizations=["none"]).measures["none"]
    assert m["confusable_pairs"][0] == ["c1", "c2"]
    assert m["within_between"] < 0.05
    assert m["prototype_norm_spread"] > 0.5  # norms 0, 10, 10.5


def test_report_outputs_and_bad_input(blobs, tmp_path: Path) -> None:
    x, y = blobs
    report = inspect_geometry(x, y, max_samples=100)
    assert set(json.loads(json.dumps(report.to_dict()))["normalizations"]) == {"none", "l2", "cl2n"}
    assert "hubness" in str(report)
    out = report.plot(tmp_path / "g.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least 2 classes"):
        inspect_geometry(x[:5], [0] * 5)
    with pytest.raises(ValueError, match="rows but labels"):
        inspect_geometry(x, y[:-1])
    with pytest.raises(ValueError, match=r"\.png path"):
        report.plot(tmp_path / "g.jpg")


def test_confusable_pairs_with_two_classes_and_identical_means(rng) -> None:
    x = rng.normal(size=(40, 3))
    y = np.repeat(["a", "b"], 20)
    m = inspect_geometry(x, y, normalizations=["none"], k=3).measures["none"]
    assert m["confusable_pairs"] == [["a", "b"]]
    same = np.concatenate([x[:20], x[:20]])  # two classes with the same mean
    z = np.concatenate([same, x[:20] + 50.0])
    labels = np.repeat(["a", "b", "c"], 20)
    pairs = inspect_geometry(z, labels, normalizations=["none"], k=3).measures["none"]
    assert pairs["confusable_pairs"][0] == ["a", "b"]


def test_the_sample_must_exceed_k(blobs) -> None:
    x, y = blobs
    with pytest.raises(ValueError, match="more than k=10 embeddings"):
        inspect_geometry(x, y, max_samples=10)
