"""Throughput of a deployed model: the HTTP service and batch prediction on BANKING77.

- ``/v1/predict`` on the bundled MiniLM model (77 intents, 10 shots each): requests/s and
  p50 / p99 latency with 1, 16, 64 and 256 concurrent clients, one text per request, on
  loopback, first with no admission limit (``--max-in-flight 100000``), then with the default
  (32 requests in progress at once): the requests it sheds (503, ``Retry-After``; the client
  waits that long before its next request) and the latency of those it serves; each client
  sends a bounded number of requests and stops by a deadline. The access log and the metrics
  are on in every run but the last, 16 clients with ``--quiet`` (no access log): the cost of
  logging;
- batch prediction of the 3,080 BANKING77 test texts: ``FewShotModel.predict`` with a cold and a
  warm embedding cache, and the ``protoshot predict`` command (warm).

    python benchmarks/serve.py [--requests 100] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from protoshot.data import load_benchmark
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for


def fit_model(folder: Path, cache: Path) -> tuple[Path, list[str]]:
    root = os.environ.get("PROTOSHOT_DATA_DIR") or Path(__file__).parents[2] / "shared" / "data"
    train, test = (load_benchmark("banking77", split, root=root) for split in ("train", "test"))
    support = [i for c in np.unique(train.labels) for i in np.flatnonzero(train.labels == c)[:10]]
    model = FewShotModel(embedder_for("minilm"), cache=cache)
    model.fit([train.items[i] for i in support], train.labels[support]).save(folder / "model")
    return folder / "model", list(test.items)


def serve(model_dir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "protoshot",
        "serve",
        str(model_dir),
        "--port",
        str(port),
        "--no-cache",  # every request embeds its text: levels and servers compare fairly
        *extra,
    ]
    # its access log would interleave with the table: discarded (it is still written)
    proc = subprocess.Popen(
        cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def load(url: str, texts: list[str], clients: int, requests: int, seconds: float) -> dict:
    deadline = time.monotonic() + seconds

    def client(c: int) -> tuple[list[float], int]:
        latencies, shed = [], 0
        with httpx.Client(base_url=url, timeout=120) as http:
            for i in range(requests):
                if time.monotonic() > deadline:
                    break
                start = time.perf_counter()
                r = http.post(
                    "/v1/predict", json={"texts": [texts[(c * requests + i) % len(texts)]]}
                )
                if r.status_code == 503:  # shed: the client would retry after Retry-After
                    shed += 1
                    time.sleep(float(r.headers.get("retry-after", 1)))
                    continue
                r.raise_for_status()
                latencies.append(time.perf_counter() - start)
        return latencies, shed

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    lat = np.concatenate([np.array(x) for x, _ in results])
    shed = sum(n for _, n in results)
    return {
        "clients": clients,
        "requests": lat.size,
        "shed": shed,
        "rps": lat.size / wall,
        "p50_ms": 1e3 * np.percentile(lat, 50),
        "p99_ms": 1e3 * np.percentile(lat, 99),
    }


def levels(
    url: str, texts: list[str], counts: tuple[int, ...], args: argparse.Namespace
) -> list[dict]:
    """Each load level in turn, with the requests each embedding pass served."""
    rows = []
    for clients in counts:
        before = httpx.get(url + "/healthz").json()
        rows.append(load(url, texts, clients, args.requests, args.seconds))
        after = httpx.get(url + "/healthz").json()
        passes = max(after["embedding_passes"] - before["embedding_passes"], 1)
        rows[-1]["per_pass"] = (after["embedded_requests"] - before["embedded_requests"]) / passes
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100, help="requests per client (bound)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time bound per load level")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm_cache = folder / "warm"
        model_dir, texts = fit_model(folder, warm_cache)
        rows = []
        unbounded = ("--max-in-flight", "100000")
        runs = ((unbounded, (1, 16, 64, 256)), ((), (64, 256)), (("--quiet",), (16,)))
        for extra, counts in runs:
            proc, url = serve(model_dir, *extra)
            try:
                load(url, texts[-50:], 2, 10, 10)  # warm-up
                for row in levels(url, texts, counts, args):
                    name = {(): "32 (default)", ("--quiet",): "32, no access log"}
                    rows.append({**row, "admitted": name.get(extra, "unbounded")})
            finally:
                proc.terminate()
                proc.wait(30)
        print(
            "| requests let in at once | clients | served | shed (503) | requests/s | p50 (ms) | p99 (ms) | requests per pass |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['admitted']} | {r['clients']} | {r['requests']} | {r['shed']} | {r['rps']:.1f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['per_pass']:.1f} |"
            )

        model = FewShotModel.load(model_dir, cache=folder / "batch")
        start = time.perf_counter()
        model.predict(texts)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        model.predict(texts)
        warm = time.perf_counter() - start
        lines = folder / "texts.txt"
        lines.write_text("\n".join(t.replace("\n", " ") for t in texts))
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "protoshot", "predict", str(model_dir), str(lines), "--format", "jsonl", "--cache-dir", str(folder / "batch")],
            check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
        cli = time.perf_counter() - start
    n = len(texts)
    print(f"\nbatch prediction of {n} BANKING77 test texts: library cold cache {n / cold:,.0f} texts/s, "
          f"warm {n / warm:,.0f} texts/s; `protoshot predict` (warm, whole process) {n / cli:,.0f} texts/s ({cli:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
