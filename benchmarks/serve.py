"""Throughput of a deployed model: the HTTP service and batch prediction on BANKING77.

The model is MiniLM (the runtime the server picks on this machine) with 77 intents, 10 shots
each; the server runs with ``--no-cache``, so every request embeds its text.

1. Does the service keep up with its model? The raw model embeds the texts the clients will
   send, length-sorted, in batches of 64, in this process: texts/s. Then ``/v1/predict`` with
   16 concurrent clients, each sending one distinct text per request: requests/s and its ratio
   to the raw model's texts/s (target >= 0.8), p50 / p99 latency; then one client alone. With
   ``--baseline REV`` the same figures for the code of git revision REV (its whole
   ``src/protoshot``, serving the same model folder). The
   servers take turns over ``--rounds`` rounds, the raw model measured again before and after
   each server's turn (a ratio divides by the mean of the two); the table gives medians (this
   machine's figures vary by 20-40% between runs), then each round's ratio.
2. ``/v1/predict`` at 1, 16, 64 and 256 concurrent clients, one text per request, first with no
   admission limit (``--max-in-flight 100000``), then with the default (32 requests in progress
   at once): the requests it sheds (503, ``Retry-After``; the client waits that long before its
   next request) and the latency of those it serves; each client sends a bounded number of
   requests and stops by a deadline. The access log and the metrics are on in every run but the
   last, 16 clients with ``--quiet`` (no access log): the cost of logging.
3. Batch prediction of the 3,080 BANKING77 test texts: ``FewShotModel.predict`` with a cold and a
   warm embedding cache, and the ``protoshot predict`` command (warm).

The clients are one asyncio process speaking HTTP/1.1 over keep-alive connections, on the same
cores as the server: far less CPU a request than httpx clients in threads (CPU the server and
its model would otherwise have).

    python benchmarks/serve.py [--baseline REV] [--rounds 3] [--keep-up-only]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from protoshot.data import load_benchmark
from protoshot.embedders import Embedder, create_embedder, embed
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for

REPO = Path(__file__).resolve().parents[1]
#: The served model's embedder.
MODEL = "minilm"
#: Concurrent clients of the keep-up comparison (section 1).
CLIENTS = 16


def fit_model(folder: Path, cache: Path) -> tuple[Path, list[str]]:
    root = os.environ.get("PROTOSHOT_DATA_DIR") or REPO.parent / "shared" / "data"
    train, test = (load_benchmark("banking77", split, root=root) for split in ("train", "test"))
    support = [i for c in np.unique(train.labels) for i in np.flatnonzero(train.labels == c)[:10]]
    model = FewShotModel(embedder_for(MODEL), cache=cache)
    model.fit([train.items[i] for i in support], train.labels[support]).save(folder / "model")
    return folder / "model", list(dict.fromkeys(test.items))  # distinct texts


def code_at(rev: str, folder: Path) -> Path:
    """The ``src`` folder of git revision ``rev`` (a baseline server runs from it, on
    ``PYTHONPATH``): the whole package of then, service and embedders alike."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "src/protoshot"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def serve(
    model_dir: Path, *extra: str, src: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``protoshot serve`` on a free port (from ``src`` when given), once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "protoshot", "serve", str(model_dir), "--port", str(port),
           "--no-cache", *extra]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    # its access log would interleave with the table: discarded (it is still written)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


async def _predict(port: int, texts: list[str], deadline: float, latencies: list[float]) -> int:
    """One client: each text in turn as its own request over one keep-alive connection, until
    ``deadline``; the latency of each answered request is appended; returns the requests shed
    (a 503 is followed by a pause of its ``Retry-After``)."""
    shed = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for text in texts:
            if time.monotonic() > deadline:
                break
            body = json.dumps({"texts": [text]}).encode()
            start = time.perf_counter()
            writer.write(
                b"POST /v1/predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json"
                b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            status, headers = await _response(reader)
            if status == 503:
                shed += 1
                await asyncio.sleep(float(headers.get("retry-after", 1)))
            elif status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                raise RuntimeError(f"/v1/predict answered {status}")
    finally:
        writer.close()
    return shed


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read one HTTP/1.1 response: its status and headers (the body is read and dropped)."""
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers


def load(port: int, texts: list[str], clients: int, requests: int, seconds: float) -> dict:
    """``clients`` concurrent clients, each sending up to ``requests`` texts of its own."""

    async def run() -> list[int]:
        deadline = time.monotonic() + seconds
        own = [
            [texts[(c * requests + i) % len(texts)] for i in range(requests)]
            for c in range(clients)
        ]
        return await asyncio.gather(*(_predict(port, t, deadline, latencies) for t in own))

    latencies: list[float] = []
    start = time.perf_counter()
    shed = asyncio.run(run())
    wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {
        "clients": clients,
        "requests": lat.size,
        "shed": sum(shed),
        "rps": lat.size / wall,
        "p50_ms": 1e3 * np.percentile(lat, 50),
        "p99_ms": 1e3 * np.percentile(lat, 99),
    }


def measured(port: int, texts: list[str], clients: int, requests: int, seconds: float) -> dict:
    """:func:`load`, with the requests each embedding pass served (from ``/healthz``)."""
    url = f"http://127.0.0.1:{port}/healthz"
    before = httpx.get(url).json()
    row = load(port, texts, clients, requests, seconds)
    after = httpx.get(url).json()
    passes = max(after["embedding_passes"] - before["embedding_passes"], 1)
    return {**row, "per_pass": (after["embedded_requests"] - before["embedded_requests"]) / passes}


def raw_model(embedder: Embedder, texts: list[str]) -> float:
    """Texts/s of ``embedder`` alone: ``texts`` length-sorted, in batches of 64, no cache."""
    embed(texts[:64], embedder, cache=None, batch_size=64)  # the first passes are slow
    start = time.perf_counter()
    embed(texts, embedder, cache=None, batch_size=64)
    return len(texts) / (time.perf_counter() - start)


@dataclass
class Round:
    """One round of section 1: each server's rows by ``(server, clients)``, and the raw model's
    texts/s around each server's turn (the mean of the measures just before and just after it,
    so a change of the machine's load during a round affects both sides of the ratio)."""

    rows: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)

    def ratio(self, server: str, clients: int) -> float:
        return self.rows[server, clients]["rps"] / self.raw[server]


