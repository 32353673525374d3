"""Batched evaluation against the naive tutorial loop, and the result objects."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protoshot import (
    METRICS,
    NORMALIZATIONS,
    EpisodeSampler,
    evaluate,
    evaluate_grid,
    mean_ci,
)
from protoshot.evaluation import api, evaluate_episodes
from protoshot.kernels import RowReader
from tests.conftest import make_blobs
from tests.reference import naive_accuracies


@pytest.fixture(params=["fused", "torch"])
def kernel(request, monkeypatch) -> str:
    """Run a test with the CPU's fused kernel, then with the torch path that GPUs take."""
    if request.param == "torch":
        monkeypatch.setattr(api, "RowReader", functools.partial(RowReader, fused=False))
    return str(request.param)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("metric", METRICS)
def test_batched_matches_naive_loop_exactly(
    metric: str, normalization: str, blobs, kernel: str
) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=5, n_shot=3, n_query=4, n_episodes=60, seed=1).sample()
    got = evaluate_episodes(
        x,
        episodes,
        metrics=[metric],
        normalizations=[normalization],
        dtype="float64",
        chunk_size=7,
    ).results[0]
    ref = naive_accuracies(
        x, episodes.support, episodes.query, metric=metric, normalization=normalization
    )
    np.testing.assert_array_equal(got.per_episode, ref)
    assert 0.2 < got.mean < 1.0  # informative data: neither chance nor trivially perfect


def test_unbalanced_supports_match_naive_loop(blobs, kernel: str) -> None:
    x, y = blobs
    episodes = EpisodeSampler(y, n_way=4, n_shot=(1, 5), n_query=3, n_episodes=50, seed=2).sample()
    assert episodes.n_support is not None and len(np.unique(episodes.n_support)) > 1
    for norm in NORMALIZATIONS:
        got = evaluate_episodes(x, episodes, normalizations=[norm], dtype="float64").results[0]
        ref = naive_accuracies(
            x, episodes.support, episodes.query, episodes.n_support, normalization=norm
        )
        np.testing.assert_array_equal(got.per_episode, ref)
    assert got.config["n_shot"] == f"{episodes.n_support.min()}-5"


def test_fixed_center_matches_naive_loop(blobs, kernel: str) -> None:
    x, y = blobs
    center = x[y < 4].mean(0)
    episodes = EpisodeSampler(y, n_shot=2, n_query=3, n_episodes=40, classes=range(4, 12)).sample()
    got = evaluate_episodes(x, episodes, normalizations=["cl2n"], center=center, dtype="float64")

    ref = naive_accuracies(
        x, episodes.support, episodes.query, normalization="cl2n", center=torch.as_tensor(center)
    )
    np.testing.assert_array_equal(got.results[0].per_episode, ref)


def test_float32_agrees_with_float64(blobs) -> None:
    x, y = blobs
    kwargs = {"n_shot": 2, "n_query": 5, "n_episodes": 200, "normalization": "cl2n"}
    a = evaluate(x.astype(np.float32), y, **kwargs)
    b = evaluate(x, y, dtype="float64", **kwargs)
    assert np.mean(a.per_episode != b.per_episode) < 0.02


@given(st.integers(1, 40), st.integers(1, 30))
def test_chunking_does_not_change_results(chunk_size: int, n_episodes: int) -> None:
    x, y = make_blobs(np.random.default_rng(5), n_classes=6, per_class=8, dim=4)
    episodes = EpisodeSampler(
        y, n_way=3, n_shot=2, n_query=2, n_episodes=n_episodes, seed=9
    ).sample()
    kwargs = {"metrics": METRICS, "normalizations": NORMALIZATIONS, "dtype": "float64"}
    whole = evaluate_episodes(x, episodes, chunk_size=chunk_size, **kwargs)
    for i in range(len(episodes)):  # one episode at a time
        single = evaluate_episodes(x, episodes[i : i + 1], **kwargs)
        for a, b in zip(whole.results, single.results, strict=True):
            assert a.per_episode[i] == b.per_episode[0]


def test_grid_uses_the_same_episodes_for_every_configuration(blobs) -> None:
    x, y = blobs
    grid = evaluate_grid(x, y, shots=(1, 3), n_query=4, n_episodes=80, seed=4, dtype="float64")
    assert len(grid) == 2 * 2 * 3
    # the 1-shot cell equals evaluating the first shot of the 3-shot episodes one config at a time
    episodes = EpisodeSampler(y, n_shot=3, n_query=4, n_episodes=80, seed=4).sample()
    for r in grid:
        k = r.config["n_shot"]
        sub = type(episodes)(episodes.support[:, :, :k], episodes.query, episodes.ways)
        ref = naive_accuracies(
            x,
            sub.support,
            sub.query,
            metric=r.config["metric"],
            normalization=r.config["normalization"],
        )
        np.testing.assert_array_equal(r.per_episode, ref)
    best = grid.best()
    assert best.mean == max(r.mean for r in grid)
    assert "*" in str(grid) and "acc %" in str(grid)


