"""``protoshot embed``: end to end through Typer, with tiny and with the bundled models."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from protoshot.cli.embed import register
from protoshot.data import EmbeddingTable, read_table
from tests._embed_fixtures import BANKING77, OMNIGLOT, save_tiny_bert, write_images


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps "embed" a named sub-command
    return app


@pytest.fixture
def texts_csv(tmp_path: Path) -> Path:
    lines = ["text,label", "open an account,open", "close it now,close", "open one,open"]
    path = tmp_path / "texts.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(app: typer.Typer, *args: object):
    return CliRunner().invoke(app, ["embed", *map(str, args)])


def test_embed_a_csv_then_hit_the_cache(app, tmp_path: Path, texts_csv: Path) -> None:
    model = f"hf:{save_tiny_bert(tmp_path / 'bert')}"
    out, cache = tmp_path / "t.parquet", tmp_path / "cache"
    common = [texts_csv, "--model", model, "--cache-dir", cache, "--json"]
    result = _run(app, *common, "-o", out, "--batch-size", 2)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["samples"] == 3 and summary["classes"] == 2 and summary["dim"] == 16
    assert (summary["cache_hits"], summary["cache_misses"]) == (0, 3)
    table = EmbeddingTable.load(out)
    assert table.labels.tolist() == ["open", "close", "open"] and table.model == model
    assert table.fingerprint == summary["fingerprint"]

    again = _run(app, *common, "-o", out, "--force")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["cache_hits"] == 3


def test_existing_output_needs_force(app, tmp_path: Path, texts_csv: Path) -> None:
    out = tmp_path / "t.parquet"
    out.write_bytes(b"keep me")
    result = _run(app, texts_csv, "--model", "minilm", "-o", out)
    assert result.exit_code == 1
    assert "t.parquet exists; pass --force" in result.stderr
    assert "Traceback" not in result.output and out.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "--model", "minilm"], "no file, folder or known benchmark"),
        (["{csv}", "--model", "nonsense"], "unknown embedder spec 'nonsense'"),
        (["{csv}", "--model", "efficientnet-lite0"], "efficientnet-lite0 embeds image, but"),
        (["{csv}", "--model", "minilm", "--text-column", "body"], "no text column 'body'"),
    ],
)
def test_errors_are_one_line_on_stderr(
    app, tmp_path: Path, texts_csv: Path, args: list[str], message: str
) -> None:
    args = [a.replace("{csv}", str(texts_csv)) for a in args]
    result = _run(app, *args, "-o", tmp_path / "t.parquet", "--no-cache")
    assert result.exit_code == 1
    assert message in result.stderr and result.stderr.startswith("error:")
    assert "Traceback" not in result.output and not (tmp_path / "t.parquet").exists()


def test_skipped_images_are_reported_as_warnings(app, tmp_path: Path) -> None:
    from tests._embed_fixtures import save_tiny_vit

    images = write_images(tmp_path / "imgs", {"a": 2, "b": 2})
    (images / "a" / "readme.txt").write_text("x")
    model = f"hf:{save_tiny_vit(tmp_path / 'vit')}"
    result = _run(app, images, "-m", model, "-o", tmp_path / "o.parquet", "--no-cache", "--json")
    assert result.exit_code == 0, result.stderr
    assert "warning: skipped 1 inputs" in result.stderr and "readme.txt" in result.stderr
    assert json.loads(result.stdout)["skipped"] == 1


def test_command_runs_in_a_fresh_process(tmp_path: Path, texts_csv: Path) -> None:
    code = (
        "import sys, typer; from protoshot.cli.embed import register;"
        "app = typer.Typer(); register(app); app.command('noop')(lambda: None);"
        "app(sys.argv[1:])"
    )
    model = f"hf:{save_tiny_bert(tmp_path / 'bert')}"
    args = ["embed", texts_csv, "-m", model, "-o", tmp_path / "x.parquet", "--no-cache"]
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "3 samples, 2 classes, dim 16" in result.stderr
    assert len(EmbeddingTable.load(tmp_path / "x.parquet")) == 3


@pytest.mark.slow
def test_embed_banking77_texts_with_minilm(app, tmp_path: Path) -> None:
    test = read_table(BANKING77 / "banking_data" / "test.csv")
    subset = tmp_path / "banking_subset.csv"
    with subset.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows(zip(test.items[::77], test.labels[::77], strict=True))  # 40 texts
    out = tmp_path / "t.parquet"
    result = _run(app, subset, "-m", "minilm", "-o", out, "--cache-dir", tmp_path / "c")
    assert result.exit_code == 0, result.stderr
    assert "40 samples, 40 classes, dim 384 with minilm" in result.stderr
    assert EmbeddingTable.load(out).vectors.shape == (40, 384)


@pytest.mark.slow
def test_embed_omniglot_images_with_efficientnet(app, tmp_path: Path) -> None:
    root = tmp_path / "omniglot"
    for folder in sorted((OMNIGLOT / "images_evaluation").iterdir())[:2]:
        (root / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir())[:10]:
            shutil.copy(path, root / folder.name)
    out, cache = tmp_path / "o.parquet", tmp_path / "cache"
    result = _run(app, root, "-m", "efficientnet-lite0", "-o", out, "--cache-dir", cache, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["samples"], summary["dim"], summary["classes"]) == (20, 1280, 2)
    assert list((cache / "onnx").glob("*.onnx"))  # the export sits next to the cache
    first = sorted(p.name for p in root.iterdir())[0]
    assert EmbeddingTable.load(out).ids[0].startswith(f"{first}/")
