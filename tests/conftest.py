"""Shared fixtures: a seeded generator, Gaussian-blob embeddings and the naive reference."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("protoshot", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("protoshot")

DATA_DIR = Path(
    os.environ.get(
        "PROTOSHOT_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
# the library never guesses a data folder: tests that rely on the default find the shared copy
os.environ.setdefault("PROTOSHOT_DATA_DIR", str(DATA_DIR))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def make_blobs(
    rng: np.random.Generator,
    n_classes: int = 12,
    per_class: int = 20,
    dim: int = 16,
    spread: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: class means on a sphere of radius 3 plus isotropic noise; float64."""
    means = rng.normal(size=(n_classes, dim))
    means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True)
    x = means[:, None] + spread * rng.normal(size=(n_classes, per_class, dim))
    # a shared offset makes centring matter, as with real (non-centred) embeddings
    x += rng.normal(size=dim)
    return x.reshape(-1, dim), np.repeat(np.arange(n_classes), per_class)


@pytest.fixture
def blobs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(rng)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the session: the real models embed each test text once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def banking_table(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """BANKING77's test split, 12 intents x 40 texts, embedded by the bundled MiniLM (Parquet)."""
    from protoshot.data import Samples, load_source
    from protoshot.pipeline import embed_samples, embedder_for

    samples = load_source("banking77:test", root=DATA_DIR)
    keep = np.isin(samples.labels, np.unique(samples.labels)[:12])
    subset = Samples(
        [item for item, k in zip(samples.items, keep, strict=True) if k],
        samples.labels[keep],
        samples.ids[keep],
        samples.modality,
    )
    table, _ = embed_samples(subset, embedder_for("minilm"), cache=cache_dir)
    return table.save(tmp_path_factory.mktemp("tables") / "banking12.parquet")