def test_result_objects_print_and_serialise(blobs) -> None:
    x, y = blobs
    result = evaluate(x, y, n_way=3, n_shot=1, n_query=2, n_episodes=30)
    assert str(result).startswith(
        "method=prototypes, n_way=3, n_shot=1, n_query=2, normalization=none, metric=sqeuclidean: "
    )
    assert "(95% CI, 30 episodes)" in str(result)
    d = json.loads(json.dumps(result.to_dict(per_episode=True)))
    assert d["n_episodes"] == 30 and len(d["per_episode"]) == 30
    assert set(d) == {
        "mean", "std", "ci95", "n_episodes", "config", "per_episode", "macro_f1", "nll", "ece",
    }  # fmt: skip
    assert 0 < d["macro_f1"] <= 1
    grid = evaluate_grid(
        x, y, shots=(1,), n_query=2, n_episodes=10, metrics=["cosine"], normalizations=["l2"]
    )
    assert json.loads(grid.to_json())["best"]["metric"] == "cosine"


def test_mean_ci_normal_and_t() -> None:
    acc = np.array([0.5, 0.7, 0.6, 0.8])
    mean, std, half = mean_ci(acc)
    assert mean == pytest.approx(0.65)
    assert std == pytest.approx(np.std(acc, ddof=1))
    assert half == pytest.approx(1.959964 * std / 2, rel=1e-5)
    _, _, t_half = mean_ci(acc, method="t")
    assert t_half == pytest.approx(3.182446 * std / 2, rel=1e-5)  # t(0.975, df=3)
    assert math.isnan(mean_ci([0.5])[2])
    with pytest.raises(ValueError, match="unknown ci method 'bootstrap'"):
        mean_ci(acc, method="bootstrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no episodes"):
        mean_ci([])


def test_progress_bar_and_sampler_input(blobs) -> None:
    x, y = blobs
    sampler = EpisodeSampler(y, n_episodes=20, n_query=2)
    result = evaluate_episodes(x, sampler, progress=True)
    assert result.results[0].n_episodes == 20


def test_evaluation_bad_input(blobs) -> None:
    x, y = blobs
    with pytest.raises(ValueError, match="unknown metric 'l1'"):
        evaluate(x, y, metric="l1", n_query=2)
    with pytest.raises(ValueError, match="unknown normalization 'zca'"):
        evaluate_grid(x, y, normalizations=["zca"], n_query=2)
    with pytest.raises(ValueError, match="embeddings have 240 rows but labels have 239"):
        evaluate(x, y[:-1], n_query=2)
    with pytest.raises(ValueError, match="n_way=13 but only 12 classes"):
        evaluate(x, y, n_way=13, n_query=2)
    with pytest.raises(ValueError, match=r"n_shot \+ n_query = 21"):
        evaluate(x, y, n_shot=6, n_query=15)
    with pytest.raises(ValueError, match="contains 1 NaN"):
        bad = x.copy()
        bad[3, 2] = np.nan
        evaluate(bad, y, n_query=2)
    with pytest.raises(ValueError, match="shots must be between 1 and the episodes' 2"):
        evaluate_episodes(
            x, EpisodeSampler(y, n_shot=2, n_query=2, n_episodes=2).sample(), shots=[3]
        )
    with pytest.raises(ValueError, match="out of range for 10 embeddings"):
        evaluate_episodes(x[:10], EpisodeSampler(y, n_query=2, n_episodes=2).sample())
    with pytest.raises(ValueError, match="shots is empty"):
        evaluate_grid(x, y, shots=())
    with pytest.raises(ValueError, match="unknown device 'quantum'"):
        evaluate(x, y, n_query=2, device="quantum")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        evaluate(x, y, n_query=2, dtype="float8")


def test_best_per_shot_and_the_config_fit_reads(blobs) -> None:
    from protoshot.evaluation.reports import chosen_config, report_dict

    x, y = blobs
    grid = evaluate_grid(x, y, shots=(1, 5), n_query=2, n_episodes=20)
    per_shot = grid.best_per_shot()
    for best, k in zip(per_shot, (1, 5), strict=True):
        rows = [r for r in grid if r.config["n_shot"] == k]
        assert best.config["n_shot"] == k and best.mean == max(r.mean for r in rows)
    assert str(grid).count("*") == 2  # one mark per shot count
    report = json.loads(
        json.dumps(report_dict(grid, protocol="episodic", source="x", model=None, fingerprint=None))
    )
    assert report["best_per_shot"] == [r.config for r in per_shot]
    episode_keys = {"n_way", "n_shot", "n_query"}
    for shots, k in ((1, 1), (2.9, 1), (3, 5), (40, 5)):  # nearest shot count, a tie to the larger
        expected = {key: v for key, v in per_shot[k == 5].config.items() if key not in episode_keys}
        assert chosen_config(report, shots) == expected
    old = {key: v for key, v in report.items() if key != "best_per_shot"}
    assert chosen_config(old, 1)["method"] == report["best"]["method"]
    with pytest.raises(ValueError, match="not a `protoshot evaluate --json` report"):
        chosen_config({"results": []}, 1)


