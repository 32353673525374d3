"""The HTTP service, tested as users meet it: a real uvicorn server on loopback, HTTP requests."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from protoshot.data import load_source
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for
from tests.conftest import DATA_DIR

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``protoshot serve`` in a subprocess on a free loopback port."""

    def __init__(self, model_dir: Path, cache_dir: Path, *extra: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "protoshot",
            "serve",
            str(model_dir),
            "--cache-dir",
            str(cache_dir),
            *extra,
        ]
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [*self.args, "--port", str(self.port)], env=env, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start within 60 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def banking() -> tuple[list[str], np.ndarray]:
    samples = load_source("banking77:test", root=DATA_DIR)
    keep = np.isin(samples.labels, np.unique(samples.labels)[:6])
    return [t for t, k in zip(samples.items, keep, strict=True) if k], samples.labels[keep]


@pytest.fixture
def text_server(banking, cache_dir: Path, tmp_path: Path) -> Iterator[Server]:
    texts, labels = banking
    support = [i for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:5]]
    model = FewShotModel(embedder_for("minilm"), cache=cache_dir)
    model.fit([texts[i] for i in support], labels[support]).save(tmp_path / "model")
    server = Server(
        tmp_path / "model", cache_dir, "--max-batch", "64", "--max-body-mb", "0.5"
    ).start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


def test_predict_classes_add_remove(text_server: Server, banking) -> None:
    texts, labels = banking
    url = text_server.url
    r = httpx.post(url + "/v1/predict", json={"texts": texts[10:30], "top_k": 3})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert len(preds) == 20 and all(len(p["top_k"]) == 3 for p in preds)
    assert np.mean([p["label"] == y for p, y in zip(preds, labels[10:30], strict=True)]) > 0.6
    classes = httpx.get(url + "/v1/classes").json()
    assert {c["shots"] for c in classes["classes"]} == {5} and classes["embedder"] == "minilm"
    r = httpx.post(
        url + "/v1/classes/crypto/examples", json={"texts": ["buy bitcoin", "ethereum wallet"]}
    )
    assert r.json() == {"name": "crypto", "shots": 2, "classes": 7}
    first = classes["classes"][0]["name"]
    r = httpx.post(url + f"/v1/classes/{first}/examples", json={"texts": ["one more"]})
    assert r.json()["shots"] == 6
    assert (
        httpx.post(url + "/v1/predict", json={"texts": ["I want to buy bitcoin"]}).json()[
            "predictions"
        ][0]["label"]
        == "crypto"
    )
    r = httpx.delete(url + "/v1/classes/crypto")
    assert r.status_code == 200 and r.json()["classes"] == 6
    spec = httpx.get(url + "/openapi.json").json()
    assert {
        "/v1/predict",
        "/v1/classes",
        "/v1/classes/{name}/examples",
        "/v1/classes/{name}",
        "/healthz",
    } <= set(spec["paths"])
    assert httpx.get(url + "/docs").status_code == 200


