"""``protoshot evaluate`` end to end: real MiniLM embeddings of BANKING77, JSON schema, PNG plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

import protoshot.cli._commands  # noqa: F401  (registers the commands)
from protoshot.cli import app
from protoshot.data import EmbeddingTable
from protoshot.evaluation.reports import json_schema

pytestmark = pytest.mark.slow
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_json_output_follows_the_schema(banking_table: Path) -> None:
    code, out, _ = run("evaluate", str(banking_table), "--episodes", "300", "--json")
    assert code == 0
    report = json.loads(out)
    jsonschema.validate(report, json_schema())
    assert len(report["results"]) == 2 * 2 * 3  # shots x metrics x normalisations
    assert report["model"] == "minilm" and report["fingerprint"]
    five_shot = [r["mean"] for r in report["results"] if r["config"]["n_shot"] == 5]
    one_shot = [r["mean"] for r in report["results"] if r["config"]["n_shot"] == 1]
    assert min(five_shot) > max(one_shot) > 0.6  # real embeddings: more shots help


def test_table_output_and_plot(banking_table: Path, tmp_path: Path) -> None:
    from PIL import Image

    plot = tmp_path / "acc.png"
    code, out, err = run(
        "evaluate", str(banking_table), "--episodes", "100", "--shots", "1,2,5",
        "--metrics", "cosine", "--plot", str(plot),
    )  # fmt: skip
    assert code == 0, err
    assert "acc %" in out and "*" in out and "cosine" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = np.asarray(Image.open(plot).convert("L"), dtype=float)
    assert image.shape[0] > 300 and image.shape[1] > 400
    assert image.std() > 10  # lines, labels and bands, not a blank canvas


def test_novel_split_and_base_centre(banking_table: Path) -> None:
    code, out, err = run(
        "evaluate", str(banking_table), "--split", "novel", "--split-fractions", "0.5,0.0,0.5",
        "--center-from", "base", "--normalizations", "cl2n", "--episodes", "50", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert {r["config"]["normalization"] for r in json.loads(out)["results"]} == {"cl2n"}


def test_all_class_protocol(banking_table: Path, tmp_path: Path) -> None:
    table = EmbeddingTable.load(banking_table)
    first = np.zeros(len(table), bool)
    for c in table.classes:  # 20 texts of each class as train, 20 as test
        first[np.flatnonzero(table.labels == c)[:20]] = True
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    for mask, path in ((first, train), (~first, test)):
        EmbeddingTable.from_arrays(
            table.vectors[mask],
            table.labels[mask],
            model=table.model,
            fingerprint=table.fingerprint,
        ).save(path)
    code, out, err = run(
        "evaluate", str(train), "--protocol", "all-class", "--test", str(test), "--shots", "5,10",
        "--episodes", "5", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    jsonschema.validate(report, json_schema())
    assert {r["config"]["n_way"] for r in report["results"]} == {12}
    assert all(r["n_episodes"] == 5 for r in report["results"])
    assert all(0 < r["macro_f1"] <= 1 for r in report["results"])
    for r in report["results"]:  # every test text of every class, once per seed
        assert {c["label"] for c in r["per_class"]} == set(table.classes)
        assert {c["queries"] for c in r["per_class"]} == {5 * int((~first).sum()) // 12}
        hits = sum(c["accuracy"] * c["queries"] for c in r["per_class"])
        assert hits == pytest.approx(r["mean"] * 5 * int((~first).sum()))
        accuracies = [c["accuracy"] for c in r["per_class"]]
        assert accuracies == sorted(accuracies)  # hardest first
    code, out, err = run(
        "evaluate", str(train), "--protocol", "all-class", "--test", str(test), "--shots", "5",
        "--episodes", "2", "--normalizations", "cl2n", "--metrics", "cosine", "--per-class", "3",
    )  # fmt: skip
    assert code == 0 and "macro-F1 %" in out, err  # unbalanced queries: the column is shown
    assert "the 3 hardest of 12 classes" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "manhattan"], "unknown metric 'manhattan'; expected one of"),
        (["--shots", "1,40"], "has 40 samples, but n_shot + n_query = 55 are needed"),
        (["--shots", "one"], "shots must be integers >= 0"),
        (["--plot", "/nonexistent/dir/p.png"], "folder /nonexistent/dir does not exist"),
        (["--protocol", "all-class"], "the all-class protocol needs --test"),
        (["--ways", "13"], "n_way=13 but only 12 classes are available"),
        (["--ways", "0"], "ways must be a positive integer or 'all'"),
        (["--protocol", "episodic,all-class"], "unknown protocol 'episodic,all-class'"),
        (["--classes", "a,b", "--split", "novel"], "give --classes or --split, not both"),
        (["--center-from", "base"], "--center-from base needs --split"),
        (["--split", "novel", "--split-fractions", "0.5,0.5"], "--split-fractions must be three"),
    ],
)
def test_bad_options_give_one_line_errors(
    banking_table: Path, args: list[str], message: str
) -> None:
    code, out, err = run("evaluate", str(banking_table), *args)
    assert code == 1
    assert message in err.replace("\n", " ")
    assert "Traceback" not in err and out == ""


def test_bad_sources_give_one_line_errors(tmp_path: Path) -> None:
    one = tmp_path / "one.parquet"
    EmbeddingTable.from_arrays(np.ones((4, 3)), ["a"] * 4).save(one)
    code, _, err = run("evaluate", str(one))
    assert code == 1 and "has 1 class; evaluation needs at least 2" in err
    csv = tmp_path / "data.csv"
    csv.write_text("sentence,intent\nhello,greet\n")
    code, _, err = run("evaluate", str(csv), "--model", "minilm", "--label-column", "x")
    assert code != 0
    code, _, err = run("evaluate", str(csv))
    assert code == 1 and "pass --model to embed it" in err


def test_console_script_runs(banking_table: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "protoshot", "evaluate", str(banking_table), "--episodes", "20", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout)["schema"] == "protoshot.evaluate/2"


def test_version_and_help_list_every_command() -> None:
    from protoshot import __version__

    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"protoshot {__version__}"
    code, out, _ = run("--help")
    for command in (
        "demo",
        "embed",
        "evaluate",
        "fit",
        "predict",
        "add",
        "remove",
        "calibrate",
        "serve",
    ):
        assert command in out


def test_methods_side_by_side_with_a_zero_shot_row(banking_table: Path) -> None:
    code, out, err = run(
        "evaluate", str(banking_table), "--methods", "prototypes,named-prototypes,linear,auto",
        "--shots", "0,1,5", "--episodes", "40", "--ways", "5", "--queries", "5",
        "--metrics", "sqeuclidean", "--normalizations", "cl2n", "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    rows = {(r["config"]["method"], r["config"]["n_shot"]): r for r in report["results"]}
    assert ("named-prototypes", 0) in rows and ("prototypes", 0) not in rows
    assert ("auto", 0) in rows and ("linear", 0) not in rows
    named = rows["named-prototypes", 1]
    assert named["paired"]["baseline"]["method"] == "prototypes" and named["paired"]["mean"] > 0
    jsonschema.validate(report, json_schema())


def test_inspect_and_evaluate_with_the_geometry_beside(banking_table: Path, tmp_path: Path) -> None:
    code, out, err = run("inspect", str(banking_table), "--json", "--plot", str(tmp_path / "g.png"))
    assert code == 0, err
    report = json.loads(out)
    assert report["n_classes"] == 12 and set(report["normalizations"]) == {"none", "l2", "cl2n"}
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    code, out, err = run(
        "evaluate", str(banking_table), "--methods", "prototypes,mahalanobis,sinkhorn",
        "--episodes", "30", "--queries", "5", "--normalizations", "cl2n", "--inspect",
    )  # fmt: skip
    assert code == 0, err
    assert "hubness" in out and "(transduct" in out
    assert "rows below the line are transductive" in err
    code, out, err = run(
        "evaluate", str(banking_table), "--methods", "sinkhorn", "--episodes", "10",
        "--queries", "5", "--inspect", "--json",
    )  # fmt: skip
    report = json.loads(out)
    jsonschema.validate(report, json_schema())
    assert report["results"][0]["config"]["transductive"] is True
    assert "hubness" in report["geometry"]["normalizations"]["cl2n"]


def test_evaluate_and_inspect_read_named_columns(tmp_path: Path) -> None:
    import csv

    from tests.conftest import DATA_DIR

    with open(DATA_DIR / "banking77" / "banking_data" / "test.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] < "b"][:200]
    path = tmp_path / "odd.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frage", "absicht"])
        writer.writerows([r["text"], r["category"]] for r in rows)
    columns = ("--text-column", "frage", "--label-column", "absicht")
    code, out, err = run(
        "evaluate", str(path), "--model", "minilm", *columns, "--ways", "3", "--shots", "1",
        "--queries", "3", "--episodes", "20", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["results"][0]["config"]["n_way"] == 3
    code, out, err = run("inspect", str(path), "--model", "minilm", *columns, "--json")
    assert code == 0, err
    assert json.loads(out)["n_classes"] >= 3
    code, _, err = run("evaluate", str(path), "--model", "minilm")
    assert code == 1 and "frage" in err  # the message lists the columns present


def test_several_embedders_on_the_same_episodes(cache_dir: Path, tmp_path: Path) -> None:
    from tests._embed_fixtures import save_tiny_bert

    rows = [
        {"text": f"{word} number {i}", "label": word}
        for word in ("apple", "train", "music", "ocean")
        for i in range(8)
    ]
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    bert = f"hf:{save_tiny_bert(tmp_path / 'bert')}"
    plot = tmp_path / "plot.png"
    code, out, err = run(
        "evaluate", str(data), "--model", f"minilm,{bert}", "--ways", "3", "--shots", "1,2",
        "--queries", "3", "--episodes", "20", "--cache-dir", str(cache_dir), "--json",
        "--plot", str(plot),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    jsonschema.validate(report, json_schema())
    assert {r["config"]["model"] for r in report["results"]} == {"minilm", bert}
    assert {(b["model"], b["n_shot"]) for b in report["best_per_shot"]} == {
        (m, k) for m in ("minilm", bert) for k in (1, 2)
    }  # the best of each embedder at each shot count
    assert report["model"] == f"minilm,{bert}" and report["fingerprint"].count(",") == 1
    assert plot.read_bytes()[:4] == b"\x89PNG"
    # the same episodes: each embedder alone gives the same rows as beside the other
    code, alone, err = run(
        "evaluate", str(data), "--model", "minilm", "--ways", "3", "--shots", "1,2",
        "--queries", "3", "--episodes", "20", "--cache-dir", str(cache_dir), "--json",
    )  # fmt: skip
    assert code == 0, err
    mine = [r["mean"] for r in report["results"] if r["config"]["model"] == "minilm"]
    assert mine == [r["mean"] for r in json.loads(alone)["results"]]
    code, _, err = run("evaluate", str(data), "--model", f"minilm,{bert}", "--inspect")
    assert code == 1 and "give one --model" in err