def keep_up(model_dir: Path, texts: list[str], folder: Path, args: argparse.Namespace) -> None:
    """Section 1: the raw model against the service (and the baseline's), round by round."""
    embedder = create_embedder(MODEL, batch_size=64)  # the runtime the server picks
    sent = texts[: CLIENTS * args.requests]
    servers: dict[str, Path | None] = {"this tree": None}
    if args.baseline:
        servers[f"baseline {args.baseline}"] = code_at(args.baseline, folder / "baseline")
    rounds = []
    for _ in range(args.rounds):
        found, before = Round(), raw_model(embedder, sent)
        for name, src in servers.items():
            proc, port = serve(model_dir, src=src)
            try:
                load(port, texts[-50:], 2, 10, 10)  # warm-up
                for clients in (CLIENTS, 1):
                    row = measured(port, sent, clients, args.requests, args.seconds)
                    found.rows[name, clients] = row
            finally:
                proc.terminate()
                proc.wait(30)
            after = raw_model(embedder, sent)
            found.raw[name], before = (before + after) / 2, after
        rounds.append(found)
    print(f"{len(sent)} distinct BANKING77 texts, medians of {len(rounds)} rounds:\n")
    print("| | texts/s or requests/s | ÷ raw model | p50 (ms) | p99 (ms) | requests per pass |")
    print("|---|---|---|---|---|---|")
    raw = np.median([r.raw[name] for r in rounds for name in servers])
    print(f"| raw model, length-sorted batches of 64 | {raw:.1f} | 1.00 | | | |")
    for clients in (CLIENTS, 1):
        for name in servers:
            rps, p50, p99, per_pass = (
                np.median([r.rows[name, clients][key] for r in rounds])
                for key in ("rps", "p50_ms", "p99_ms", "per_pass")
            )
            ratio = np.median([r.ratio(name, clients) for r in rounds])
            print(
                f"| service ({name}), {clients} client{'s' * (clients > 1)} | {rps:.1f} | "
                f"{ratio:.2f} | {p50:.1f} | {p99:.1f} | {per_pass:.1f} |"
            )
    print()
    for name in servers:
        each = ", ".join(
            f"{r.ratio(name, CLIENTS):.2f} ({r.rows[name, CLIENTS]['rps']:.0f}/{r.raw[name]:.0f})"
            for r in rounds
        )
        print(f"{name}, {CLIENTS} clients ÷ raw model, round by round: {each} (target >= 0.8)")


def levels(model_dir: Path, texts: list[str], args: argparse.Namespace) -> None:
    """Section 2: load levels, with and without the admission limit and the access log."""
    rows = []
    unbounded = ("--max-in-flight", "100000")
    runs = ((unbounded, (1, 16, 64, 256)), ((), (64, 256)), (("--quiet",), (16,)))
    for extra, counts in runs:
        proc, port = serve(model_dir, *extra)
        try:
            load(port, texts[-50:], 2, 10, 10)  # warm-up
            for clients in counts:
                row = measured(port, texts, clients, args.requests, args.seconds)
                name = {(): "32 (default)", ("--quiet",): "32, no access log"}
                rows.append({**row, "admitted": name.get(extra, "unbounded")})
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        "\n| requests let in at once | clients | served | shed (503) | requests/s | p50 (ms) | p99 (ms) | requests per pass |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['admitted']} | {r['clients']} | {r['requests']} | {r['shed']} | {r['rps']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['per_pass']:.1f} |"
        )


def batch_prediction(model_dir: Path, texts: list[str], folder: Path) -> None:
    """Section 3: the library and the command on the whole test set."""
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100, help="requests per client (bound)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time bound per load level")
    parser.add_argument("--baseline", help="git revision whose code is measured too")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of section 1")
    parser.add_argument("--keep-up-only", action="store_true", help="section 1 only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir, texts = fit_model(folder, folder / "warm")
        keep_up(model_dir, texts, folder, args)
        if not args.keep_up_only:
            levels(model_dir, texts, args)
            batch_prediction(model_dir, texts, folder)


if __name__ == "__main__":
    main()
