"""fit / predict / add / remove / calibrate end to end on BANKING77 and Omniglot, offline."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import protoshot.cli._commands  # noqa: F401  (registers the commands)
from protoshot.cli import app
from protoshot.estimators import load_estimator
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.slow
runner = CliRunner()


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def banking_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """Support (5 shots of 6 intents) and held-out rows (6 known + 3 unknown intents) as CSV."""
    with open(DATA_DIR / "banking77" / "banking_data" / "test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    intents = sorted({r["category"] for r in rows})[:9]
    folder = tmp_path_factory.mktemp("banking")
    support, heldout = [], []
    for intent in intents:
        mine = [r for r in rows if r["category"] == intent]
        if intent in intents[:6]:
            support += mine[:5]
        heldout += mine[5:25]
    for name, part in (("support.csv", support), ("heldout.csv", heldout)):
        with open(folder / name, "w", newline="") as f:
            writer = csv.DictWriter(f, ["text", "category"])
            writer.writeheader()
            writer.writerows(part)
    return folder / "support.csv", folder / "heldout.csv", intents


@pytest.fixture
def text_model(banking_csv, cache_dir: Path, tmp_path: Path) -> Path:
    support, _, _ = banking_csv
    out = tmp_path / "model"
    code, _, err = run(
        "fit",
        str(support),
        "-m",
        "minilm",
        "-o",
        str(out),
        "--normalization",
        "l2",
        "--cache-dir",
        str(cache_dir),
    )
    assert code == 0, err
    assert "6 classes, 5-5 shots each, dim 384" in err
    return out


def test_predict_formats(text_model: Path, banking_csv, cache_dir: Path, tmp_path: Path) -> None:
    _, heldout, intents = banking_csv
    with open(heldout, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in intents[:6]][:12]
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(r["text"] for r in rows) + "\n\n")
    cache = ("--cache-dir", str(cache_dir))
    code, out, err = run(
        "predict", str(text_model), str(texts), "--format", "jsonl", "--top-k", "3", *cache
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 12 and all(len(line["top_k"]) == 3 for line in lines)
    assert (
        np.mean([line["label"] == r["category"] for line, r in zip(lines, rows, strict=True)]) > 0.7
    )
    assert all(0 < line["probability"] <= 1 for line in lines)
    code, out, _ = run(
        "predict",
        str(text_model),
        "-",
        "--format",
        "csv",
        "--top-k",
        "2",
        *cache,
        stdin=texts.read_text(),
    )
    table = list(csv.DictReader(io.StringIO(out)))
    assert (
        code == 0
        and len(table) == 12
        and set(table[0]) >= {"input", "label", "probability", "label_2"}
    )
    code, out, _ = run("predict", str(text_model), "-t", "my card has not arrived yet", *cache)
    assert code == 0 and "my card has not arrived yet" in out


def test_add_remove_and_calibrate(text_model: Path, banking_csv, cache_dir: Path) -> None:
    _, heldout, intents = banking_csv
    cache = ("--cache-dir", str(cache_dir))
    code, _, err = run(
        "add",
        str(text_model),
        "crypto",
        "-t",
        "can I buy bitcoin",
        "-t",
        "is ethereum supported",
        *cache,
    )
    assert code == 0 and "new class 'crypto': 2 shots" in err
    code, _, err = run("add", str(text_model), intents[0], "-t", "one more example", *cache)
    assert code == 0 and f"class '{intents[0]}': 6 shots" in err
    code, _, err = run("remove", str(text_model), "crypto")
    assert code == 0 and "6 classes remain" in err
    code, out, err = run(
        "calibrate", str(text_model), str(heldout), "--far", "0.1", "--json", *cache
    )
    assert code == 0, err
    calib = json.loads(out)
    assert (
        calib["false_accept_rate"] <= 0.1 and calib["n_unknown"] == 60 and calib["n_known"] == 120
    )
    assert load_estimator(text_model).metadata_["rejection"]["threshold"] == calib["threshold"]
    code, out, _ = run("predict", str(text_model), str(heldout), "--format", "jsonl", *cache)
    assert any(json.loads(line)["rejected"] for line in out.splitlines())


def test_image_model_on_omniglot(tmp_path: Path, cache_dir: Path) -> None:
    alphabet = sorted((DATA_DIR / "omniglot" / "images_evaluation").iterdir())[:3]
    support = tmp_path / "support"
    queries = tmp_path / "queries"
    for folder in alphabet:
        images = sorted(folder.iterdir())
        (support / folder.name).mkdir(parents=True)
        for image in images[:2]:
            (support / folder.name / image.name).symlink_to(image)
        queries.mkdir(exist_ok=True)
        (queries / f"{folder.name}.png").symlink_to(images[-1])
    out = tmp_path / "model"
    cache = ("--cache-dir", str(cache_dir))
    code, _, err = run("fit", str(support), "-m", "efficientnet-lite0", "-o", str(out), *cache)
    assert code == 0, err
    code, stdout, err = run("predict", str(out), str(queries), "--format", "jsonl", *cache)
    assert code == 0, err
    preds = [json.loads(line) for line in stdout.splitlines()]
    assert len(preds) == 3 and {p["label"] for p in preds} <= {f.name for f in alphabet}
    code, _, err = run("predict", str(out), "-t", "some text", *cache)
    assert code == 1 and "this model embeds images" in err
    code, _, err = run("add", str(out), "new", str(tmp_path / "missing.png"), *cache)
    assert code == 1 and "no such image file or folder" in err


def test_model_command_errors(text_model: Path, cache_dir: Path, tmp_path: Path) -> None:
    cache = ("--cache-dir", str(cache_dir))
    code, _, err = run("fit", str(tmp_path), "-m", "minilm", "-o", str(text_model), *cache)
    assert code == 1 and "already holds a model; pass --force" in err
    code, _, err = run("remove", str(text_model), "no_such_intent")
    assert code == 1 and "unknown classes ['no_such_intent']" in err
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    code, _, err = run("predict", str(text_model), str(latin), *cache)
    assert code == 1 and "is not UTF-8 text" in err
    code, _, err = run("predict", str(text_model), *cache)
    assert code == 1 and "no inputs" in err
    code, _, err = run("predict", str(text_model), "-t", "x", "--format", "xml", *cache)
    assert code == 1 and "unknown format 'xml'" in err
    code, _, err = run("predict", str(tmp_path), "-t", "x", *cache)
    assert code == 1 and "config.json is missing" in err
    config = json.loads((text_model / "config.json").read_text())
    (text_model / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    code, _, err = run("predict", str(text_model), "-t", "x", *cache)
    assert code == 1 and "newer protoshot" in err
    for line in err.splitlines()[1:]:
        assert not line.strip() or line.startswith(" ")  # one message, never a traceback


def test_remove_works_on_a_bare_classifier_folder(tmp_path: Path) -> None:
    from protoshot import PrototypeClassifier

    rng = np.random.default_rng(0)
    PrototypeClassifier().fit(rng.normal(size=(6, 4)), [1, 1, 2, 2, 3, 3]).save(tmp_path)
    code, _, err = run("remove", str(tmp_path), "2")
    assert code == 0 and "removed 2; 2 classes remain" in err
    assert PrototypeClassifier.load(tmp_path).classes_.tolist() == [1, 3]
    code, _, err = run("remove", str(tmp_path), "two")
    assert code == 1 and "'two' is not an integer" in err


def test_fit_methods_descriptions_and_a_class_from_its_description(
    banking_csv, cache_dir: Path, tmp_path: Path
) -> None:
    support, _, intents = banking_csv
    cache = ("--cache-dir", str(cache_dir))
    descriptions = tmp_path / "descriptions.csv"
    descriptions.write_text(f"label,text\n{intents[0]},the card I ordered has not come yet\n")
    out = tmp_path / "auto"
    code, _, err = run(
        "fit", str(support), "-m", "minilm", "-o", str(out),
        "--class-descriptions", str(descriptions), *cache,
    )  # fmt: skip
    assert code == 0, err
    assert "method auto: named-" in err and "by cross-validation: held-out accuracy" in err
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "auto" and config["state"]["chosen"].startswith("named-")
    # a class known only by its description answers for what it describes
    code, _, err = run(
        "add", str(out), "crypto", "--description", "buying and holding bitcoin or ethereum",
        *cache,
    )  # fmt: skip
    assert code == 0 and "new class 'crypto': 0 shots (0 added, described)" in err, err
    code, result, err = run(
        "predict", str(out), "-t", "can I buy bitcoin with my account", "--format", "jsonl",
        *cache,
    )  # fmt: skip
    assert code == 0 and json.loads(result)["label"] == "crypto", err
    linear = tmp_path / "linear"
    code, _, err = run(
        "fit", str(support), "-m", "minilm", "-o", str(linear), "--method", "linear", *cache
    )
    assert code == 0 and "method linear," in err, err
    code, _, err = run(
        "fit", str(support), "-m", "minilm", "-o", str(tmp_path / "x"), "--method", "linear",
        "--metric", "cosine", *cache,
    )  # fmt: skip
    assert code == 1 and "--metric applies to the prototype methods, not linear" in err
    descriptions.write_text("label,text\nno_such_intent,anything\n")
    code, _, err = run(
        "fit", str(support), "-m", "minilm", "-o", str(tmp_path / "y"),
        "--class-descriptions", str(descriptions), *cache,
    )  # fmt: skip
    assert code == 1 and "descriptions name 1 classes that have no examples: no_such_intent" in err


def test_transductive_prediction_of_a_batch(
    text_model: Path, banking_csv, cache_dir: Path, tmp_path: Path
) -> None:
    _, heldout, _ = banking_csv
    with open(heldout, newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
    cache = ("--cache-dir", str(cache_dir))
    code, out, err = run(
        "predict", str(text_model), str(batch), "--transductive", "soft-kmeans",
        "--format", "jsonl", *cache,
    )  # fmt: skip
    assert code == 0, err
    assert "each answer depends on the whole batch" in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(texts) == 180 and not any(r["rejected"] for r in rows)
    code, _, err = run("predict", str(text_model), "-t", "hi", "--transductive", "tim", *cache)
    assert code == 1 and "unknown transductive method 'tim'" in err


def test_predict_reads_a_table_and_passes_its_other_columns_through(
    text_model: Path, banking_csv, cache_dir: Path
) -> None:
    _, heldout, _ = banking_csv
    cache = ("--cache-dir", str(cache_dir))
    code, out, err = run("predict", str(text_model), str(heldout), "--format", "csv", *cache)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    with open(heldout, newline="") as f:
        truth = list(csv.DictReader(f))
    assert len(rows) == len(truth)  # the header is not a query
    assert [r["input"] for r in rows] == [t["text"] for t in truth]  # no label in the input
    assert [r["input_category"] for r in rows] == [t["category"] for t in truth]


def test_brackets_in_texts_and_labels_are_shown_as_typed(text_model: Path, cache_dir: Path) -> None:
    cache = ("--cache-dir", str(cache_dir))
    code, _, err = run("add", str(text_model), "[greet]", "-t", "hello there", *cache)
    assert code == 0 and "'[greet]'" in err, err
    code, out, err = run(
        "predict", str(text_model), "-t", "see [link] for details", "-t", "foo [/] bar",
        "-t", "hello there", *cache,
    )  # fmt: skip
    assert code == 0, err
    assert "see [link] for details" in out and "foo [/] bar" in out and "[greet]" in out


def test_a_typo_in_add_is_pointed_out_and_h_is_help(
    text_model: Path, banking_csv, cache_dir: Path
) -> None:
    _, _, intents = banking_csv
    typo = intents[0][:-1] + "x"  # one letter off an existing class
    code, _, err = run("add", str(text_model), typo, "-t", "hello", "--cache-dir", str(cache_dir))
    assert code == 0 and f"did you mean the existing class '{intents[0]}'" in err, err
    code, out, _ = run("predict", "-h")
    assert code == 0 and "--transductive" in out


def test_fit_and_predict_from_embedding_tables(
    banking_csv, cache_dir: Path, tmp_path: Path
) -> None:
    support, heldout, _ = banking_csv
    cache = ("--cache-dir", str(cache_dir))
    for source, table in ((support, tmp_path / "s.parquet"), (heldout, tmp_path / "h.parquet")):
        code, _, err = run("embed", str(source), "--model", "minilm", "-o", str(table), *cache)
        assert code == 0, err
    out = tmp_path / "from-table"
    code, _, err = run("fit", str(tmp_path / "s.parquet"), "-m", "minilm", "-o", str(out), *cache)
    assert code == 0 and "6 classes, 5-5 shots each" in err, err
    code, text, err = run(
        "predict", str(out), str(tmp_path / "h.parquet"), "--format", "jsonl", *cache
    )
    assert code == 0, err
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 180 and {"label"} == set(rows[0]["columns"])
    known = [r for r in rows if r["columns"]["label"] in {p["label"] for p in rows}]
    assert np.mean([r["label"] == r["columns"]["label"] for r in known]) > 0.6
    code, _, err = run(
        "fit", str(tmp_path / "s.parquet"), "-m", "efficientnet-lite0", "-o", str(tmp_path / "x")
    )
    assert code == 1 and "was embedded by minilm" in err


def test_score_reports_accuracy_per_class_and_the_open_set(
    text_model: Path, banking_csv, cache_dir: Path, tmp_path: Path
) -> None:
    _, heldout, intents = banking_csv
    with open(heldout, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["category"] not in intents[:6]:
            row["category"] = "[out]"
    data = tmp_path / "scored.csv"
    with open(data, "w", newline="") as f:
        writer = csv.DictWriter(f, ["text", "category"])
        writer.writeheader()
        writer.writerows(rows)
    cache = ("--cache-dir", str(cache_dir))
    code, out, err = run("score", str(text_model), str(data), *cache)
    assert code == 1 and "not classes of the model: [out]" in err and "--unknown-label" in err
    png = tmp_path / "confusion.png"
    args = ("score", str(text_model), str(data), "--unknown-label", "[out]", *cache)
    code, out, err = run(*args, "--json", "--confusion", str(png))
    assert code == 0, err
    report = json.loads(out)
    known = [r for r in rows if r["category"] != "[out]"]
    assert report["n"] == len(rows) and report["n_unknown"] == len(rows) - len(known)
    assert sorted(c["label"] for c in report["per_class"]) == intents[:6]
    assert report["false_accept_rate"] == 1.0  # no threshold: every out-of-scope row accepted
    assert report["accuracy"] == pytest.approx(report["known_accuracy"] * len(known) / len(rows))
    assert report["accuracy_ci"][0] < report["accuracy"] < report["accuracy_ci"][1]
    assert 0 < report["ece"] < 1 and report["nll"] > 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, out, err = run(*args)
    assert code == 0, err
    assert "accuracy" in out and "per class" in out and "[out]" not in out  # rows, not a class
    assert "out of scope: 60 rows, 0.0% rejected" in out


def test_score_takes_an_embedding_table(
    text_model: Path, banking_csv, cache_dir: Path, tmp_path
) -> None:
    _, heldout, intents = banking_csv
    known = tmp_path / "known.csv"
    with open(heldout, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in intents[:6]]
    with open(known, "w", newline="") as f:
        writer = csv.DictWriter(f, ["text", "category"])
        writer.writeheader()
        writer.writerows(rows)
    cache = ("--cache-dir", str(cache_dir))
    table = tmp_path / "known.parquet"
    assert run("embed", str(known), "-m", "minilm", "-o", str(table), *cache)[0] == 0
    from_table = json.loads(run("score", str(text_model), str(table), "--json", *cache)[1])
    from_text = json.loads(run("score", str(text_model), str(known), "--json", *cache)[1])
    assert from_table["accuracy"] == from_text["accuracy"] > 0.7
    assert from_table["confusion"] == from_text["confusion"]


def test_fit_takes_its_settings_from_an_evaluate_report(
    banking_csv, banking_table: Path, cache_dir: Path, tmp_path: Path
) -> None:
    support, _, _ = banking_csv
    cache = ("--cache-dir", str(cache_dir))
    code, out, err = run(
        "evaluate", str(banking_table), "--shots", "1,5", "--episodes", "20", "--methods",
        "linear,mahalanobis", "--json",
    )  # fmt: skip
    assert code == 0, err
    report_path = tmp_path / "results.json"
    report_path.write_text(out)
    best = json.loads(out)["best_per_shot"][1]  # the support has 5 shots per class
    folder = tmp_path / "model"
    code, _, err = run("fit", str(support), "-o", str(folder), "--config", str(report_path), *cache)
    assert code == 0, err  # the report names the embedder: no --model needed
    config = json.loads((folder / "config.json").read_text())
    assert config["method"] == best["method"]
    assert config["params"]["normalization"] == best["normalization"]
    assert f"method {best['method']}" in err
    # a flag overrides the report; the report's settings of another method are dropped
    code, _, err = run(
        "fit", str(support), "-o", str(folder), "--config", str(report_path), "--force",
        "--method", "prototypes", "--metric", "cosine", *cache,
    )  # fmt: skip
    assert code == 0, err
    params = json.loads((folder / "config.json").read_text())["params"]
    assert params["metric"] == "cosine" and params["normalization"] == "none"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run("fit", str(support), "-o", str(folder), "--config", str(bad), "--force")
    assert code == 1 and "cannot read the --config report" in err


def test_calibration_survives_add(text_model: Path, banking_csv, cache_dir: Path, tmp_path) -> None:
    """The issue's sequence: calibrate, add a class from one text, predict that text."""
    cache = ("--cache-dir", str(cache_dir))
    code, out, err = run("calibrate", str(text_model), "--json", *cache)  # from the shots alone
    assert code == 0, err
    calib = json.loads(out)
    assert calib["saved"] and "90% of the model's 30 shots that have another" in calib["rule"]
    assert calib["false_accept_rate"] is None
    code, _, err = run("add", str(text_model), "refund_request", "-t", "refund please", *cache)
    assert code == 0, err
    code, out, err = run(
        "predict", str(text_model), "-t", "refund please", "--format", "jsonl", *cache
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["label"] == "refund_request" and not answer["rejected"]
    saved = load_estimator(text_model).metadata_["rejection"]
    assert saved["threshold"] == calib["threshold"]  # add kept the scale and the threshold
    # a poem is unlike every banking intent
    code, out, _ = run(
        "predict", str(text_model), "-t", "the autumn leaves drift over the quiet lake",
        "--format", "jsonl", *cache,
    )  # fmt: skip
    assert json.loads(out)["rejected"] and json.loads(out)["label"] is None


def test_calibrate_on_traffic_and_dry_run(
    text_model: Path, banking_csv, cache_dir: Path, tmp_path
) -> None:
    _, heldout, _ = banking_csv
    cache = ("--cache-dir", str(cache_dir))
    before = (text_model / "config.json").read_text()
    code, out, err = run(
        "calibrate", str(text_model), str(heldout), "--expected-unknown-rate", "0.25",
        "--dry-run", "--json", *cache,
    )  # fmt: skip
    assert code == 0, err
    assert "rejects 25% of 180 traffic inputs" in json.loads(out)["rule"]
    assert not json.loads(out)["saved"] and (text_model / "config.json").read_text() == before
    code, _, err = run("calibrate", str(text_model), "--expected-unknown-rate", "0.2", *cache)
    assert code == 1 and "--expected-unknown-rate needs DATA" in err
    code, _, err = run("calibrate", str(text_model), "--dry-run", *cache)
    assert code == 0 and "not saved (--dry-run)" in err


def test_embedding_tables_with_other_names_and_npy_with_labels(
    banking_table: Path, cache_dir: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(banking_table)
    renamed = tmp_path / "renamed.parquet"
    pq.write_table(table.rename_columns(["key", "intent", "vec"]), renamed)
    vectors = np.stack(table.column("embedding").to_pylist()).astype(np.float32)
    np.save(tmp_path / "x.npy", vectors)
    (tmp_path / "y.txt").write_text("\n".join(table.column("label").to_pylist()) + "\n")
    cache = ("--cache-dir", str(cache_dir))
    folder = tmp_path / "model"
    code, _, err = run(
        "fit", str(renamed), "-m", "minilm", "-o", str(folder), "--embedding-column", "vec",
        "--label-column", "intent", "--method", "prototypes", *cache,
    )  # fmt: skip
    assert code == 0, err
    assert "12 classes, 40-40 shots each" in err
    npy = ("--labels", str(tmp_path / "y.txt"))
    code, out, err = run("score", str(folder), str(tmp_path / "x.npy"), *npy, "--json", *cache)
    assert code == 0, err
    assert json.loads(out)["n"] == 480
    code, out, err = run(
        "evaluate", str(tmp_path / "x.npy"), *npy, "--shots", "1", "--episodes", "5", "--json"
    )
    assert code == 0, err
    assert {r["config"]["n_shot"] for r in json.loads(out)["results"]} == {1}
    code, _, err = run("evaluate", str(tmp_path / "x.npy"), "--shots", "1", "--episodes", "5")
    assert code == 1 and "holds vectors only: give its labels (--labels FILE" in err


def test_semicolon_csv_end_to_end(banking_csv, cache_dir: Path, tmp_path: Path) -> None:
    support, _, _ = banking_csv
    with open(support, newline="") as f:
        rows = list(csv.DictReader(f))
    semicolons = tmp_path / "support.csv"
    with open(semicolons, "w", newline="") as f:
        writer = csv.DictWriter(f, ["text", "category"], delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    cache = ("--cache-dir", str(cache_dir))
    folder = tmp_path / "model"
    code, _, err = run("fit", str(semicolons), "-m", "minilm", "-o", str(folder), *cache)
    assert code == 0 and "6 classes, 5-5 shots each" in err, err
    code, out, err = run("predict", str(folder), str(semicolons), "--format", "jsonl", *cache)
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["columns"]["category"] for a in answers] == [r["category"] for r in rows]
    assert np.mean([a["label"] == a["columns"]["category"] for a in answers]) > 0.9


def test_score_lists_pairs_when_there_are_too_many_classes_to_draw(
    cache_dir: Path, tmp_path: Path
) -> None:
    rows = [f"item number {i} of group {g}" for g in range(101) for i in range(2)]
    data = tmp_path / "many.csv"
    data.write_text("text,label\n" + "".join(f"{t},g{t.split()[-1]}\n" for t in rows))
    cache = ("--cache-dir", str(cache_dir))
    folder = tmp_path / "model"
    assert (
        run("fit", str(data), "-m", "minilm", "-o", str(folder), "--method", "prototypes", *cache)[
            0
        ]
        == 0
    )
    code, out, err = run(
        "score", str(folder), str(data), "--confusion", str(tmp_path / "c.png"), *cache
    )
    assert code == 0 and "101 classes are too many" in err and "most confused" in out
    assert not (tmp_path / "c.png").exists()
    code, _, err = run(
        "score", str(folder), str(data), "--confusion", str(tmp_path / "no" / "c.png"), *cache
    )
    assert code == 1 and "folder" in err and "does not exist" in err
    code, _, err = run("score", str(folder), str(data), "--labels", str(data), *cache)
    assert code == 1 and "are for an .npy of vectors" in err
    code, _, err = run("predict", str(folder), "-t", "  ", *cache)
    assert code == 1 and "a given text is empty" in err