@given(st.integers(0, 10_000), st.integers(2, 6), st.integers(1, 40))
@settings(max_examples=40, deadline=None)
def test_episode_macro_f1_matches_sklearn(seed: int, n_way: int, n_query: int) -> None:
    from sklearn.metrics import f1_score

    from protoshot.evaluation.engine import _measures
    from protoshot.scoring import expected_calibration_error

    rng = np.random.default_rng(seed)
    target = torch.as_tensor(rng.integers(0, n_way, (3, n_query)))  # unbalanced, some ways absent
    pred = torch.where(
        torch.as_tensor(rng.random((3, n_query)) < 0.6),
        target,
        torch.as_tensor(rng.integers(0, n_way, (3, n_query))),
    )
    logits = torch.nn.functional.one_hot(pred, n_way).double() * 3 + torch.as_tensor(
        rng.normal(size=(3, n_query, n_way))
    )
    pred = logits.argmax(-1)
    (accuracy, macro, nll, ece), correct, queried = _measures(logits, target, n_way)
    proba = torch.softmax(logits, -1).numpy()
    for e in range(3):
        present = np.unique(target[e].numpy())
        expected = f1_score(
            target[e].numpy(), pred[e].numpy(), labels=present, average="macro", zero_division=0
        )
        assert macro[e].item() == pytest.approx(expected)
        assert accuracy[e].item() == pytest.approx(np.mean(pred[e].numpy() == target[e].numpy()))
        for way in range(n_way):
            mine = target[e].numpy() == way
            assert queried[e, way].item() == mine.sum()
            assert correct[e, way].item() == (pred[e].numpy()[mine] == way).sum()
        truth = target[e].numpy()
        assert nll[e].item() == pytest.approx(-np.mean(np.log(proba[e][np.arange(n_query), truth])))
        assert ece[e].item() == pytest.approx(expected_calibration_error(proba[e], truth))


def test_chosen_config_among_one_embedders_rows() -> None:
    from protoshot.evaluation.reports import chosen_config

    rows = [
        {"method": "linear", "n_way": 5, "n_shot": 5, "normalization": "cl2n", "model": "a"},
        {"method": "prototypes", "n_way": 5, "n_shot": 1, "normalization": "l2", "model": "a"},
        {"method": "auto", "n_way": 5, "n_shot": 1, "normalization": "cl2n", "model": "b"},
    ]
    report = {"schema": "protoshot.evaluate/2", "best_per_shot": rows, "best": rows[0]}
    assert chosen_config(report, 1, "a") == {"method": "prototypes", "normalization": "l2"}
    assert chosen_config(report, 5, "a") == {"method": "linear", "normalization": "cl2n"}
    assert chosen_config(report, 5, "b")["method"] == "auto"
    with pytest.raises(ValueError, match="use a, b, not c: pass --model"):
        chosen_config(report, 5, "c")


def test_per_class_accuracy_counts_every_query_of_every_episode() -> None:
    from protoshot import evaluate_grid

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, 8)) + 6 * np.eye(8)[c] for c in range(6)])
    x[100:120] = x[80:100] + 0.01 * rng.normal(size=(20, 8))  # class 5 a copy of class 4
    labels = np.repeat([f"c{c}" for c in range(6)], 20)
    grid = evaluate_grid(x, labels, n_way=3, shots=[1], n_query=4, n_episodes=50,
                         metrics=["sqeuclidean"], normalizations=["none"])  # fmt: skip
    result = grid.best()
    rows = {r["label"]: r for r in result.per_class()}
    assert sum(r["queries"] for r in rows.values()) == 50 * 3 * 4
    correct = sum(r["accuracy"] * r["queries"] for r in rows.values())
    assert correct == pytest.approx(result.per_episode.sum() * 3 * 4)
    assert [r["label"] for r in result.per_class()][:2] in (["c4", "c5"], ["c5", "c4"])
    assert rows["c0"]["accuracy"] == 1.0
    assert result.to_dict()["per_class"] == result.per_class()
    assert "c5" in str(result.class_table(2).columns[0]._cells)
