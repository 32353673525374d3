"""``protoshot demo`` end to end on a small slice of the real BANKING77 files, in a fresh process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR

pytestmark = pytest.mark.slow


def _slice(source: Path, target: Path, classes: int, per_class: int) -> None:
    """The first ``per_class`` rows of the first ``classes`` intents of a BANKING77 CSV."""
    with source.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    kept: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        bucket = kept.setdefault(row["category"], [])
        if len(bucket) < per_class:
            bucket.append(row)
    chosen = [row for rows in list(kept.values())[:classes] for row in rows]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows(chosen)


def test_demo_runs_and_writes_its_results(tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "test"):
        _slice(
            DATA_DIR / "banking77" / "banking_data" / f"{split}.csv",
            data / "banking77" / "banking_data" / f"{split}.csv",
            classes=6,
            per_class=20,
        )
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROTOSHOT_DATA_DIR": str(data)}
    done = subprocess.run(
        [sys.executable, "-m", "protoshot", "demo", "--only", "banking77", "--episodes", "30",
         "--out", str(out), "--cache-dir", str(cache_dir), "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads((out / "results.json").read_text())
    assert (out / "banking77.png").stat().st_size > 0
    grid = result["episodic"]["banking77"]["results"]
    assert len(grid) == 12 and all(r["n_episodes"] == 30 for r in grid)
    assert all(0.2 < r["mean"] <= 1 for r in grid)  # 5-way chance is 0.2
    assert result["embedding"]["banking77:test"]["samples"] == 120
