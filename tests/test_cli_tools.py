"""protoshot models / info / cache end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import protoshot.cli._commands  # noqa: F401  (registers the commands)
from protoshot.cli import app
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_models_lists_specs_and_what_is_missing() -> None:
    import importlib.util

    code, out, _ = run("models", "--json")
    assert code == 0
    rows = {r["spec"]: r for r in json.loads(out)}
    assert {"minilm", "efficientnet-lite0", "st:<name-or-path>", "timm:<name>"} <= set(rows)
    assert rows["minilm"]["missing_extras"] == []  # bundled
    timm_missing = importlib.util.find_spec("timm") is None
    assert (rows["timm:<name>"]["missing_extras"] == ["timm"]) == timm_missing
    code, out, _ = run("models")
    assert code == 0 and "minilm" in out and "embedders (--model)" in out


@pytest.mark.slow
def test_info_reads_a_folder_without_its_embedder(cache_dir: Path, tmp_path: Path) -> None:
    model = FewShotModel(embedder_for("minilm"), cache=cache_dir)
    model.fit(["card lost", "lost my card", "hello there", "hi"], ["lost_card"] * 2 + ["greet"] * 2)
    model.calibrate_on_shots()
    model.save(tmp_path / "m")
    code, out, err = run("info", str(tmp_path / "m"), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["format_version"] == 3 and info["shots"] == 4 and info["journal_bytes"] == 0
    fitted = model.class_updated()["greet"].isoformat(timespec="seconds")
    assert info["classes"] == [
        {"label": "greet", "shots": 2, "named": True, "updated": fitted},
        {"label": "lost_card", "shots": 2, "named": True, "updated": fitted},
    ]
    assert info["embedder"]["spec"] == "minilm" and info["embedder"]["dim"] == 384
    assert info["rejection"]["threshold"] == model.threshold
    assert info["method"].startswith("auto")
    code, out, _ = run("info", str(tmp_path / "m"))
    assert code == 0 and "rejection below similarity" in out and "lost_card (2)" in out
    assert f"last updated: {fitted}" in out
    code, _, err = run("info", str(tmp_path))
    assert code == 1 and "is not a model folder" in err


def test_compact_folds_the_journal_into_a_snapshot(tmp_path: Path) -> None:
    from protoshot import PrototypeClassifier
    from protoshot.estimators import load_estimator

    rng = np.random.default_rng(0)
    PrototypeClassifier().fit(rng.normal(size=(6, 4)), list("aabbcc")).save(tmp_path / "m")
    assert run("remove", str(tmp_path / "m"), "b")[0] == 0  # a journal entry
    info = json.loads(run("info", str(tmp_path / "m"), "--json")[1])
    assert info["journal_bytes"] > 0
    before = load_estimator(tmp_path / "m")
    code, _, err = run("compact", str(tmp_path / "m"))
    assert code == 0 and "1 journaled changes folded into a new snapshot" in err, err
    info = json.loads(run("info", str(tmp_path / "m"), "--json")[1])
    assert info["journal_bytes"] == 0 and [c["label"] for c in info["classes"]] == ["a", "c"]
    after = load_estimator(tmp_path / "m")
    np.testing.assert_array_equal(after.sums_, before.sums_)
    code, _, err = run("compact", str(tmp_path))
    assert code == 1 and "config.json is missing" in err


def test_cache_reports_and_clears_one_model(tmp_path: Path) -> None:
    from protoshot.embedders import CallableEmbedder, embed

    ones = CallableEmbedder(
        lambda xs: np.ones((len(xs), 3), np.float32), name="ones", modality="text"
    )
    twos = CallableEmbedder(
        lambda xs: np.full((len(xs), 5), 2, np.float32), name="twos", modality="text"
    )
    embed(["a", "b", "c"], ones, cache=tmp_path)
    embed(["a"], twos, cache=tmp_path)
    code, out, _ = run("cache", "--cache-dir", str(tmp_path), "--json")
    assert code == 0
    report = json.loads(out)
    assert {m["spec"]: m["entries"] for m in report["models"]} == {
        "callable:ones": 3,
        "callable:twos": 1,
    }
    assert report["bytes"] > 0 and report["deleted"] is None
    code, out, _ = run("cache", "--cache-dir", str(tmp_path), "--clear", "callable:ones", "--json")
    assert code == 0 and json.loads(out)["deleted"] == 3
    assert [m["spec"] for m in json.loads(out)["models"]] == ["callable:twos"]
    code, out, _ = run("cache", "--cache-dir", str(tmp_path))
    assert code == 0 and "twos" in out


def test_serve_refuses_a_port_out_of_range_in_one_line() -> None:
    code, _, err = run("serve", "some-folder", "--port", "99999")
    assert code == 2 and "less than or equal to 65535" in err and "Traceback" not in err