def test_bad_requests(text_server: Server) -> None:
    url = text_server.url
    cases = [
        (httpx.delete(url + "/v1/classes/nope"), 404, "no class 'nope'"),
        (httpx.post(url + "/v1/classes/x/examples", json={"texts": []}), 422, "no items"),
        (
            httpx.post(url + "/v1/predict", json={"images": [base64.b64encode(b"png?").decode()]}),
            422,
            "embeds text: send 'texts'",
        ),
        (
            httpx.post(url + "/v1/predict", json={"texts": ["a"] * 65}),
            422,
            "65 items exceed the limit of 64",
        ),
        (
            httpx.post(url + "/v1/predict", json={"texts": ["a" * 600_000]}),
            413,
            "exceeds the limit",
        ),
        (httpx.post(url + "/v1/predict", json={"texts": ["a"], "images": ["b"]}), 422, "not both"),
        (
            httpx.post(
                url + "/v1/predict",
                content=b"{not json",
                headers={"content-type": "application/json"},
            ),
            422,
            "",
        ),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in json.dumps(response.json()["detail"])


def test_restart_and_kill_keep_every_acknowledged_update(
    text_server: Server, cache_dir: Path
) -> None:
    url = text_server.url
    assert (
        httpx.post(
            url + "/v1/classes/new_a/examples", json={"texts": ["alpha one", "alpha two"]}
        ).status_code
        == 200
    )
    text_server.stop()  # a clean restart
    text_server.start()
    assert {
        c["name"]: c["shots"] for c in httpx.get(text_server.url + "/v1/classes").json()["classes"]
    }["new_a"] == 2
    assert (
        httpx.post(
            text_server.url + "/v1/classes/new_b/examples", json={"texts": ["beta"]}
        ).status_code
        == 200
    )
    text_server.stop(signal.SIGKILL)  # killed right after an acknowledged update
    text_server.start()
    counts = {
        c["name"]: c["shots"] for c in httpx.get(text_server.url + "/v1/classes").json()["classes"]
    }
    assert counts["new_a"] == 2 and counts["new_b"] == 1


def test_concurrent_reads_and_writes(text_server: Server, banking) -> None:
    texts, _ = banking
    url = text_server.url

    def read(i: int) -> int:
        return httpx.post(
            url + "/v1/predict", json={"texts": texts[i : i + 4]}, timeout=60
        ).status_code

    def write(i: int) -> int:
        return httpx.post(
            url + f"/v1/classes/c{i % 3}/examples", json={"texts": [f"example {i}"]}, timeout=60
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(write if i % 2 else read, i) for i in range(24)]
        assert [f.result() for f in futures] == [200] * 24
    counts = {c["name"]: c["shots"] for c in httpx.get(url + "/v1/classes").json()["classes"]}
    assert counts["c0"] + counts["c1"] + counts["c2"] == 12  # every write counted exactly once
    text_server.stop()
    text_server.start()  # and the folder on disk loads cleanly with the same counts
    assert {
        c["name"]: c["shots"] for c in httpx.get(text_server.url + "/v1/classes").json()["classes"]
    } == counts


def test_image_model_and_bad_images(cache_dir: Path, tmp_path: Path) -> None:
    classes = sorted((DATA_DIR / "omniglot" / "images_evaluation").iterdir())[:2]
    images = [sorted(c.iterdir())[:3] for c in classes]
    model = FewShotModel(embedder_for("efficientnet-lite0", cache=cache_dir), cache=cache_dir)
    model.fit(
        [p for group in images for p in group[:2]], [c.name for c in classes for _ in range(2)]
    )
    model.save(tmp_path / "model")
    server = Server(tmp_path / "model", cache_dir).start()
    try:
        b64 = [base64.b64encode(group[2].read_bytes()).decode() for group in images]
        preds = httpx.post(server.url + "/v1/predict", json={"images": b64}, timeout=60).json()[
            "predictions"
        ]
        assert {p["label"] for p in preds} <= {c.name for c in classes}
        r = httpx.post(
            server.url + "/v1/classes/extra/examples", json={"images": b64[:1]}, timeout=60
        )
        assert r.status_code == 200 and r.json()["classes"] == 3
        for body, message in [
            ({"texts": ["hello"]}, "embeds images: send base64 'images'"),
            ({"images": ["%%% not base64"]}, "image 0 is not valid base64"),
            (
                {"images": [base64.b64encode(b"plain text, not a PNG").decode()]},
                "image 0 is not a readable image",
            ),
        ]:
            r = httpx.post(server.url + "/v1/predict", json=body)
            assert r.status_code == 422 and message in r.json()["detail"]
    finally:
        server.stop()


def test_serve_refuses_a_foreign_folder(tmp_path: Path, cache_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "protoshot", "serve", str(tmp_path), "--port", str(_free_port())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "config.json is missing" in result.stderr


def test_micro_batcher_groups_waiting_requests_and_keeps_order() -> None:
    import threading

    from protoshot.service.batching import MicroBatcher

    gate = threading.Event()
    calls: list[int] = []

    def embed(items: list[int]) -> np.ndarray:
        gate.wait(5)  # the first pass blocks until every request is queued
        calls.append(len(items))
        return np.array(items, dtype=np.float32)[:, None] * 2

    batcher = MicroBatcher(embed, max_items=100)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(batcher.embed, [i, i + 100]) for i in range(6)]
        time.sleep(0.3)
        gate.set()
        results = [f.result(timeout=10) for f in futures]
    for i, r in enumerate(results):
        np.testing.assert_array_equal(r[:, 0], [2 * i, 2 * (i + 100)])
    assert sum(calls) == 12 and len(calls) < 6 and batcher.requests == 6

    def broken(items: list[int]) -> np.ndarray:
        raise ValueError("bad item")

    with pytest.raises(ValueError, match="bad item"):
        MicroBatcher(broken).embed([1])
