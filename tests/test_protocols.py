"""The all-class K-shot protocol and Omniglot's 20 runs, against naive implementations."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from protoshot import METRICS, NORMALIZATIONS
from protoshot.evaluation.protocols import all_class_kshot, omniglot_runs, read_omniglot_runs
from tests.conftest import DATA_DIR, make_blobs
from tests.reference import naive_predict


def naive_all_class(train, y_train, test, y_test, k, seeds_support, **kwargs) -> np.ndarray:
    """One seed at a time: the support indices per seed, then the naive predictor."""
    classes = np.unique(y_train)
    accs = []
    for support in seeds_support:  # [C, K_max]
        idx = support[:, :k].reshape(-1)
        lab = torch.as_tensor(np.repeat(np.arange(len(classes)), k))
        pred = naive_predict(torch.as_tensor(train[idx]), lab, torch.as_tensor(test), **kwargs)
        accs.append(np.mean(classes[pred.numpy()] == y_test))
    return np.array(accs)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_all_class_kshot_matches_naive(normalization: str, rng) -> None:
    from protoshot import EpisodeSampler

    x, y = make_blobs(rng, n_classes=7, per_class=30, dim=8)
    labels = np.array([f"intent{i}" for i in range(7)])[y]
    train, test = np.arange(len(y)) % 3 != 0, np.arange(len(y)) % 3 == 0
    grid = all_class_kshot(
        x[train], labels[train], x[test], labels[test], shots=(1, 4), n_seeds=6, seed=3,
        metrics=METRICS, normalizations=[normalization],
    )  # fmt: skip
    support = EpisodeSampler(labels[train], n_way="all", n_shot=4, n_query=1, n_episodes=6, seed=3)
    seeds_support = support.sample().support
    assert len(grid) == 2 * len(METRICS)
    for r in grid:
        ref = naive_all_class(
            x[train], labels[train], x[test], labels[test], r.config["n_shot"], seeds_support,
            metric=r.config["metric"], normalization=normalization,
        )  # fmt: skip
        np.testing.assert_allclose(r.per_episode, ref)
        assert r.n_episodes == 6 and r.config["n_way"] == 7


def test_all_class_kshot_errors(rng) -> None:
    x, y = make_blobs(rng, n_classes=3, per_class=10, dim=4)
    with pytest.raises(ValueError, match=r"test classes \[7\] have no examples in the train split"):
        all_class_kshot(x, y, x[:2], np.array([7, 0]), shots=(1,))
    with pytest.raises(ValueError, match=r"class 0 has 10 samples, but n_shot \+ n_query = 11"):
        all_class_kshot(x, y, x, y, shots=(10,))
    with pytest.raises(
        ValueError, match="test embeddings has 3 features, but train embeddings has 4"
    ):
        all_class_kshot(x, y, x[:, :3], y)


def _write_runs_zip(path: Path, rng: np.random.Generator, n_runs: int = 3, n_way: int = 4) -> None:
    """A miniature all_runs.zip in the original layout, with tiny random PNGs."""
    from PIL import Image

    with zipfile.ZipFile(path, "w") as z:
        for r in range(1, n_runs + 1):
            perm = rng.permutation(n_way)
            lines = []
            for i in range(n_way):
                base = rng.integers(0, 2, size=(6, 6), dtype=np.uint8) * 255
                noisy = base.copy()
                noisy[rng.integers(0, 6), rng.integers(0, 6)] ^= 255
                for name, img in (
                    (f"training/class{i + 1:02d}.png", base),
                    (f"test/item{perm[i] + 1:02d}.png", noisy),
                ):
                    buf = Path(path.parent / "tmp.png")
                    Image.fromarray(img).save(buf)
                    z.write(buf, f"run{r:02d}/{name}")
                lines.append(
                    f"run{r:02d}/test/item{perm[i] + 1:02d}.png run{r:02d}/training/class{i + 1:02d}.png"
                )
            z.writestr(f"run{r:02d}/class_labels.txt", "\n".join(sorted(lines)) + "\n")


def _pixels(paths: list[str]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p), dtype=np.float32).ravel() for p in paths])


def test_omniglot_runs_match_naive(tmp_path: Path, rng) -> None:
    zip_path = tmp_path / "all_runs.zip"
    _write_runs_zip(zip_path, rng)
    result = omniglot_runs(zip_path, _pixels)
    # naive: per run, per test image, the nearest training image by squared distance
    runs = read_omniglot_runs(zip_path, tmp_path / "x")
    errors = []
    for tests, trains in runs:
        train_set = sorted(set(trains))
        t, s = _pixels([str(p) for p in tests]), _pixels([str(p) for p in train_set])
        nearest = ((t[:, None] - s[None]) ** 2).sum(-1).argmin(1)
        errors.append(np.mean([train_set[j] != trains[i] for i, j in enumerate(nearest)]))
    np.testing.assert_allclose(result.per_run, errors)
    assert result.error_rate == pytest.approx(np.mean(errors))
    assert "3 runs" in str(result) and result.to_dict()["config"]["n_way"] == 4


def test_the_real_runs_file_has_twenty_20_way_runs(tmp_path: Path) -> None:
    zip_path = DATA_DIR / "omniglot" / "one-shot-classification" / "all_runs.zip"
    if not zip_path.exists():
        pytest.skip(f"{zip_path} not present")
    runs = read_omniglot_runs(zip_path, tmp_path)
    assert len(runs) == 20
    assert all(len(tests) == 20 and len(set(trains)) == 20 for tests, trains in runs)


def test_omniglot_runs_bad_zip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read the Omniglot runs"):
        omniglot_runs(bad, _pixels)
