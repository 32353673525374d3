"""Start-up: seconds from launching a command to its answer when everything is cached.

Three commands, each run as a fresh process (best of ``--repeat``) on the same cache:
``protoshot predict MODEL QUERIES`` (100 BANKING77 test texts, already in the cache; and with
``--no-cache``, so the model is built and embeds them),
``protoshot evaluate TABLE`` (an embedded BANKING77 test table, 200 episodes) and ``protoshot
serve MODEL`` until its first answer to ``POST /v1/predict``. With ``--baseline REV`` the same
commands also run on that revision's code (checked out with ``git worktree``) in the same run,
so before and after are measured side by side; each version fits its own model folder.

    HF_HUB_OFFLINE=1 python benchmarks/startup.py [--baseline REV] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from protoshot.data import load_source

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def best_of(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


class Version:
    """``python -m protoshot`` on the code in ``src``, with a shared cache."""

    def __init__(self, name: str, src: Path, cache: Path) -> None:
        self.name, self.cache = name, cache
        self.env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}

    def args(self, *args: object) -> list[str]:
        return [sys.executable, "-m", "protoshot", *map(str, args), "--cache-dir", str(self.cache)]

    def run(self, *args: object) -> None:
        subprocess.run(self.args(*args), env=self.env, check=True, capture_output=True)

    def first_answer(self, model: Path) -> None:
        port = free_port()
        server = subprocess.Popen(
            self.args("serve", model, "--port", port, "--quiet"), env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.perf_counter() + 300
        try:
            while time.perf_counter() < deadline:
                try:
                    answer = httpx.post(
                        f"http://127.0.0.1:{port}/v1/predict", json={"texts": ["hi"]}, timeout=30
                    )
                    if answer.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if server.poll() is not None:
                    raise RuntimeError(f"{self.name}: the server stopped")
                time.sleep(0.02)
            raise RuntimeError(f"{self.name}: no answer within 300 s")
        finally:
            server.terminate()
            server.wait()


def measure(version: Version, work: Path, repeat: int) -> dict[str, float]:
    model, table = work / f"model-{version.name}", work / "table.parquet"
    version.run("fit", work / "support.csv", "-o", model, "--model", "minilm", "--force")
    version.run("predict", model, work / "queries.txt")  # the queries into the cache
    if not table.exists():
        version.run("embed", "banking77:test", "--model", "minilm", "-o", table)
    return {
        "predict_s": best_of(repeat, lambda: version.run("predict", model, work / "queries.txt")),
        "predict_uncached_s": best_of(
            repeat, lambda: version.run("predict", model, work / "queries.txt", "--no-cache")
        ),
        "evaluate_s": best_of(repeat, lambda: version.run("evaluate", table, "--episodes", "200")),
        "serve_first_answer_s": best_of(repeat, lambda: version.first_answer(model)),
    }


def write_inputs(work: Path, root: str) -> None:
    train = load_source("banking77:train", root=root)
    test = load_source("banking77:test", root=root)
    shots: dict[str, int] = {}
    with open(work / "support.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for text, label in zip(train.items, train.labels, strict=True):
            if shots.get(label, 0) < 5:
                shots[label] = shots.get(label, 0) + 1
                writer.writerow([text, label])
    (work / "queries.txt").write_text("\n".join(t.replace("\n", " ") for t in test.items[:100]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision to measure beside this code")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = os.environ.get("PROTOSHOT_DATA_DIR", str(REPO.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_inputs(work, root)
        versions = [Version("now", REPO / "src", work / "cache")]
        if args.baseline:
            tree = work / "baseline"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline],
                check=True, capture_output=True,
            )  # fmt: skip
            versions.insert(0, Version(args.baseline, tree / "src", work / "cache"))
        try:
            results = {v.name: measure(v, work, args.repeat) for v in versions}
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                    check=True, capture_output=True,
                )  # fmt: skip
    names = list(results)
    print(f"| seconds from launch to answer (best of {args.repeat}) | {' | '.join(names)} |")
    print(f"| --- |{' ---: |' * len(names)}")
    for measure_name in results[names[0]]:
        cells = " | ".join(f"{results[n][measure_name]:.2f}" for n in names)
        print(f"| {measure_name.removesuffix('_s').replace('_', ' ')} | {cells} |")


if __name__ == "__main__":
    main()
