"""The README's code runs as written: its shell tour and its Python blocks, on small data.

The files the tour names (support.csv, heldout.csv, queries.txt, traffic.txt, my_images/) are
made here from BANKING77 and drawn images; ``banking77`` is a small slice of the real data. Two
substitutions, both because model hubs are unreachable here: a hub model in the tour
(``st:all-mpnet-base-v2``) becomes a tiny BERT saved by the test, and ``pip install`` and the
blocking ``serve`` are left out (the service has its own end-to-end tests).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

import protoshot.cli._commands  # noqa: F401  (registers the commands)
from protoshot.cli import app
from tests._embed_fixtures import save_tiny_bert, write_images
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[1] / "README.md"
HUB_MODEL = "st:all-mpnet-base-v2"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def commands(block: str) -> list[str]:
    """Shell lines, continuations joined, comments and blank lines dropped."""
    joined = block.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's files of the tour, and a small BANKING77."""
    root = tmp_path_factory.mktemp("readme")
    rows = {}
    for split in ("train", "test"):
        with open(DATA_DIR / "banking77" / "banking_data" / f"{split}.csv", newline="") as f:
            rows[split] = list(csv.DictReader(f))
    intents = sorted({r["category"] for r in rows["test"]})[:6]
    data = root / "data" / "banking77" / "banking_data"
    data.mkdir(parents=True)
    for split, per_class in (("train", 12), ("test", 20)):
        kept = [
            r for c in intents for r in [x for x in rows[split] if x["category"] == c][:per_class]
        ]
        with open(data / f"{split}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, ["text", "category"])
            writer.writeheader()
            writer.writerows(kept)
    (data / "categories.json").write_text(json.dumps(intents))
    test = rows["test"]
    known, unknown = intents[:4], sorted({r["category"] for r in test})[10:12]
    support = [r for c in known for r in [x for x in test if x["category"] == c][:5]]
    heldout = [r for c in known for r in [x for x in test if x["category"] == c][5:15]]
    heldout += [
        {**r, "category": "NO_MATCH"}
        for c in unknown
        for r in [x for x in test if x["category"] == c][:10]
    ]
    for name, part in (("support.csv", support), ("heldout.csv", heldout)):
        with open(root / name, "w", newline="") as f:
            writer = csv.DictWriter(f, ["text", "category"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "category": r["category"]} for r in part)
    (root / "queries.txt").write_text("\n".join(r["text"] for r in heldout[::3]) + "\n")
    (root / "traffic.txt").write_text("\n".join(r["text"] for r in heldout) + "\n")
    write_images(root / "my_images", {f"glyph{i}": 20 for i in range(5)}, size=28)
    save_tiny_bert(root / "bert")
    return root


@pytest.fixture
def in_workdir(workdir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("PROTOSHOT_DATA_DIR", str(workdir / "data"))
    monkeypatch.setenv("PROTOSHOT_CACHE_DIR", str(cache_dir))
    return workdir


def test_the_shell_tour_runs_as_written(in_workdir: Path) -> None:
    (tour,) = [b for b in blocks("bash") if "protoshot fit" in b]
    runner = CliRunner()
    lines = [
        line for line in commands(tour) if not line.startswith(("pip install", "protoshot serve"))
    ]
    ran = 0
    for line in lines:
        words = shlex.split(line.replace(HUB_MODEL, f"hf:{in_workdir / 'bert'}"))
        target = None
        if ">" in words:
            words, target = words[: words.index(">")], words[words.index(">") + 1]
        assert words[0] == "protoshot", line
        result = runner.invoke(app, words[1:])
        assert result.exit_code == 0, f"{line}\n{result.stderr}{result.stdout}"
        if target is not None:
            Path(target).write_text(result.stdout)
        ran += 1
    assert ran == len(lines) >= 20
    assert json.loads((in_workdir / "image-results.json").read_text())["best_per_shot"]
    assert (in_workdir / "confusion.png").is_file() and (in_workdir / "acc.png").is_file()


def test_the_python_blocks_run_as_written(
    in_workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = in_workdir / "python"  # its own folder: the shell tour's model folders stay apart
    own.mkdir(exist_ok=True)
    monkeypatch.chdir(own)
    write_images(own / "my_images", {f"glyph{i}": 20 for i in range(5)}, size=28)
    python = blocks("python")
    assert len(python) >= 2
    for number, block in enumerate(python):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block, f"README.md python block {number}", "exec"), {"__name__": "readme"})
