"""The HTTP service, tested as users meet it: real uvicorn servers on loopback, HTTP requests.

Most tests run the server in a thread of this process (the app is the same one `protoshot serve`
runs); the restart tests run `protoshot serve` as a process, to stop and kill -9 it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from typer.testing import CliRunner

import protoshot.cli._commands  # noqa: F401  (registers the commands)
from protoshot.cli import app as cli_app
from protoshot.data import load_source
from protoshot.estimators import PrototypeClassifier
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for
from protoshot.service import create_app
from protoshot.service.batching import MicroBatcher
from protoshot.store import LOCK_FILE, FolderInUseError
from tests.conftest import DATA_DIR

Banking = tuple[list[str], np.ndarray]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, alive: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server at {url} exited during start-up")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"the server at {url} did not start within 60 s")


@contextmanager
def serving(model_dir: Path, cache_dir: Path, **options: Any) -> Iterator[str]:
    """``create_app(model_dir)`` under uvicorn in a thread, on a loopback socket bound here."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(model_dir, cache=cache_dir, **options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_until_up(url, thread.is_alive)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class ServeProcess:
    """``protoshot serve MODEL_DIR`` as a process on a free loopback port."""

    def __init__(self, model_dir: Path, cache_dir: Path) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.args = [sys.executable, "-m", "protoshot", "serve", str(model_dir), "--port",
                     str(port), "--cache-dir", str(cache_dir)]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        self.proc = subprocess.Popen(self.args, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _wait_until_up(self.url, lambda: self.proc is not None and self.proc.poll() is None)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


def counts(url: str) -> dict[Any, int]:
    return {c["name"]: c["shots"] for c in httpx.get(url + "/v1/classes").json()["classes"]}


def add(url: str, name: str, texts: list[str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/classes/{name}/examples", json={"texts": texts}, timeout=60)


@pytest.fixture(scope="module")
def banking() -> Banking:
    """BANKING77 test texts of 6 intents."""
    samples = load_source("banking77:test", root=DATA_DIR)
    keep = np.isin(samples.labels, np.unique(samples.labels)[:6])
    return [t for t, k in zip(samples.items, keep, strict=True) if k], samples.labels[keep]


@pytest.fixture(scope="module")
def fitted(banking: Banking, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MiniLM model of the 6 intents, 5 shots each, saved once for the module."""
    texts, labels = banking
    support = [i for c in np.unique(labels) for i in np.flatnonzero(labels == c)[:5]]
    model = FewShotModel(embedder_for("minilm"), cache=cache_dir)
    model.fit([texts[i] for i in support], labels[support])
    return model.save(tmp_path_factory.mktemp("fitted") / "model")


@pytest.fixture
def model_dir(fitted: Path, tmp_path: Path) -> Path:
    """A fresh copy of the fitted model for one test to change."""
    return Path(shutil.copytree(fitted, tmp_path / "model"))


def snapshot(folder: Path) -> dict[str, bytes]:
    """The model's files (not the server's lock file)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != LOCK_FILE}


@pytest.mark.slow
def test_predict_list_add_remove(model_dir: Path, cache_dir: Path, banking: Banking) -> None:
    texts, labels = banking
    with serving(model_dir, cache_dir) as url:
        r = httpx.post(url + "/v1/predict", json={"texts": texts[10:30], "top_k": 3})
        assert r.status_code == 200
        preds = r.json()["predictions"]
        assert len(preds) == 20 and all(len(p["top_k"]) == 3 for p in preds)
        assert np.mean([p["label"] == y for p, y in zip(preds, labels[10:30], strict=True)]) > 0.6
        info = r.json()["model"]
        assert info.pop("method").startswith("auto: named-")  # text labels: names as a prior
        assert info == {
            "embedder": "minilm",
            "modality": "text",
            "classes": 6,
            "threshold": None,
        }
        before = counts(url)
        assert set(before.values()) == {5}

        assert add(url, "crypto", ["buy bitcoin", "ethereum wallet"]).json() == {
            "name": "crypto",
            "shots": 2,
            "classes": 7,
        }
        first = next(iter(before))
        assert add(url, first, ["one more"]).json()["shots"] == 6
        r = httpx.post(url + "/v1/predict", json={"texts": ["I want to buy bitcoin"]})
        assert r.json()["predictions"][0]["label"] == "crypto"
        # any label works in the path: slashes (percent-encoded or not), spaces, accents
        assert (
            add(url, "billing%2Frefund", ["refund to my bill"]).json()["name"] == "billing/refund"
        )
        assert add(url, "billing/refund", ["bill refund"]).json()["shots"] == 2
        assert add(url, "carte bleue é", ["ma carte"]).json()["name"] == "carte bleue é"
        r = httpx.delete(url + "/v1/classes/billing/refund")
        assert r.json() == {"name": "billing/refund", "shots": 0, "classes": 8}
        assert httpx.delete(url + "/v1/classes/crypto").json()["classes"] == 7

        served = counts(url)
        assert served == {**before, first: 6, "carte bleue é": 1}
        # every acknowledged update is already in the folder
        assert FewShotModel.load(model_dir, cache=cache_dir).class_counts() == served

        health = httpx.get(url + "/healthz").json()
        assert health["status"] == "ok" and health["classes"] == 7
        spec = httpx.get(url + "/openapi.json").json()
        assert set(spec["paths"]) == {
            "/v1/predict",
            "/v1/classes",
            "/v1/classes/{name}/examples",
            "/readyz",
            "/metrics",
            "/v1/classes/{name}/description",
            "/v1/classes/{name}",
            "/healthz",
        }
        delete = spec["paths"]["/v1/classes/{name}"]["delete"]
        assert {"404", "409", "422"} <= set(delete["responses"])
        assert httpx.get(url + "/docs").status_code == 200


def _chunked(size: int) -> Iterator[bytes]:
    """A JSON body sent without a Content-Length, in 10 kB chunks."""
    yield b'{"texts": ["'
    for _ in range(size // 10_000):
        yield b"a" * 10_000
    yield b'"]}'


@pytest.mark.slow
def test_bad_requests_answer_4xx_and_leave_the_folder_alone(
    model_dir: Path, cache_dir: Path
) -> None:
    on_disk = snapshot(model_dir)
    with serving(model_dir, cache_dir, max_batch=64, max_body_bytes=500_000) as url:
        predict, post = url + "/v1/predict", httpx.post
        as_json = {"content-type": "application/json"}
        png = base64.b64encode(b"\x89PNG not really").decode()
        cases = [
            (httpx.delete(url + "/v1/classes/nope"), 404, "no class 'nope'"),
            (post(url + "/v1/classes/x/examples", json={"texts": []}), 422, "no items"),
            (post(url + "/v1/classes/x/examples", json={}), 422, "no items"),
            (post(predict, json={"images": [png]}), 422, "minilm embeds text: send 'texts'"),
            (post(predict, json={"texts": ["a"] * 65}), 422, "65 items exceed the limit of 64"),
            (post(predict, json={"texts": ["a"], "images": ["b"]}), 422, "not both"),
            (post(predict, json={"texts": "a"}), 422, "body.texts: Input should be a valid list"),
            (post(predict, json={"texts": ["a"], "top_k": 0}), 422, "body.top_k: Input should be"),
            (post(predict, content=b"{not json", headers=as_json), 422, "not valid JSON"),
            (post(predict, json={"texts": ["a" * 600_000]}), 413, "exceeds the limit of 500000"),
            (post(predict, content=_chunked(600_000), headers=as_json), 413, "exceeds the limit"),
        ]
        for response, status, message in cases:
            assert response.status_code == status, response.text
            detail = response.json()["detail"]
            assert isinstance(detail, str) and message in detail, detail
        assert snapshot(model_dir) == on_disk  # nothing written by a failed request

        names = list(counts(url))
        for name in names[:-1]:
            assert httpx.delete(f"{url}/v1/classes/{name}").status_code == 200
        r = httpx.delete(f"{url}/v1/classes/{names[-1]}")
        assert r.status_code == 409 and "is the last class" in r.json()["detail"]
        assert counts(url) == {names[-1]: 5}


@pytest.mark.slow
def test_integer_labels_from_the_path(banking: Banking, cache_dir: Path, tmp_path: Path) -> None:
    texts, _ = banking
    model = FewShotModel(embedder_for("minilm"), cache=cache_dir)
    model.fit(texts[:6], [0, 0, 1, 1, 2, 2]).save(tmp_path / "model")
    with serving(tmp_path / "model", cache_dir) as url:
        assert add(url, "7", ["seven"]).json() == {"name": 7, "shots": 1, "classes": 4}
        r = add(url, "seven", ["seven"])
        assert r.status_code == 422 and "is not an integer" in r.json()["detail"]
        assert httpx.delete(url + "/v1/classes/1").json()["classes"] == 3


@pytest.mark.slow
def test_an_update_that_cannot_be_saved_is_not_acknowledged(
    model_dir: Path, cache_dir: Path
) -> None:
    with serving(model_dir, cache_dir) as url:
        before = counts(url)
        model_dir.rename(model_dir.with_name("moved"))
        model_dir.write_text("a file where the model folder was")
        r = add(url, "new", ["a new class"])
        assert r.status_code == 500 and "could not be saved" in r.json()["detail"]
        assert httpx.delete(f"{url}/v1/classes/{next(iter(before))}").status_code == 500
        assert counts(url) == before


@pytest.mark.slow
def test_a_served_folder_is_refused_to_other_writers(model_dir: Path, cache_dir: Path) -> None:
    with serving(model_dir, cache_dir) as url:
        before = counts(url)
        name = str(next(iter(before)))
        with pytest.raises(FolderInUseError, match=r"in use by protoshot serve \(pid \d+\)"):
            create_app(model_dir, cache=cache_dir)
        result = CliRunner().invoke(cli_app, ["remove", str(model_dir), name])
        assert result.exit_code == 1 and "in use by protoshot serve" in result.stderr
        assert counts(url) == before
    # the server let go of the folder when it stopped
    assert CliRunner().invoke(cli_app, ["remove", str(model_dir), name]).exit_code == 0


@pytest.mark.slow
def test_restart_and_kill_keep_every_acknowledged_update(model_dir: Path, cache_dir: Path) -> None:
    server = ServeProcess(model_dir, cache_dir).start()
    try:
        assert add(server.url, "new_a", ["alpha one", "alpha two"]).status_code == 200
        server.stop()  # a clean stop
        server.start()
        assert counts(server.url)["new_a"] == 2
        assert add(server.url, "new_b", ["beta"]).status_code == 200
        server.stop(signal.SIGKILL)  # killed right after an acknowledged update
    finally:
        server.stop()
    with serving(model_dir, cache_dir) as url:  # started again on the same folder
        after = counts(url)
    assert after["new_a"] == 2 and after["new_b"] == 1 and len(after) == 8


@pytest.mark.slow
def test_the_journal_is_compacted_in_the_background(
    model_dir: Path, cache_dir: Path, banking: Banking, monkeypatch: pytest.MonkeyPatch
) -> None:
    from protoshot import store

    texts, _ = banking
    monkeypatch.setattr(store, "needs_compaction", lambda folder, position: position.length > 4000)
    journals = set()
    with serving(model_dir, cache_dir) as url:
        for i in range(8):  # each a ~1.7 kB entry: a compaction every few updates
            assert add(url, f"grown_{i % 3}", [texts[i]]).status_code == 200
            assert httpx.post(url + "/v1/predict", json={"texts": texts[:2]}).status_code == 200
            journals.add(json.loads((model_dir / "config.json").read_text())["journal_file"])
        served = counts(url)
    assert len(journals) >= 2  # new snapshots were installed while the server ran
    assert len(list(model_dir.glob("journal-*.log"))) <= 2  # older ones tidied away
    again = FewShotModel.load(model_dir, cache=cache_dir)
    assert again.class_counts() == served and served["grown_0"] == 3


@pytest.mark.slow
def test_concurrent_predictions_and_updates(
    model_dir: Path, cache_dir: Path, banking: Banking
) -> None:
    texts, _ = banking

    def read(i: int) -> list[int]:
        classes = []
        for j in range(4):
            start = 4 * (4 * i + j)
            r = httpx.post(
                url + "/v1/predict", json={"texts": texts[start : start + 4]}, timeout=60
            )
            assert r.status_code == 200 and len(r.json()["predictions"]) == 4
            classes.append(r.json()["model"]["classes"])
        return classes

    def write(i: int) -> list[int]:
        return [add(url, f"c{(i + j) % 3}", [f"example {i} {j}"]).status_code for j in range(3)]

    with serving(model_dir, cache_dir) as url, ThreadPoolExecutor(12) as pool:
        reads = [pool.submit(read, i) for i in range(8)]
        writes = [pool.submit(write, i) for i in range(4)]
        assert all(f.result() == [200] * 3 for f in writes)
        assert all(6 <= n <= 9 for f in reads for n in f.result())  # each a consistent model
        served = counts(url)
    assert sum(served[f"c{k}"] for k in range(3)) == 12  # every update counted exactly once
    assert FewShotModel.load(model_dir, cache=cache_dir).class_counts() == served


def _png(size: tuple[int, int], mode: str = "RGB") -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.slow
def test_image_model_and_bad_images(cache_dir: Path, tmp_path: Path) -> None:
    classes = sorted((DATA_DIR / "omniglot" / "images_evaluation").iterdir())[:2]
    images = [sorted(c.iterdir())[:3] for c in classes]
    model = FewShotModel(embedder_for("efficientnet-lite0", cache=cache_dir), cache=cache_dir)
    model.fit(
        [p for group in images for p in group[:2]], [c.name for c in classes for _ in range(2)]
    )
    model.save(tmp_path / "model")
    with serving(tmp_path / "model", cache_dir) as url:
        b64 = [base64.b64encode(group[2].read_bytes()).decode() for group in images]
        truncated = base64.b64encode(images[0][2].read_bytes()[:100]).decode()
        r = httpx.post(url + "/v1/predict", json={"images": b64, "top_k": 2}, timeout=60)
        preds = r.json()["predictions"]
        assert [p["label"] for p in preds] == [c.name for c in classes]
        assert r.json()["model"]["modality"] == "image"
        r = httpx.post(url + "/v1/classes/extra/examples", json={"images": b64[:1]}, timeout=60)
        assert r.status_code == 200 and r.json()["classes"] == 3
        for body, status, message in [
            ({"texts": ["hello"]}, 422, "efficientnet-lite0 embeds images: send base64 'images'"),
            ({"images": ["%%% not base64"]}, 422, "image 0 is not valid base64"),
            ({"images": [b64[0], truncated]}, 422, "image 1 is not a readable image"),
            ({"images": [base64.b64encode(b"plain text").decode()]}, 422, "not a readable image"),
            ({"images": [_png((8000, 7000), "1")]}, 413, "image 0 has 8000 x 7000 pixels"),
        ]:
            r = httpx.post(url + "/v1/predict", json=body)
            assert r.status_code == status and message in r.json()["detail"], r.text
        assert counts(url)["extra"] == 1


def _newer_format(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "format_version": 99}))


def _no_embedder(folder: Path) -> None:
    shutil.rmtree(folder)
    PrototypeClassifier().fit(np.eye(3), [0, 1, 2]).save(folder)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spoil", "error", "message"),
    [
        (lambda d: (d / "config.json").unlink(), FileNotFoundError, "config.json is missing"),
        (lambda d: (d / "config.json").write_text("{"), ValueError, "not a valid protoshot"),
        (_newer_format, ValueError, "format 99 by a newer protoshot"),
        (
            lambda d: next(d.glob("*.safetensors")).write_bytes(b"spoilt"),
            ValueError,
            "does not match config.json's checksum",
        ),
        (_no_embedder, ValueError, "was not saved by FewShotModel"),
    ],
)
def test_bad_model_folders_are_refused(
    spoil: Any, error: type[Exception], message: str, fitted: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(fitted, tmp_path / "model"))
    spoil(folder)
    with pytest.raises(error, match=message):
        create_app(folder, cache=False)
    result = CliRunner().invoke(cli_app, ["serve", str(folder), "--port", str(_free_port())])
    assert result.exit_code == 1
    assert result.stderr.startswith("error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_micro_batcher_groups_waiting_requests_and_keeps_order() -> None:
    gate = threading.Event()
    calls: list[int] = []

    def embed(items: list[int]) -> np.ndarray:
        gate.wait(5)  # the first pass blocks until every request is queued
        if -1 in items:
            raise ValueError("bad item -1")
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

    # a failing pass is retried request by request: only the bad one fails
    gate.clear()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(batcher.embed, items) for items in ([1], [-1], [3])]
        time.sleep(0.3)
        gate.set()
        np.testing.assert_array_equal(futures[0].result(timeout=10), [[2]])
        with pytest.raises(ValueError, match="bad item -1"):
            futures[1].result(timeout=10)
        np.testing.assert_array_equal(futures[2].result(timeout=10), [[6]])
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.embed([1])


def test_requests_of_a_pass_share_one_call_of_their_finish() -> None:
    gate, finished = threading.Event(), []

    def embed(items: list[int]) -> np.ndarray:
        gate.wait(5)  # the first pass blocks until every request is queued
        return np.array(items, dtype=np.float32)[:, None]

    def double(vectors: np.ndarray) -> list[float]:
        finished.append(len(vectors))
        return [float(v[0]) * 2 for v in vectors]

    def fail(vectors: np.ndarray) -> list[float]:
        raise ValueError("cannot finish")

    batcher = MicroBatcher(embed, max_items=100)
    first = batcher.submit([0])  # its pass starts at once, and waits on the gate
    time.sleep(0.2)
    shared = [batcher.submit([i, i + 10], double) for i in (1, 2, 3)]
    plain = batcher.submit([4])
    failing = batcher.submit([5], fail)
    dropped = batcher.submit([6], double)
    assert dropped.cancel()  # cancelled before its pass: never embedded, never finished
    gate.set()
    assert [f.result(timeout=10) for f in shared] == [[2.0, 22.0], [4.0, 24.0], [6.0, 26.0]]
    np.testing.assert_array_equal(plain.result(timeout=10), [[4.0]])
    with pytest.raises(ValueError, match="cannot finish"):
        failing.result(timeout=10)
    np.testing.assert_array_equal(first.result(timeout=10), [[0.0]])
    assert finished[0] == 6  # the three requests' rows in one call
    batcher.close()


@pytest.mark.slow
def test_a_class_described_over_http(model_dir: Path, cache_dir: Path) -> None:
    with serving(model_dir, cache_dir) as url:
        r = httpx.put(
            f"{url}/v1/classes/crypto/description",
            json={"text": "buying and holding bitcoin or ethereum"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "crypto" and r.json()["shots"] == 0
        answer = httpx.post(url + "/v1/predict", json={"texts": ["can I buy bitcoin here"]})
        assert answer.json()["predictions"][0]["label"] == "crypto"
        empty = httpx.put(f"{url}/v1/classes/crypto/description", json={"text": ""})
        assert empty.status_code == 422 and "text" in empty.json()["detail"]
    reloaded = FewShotModel.load(model_dir, cache=cache_dir)
    assert reloaded.class_counts()["crypto"] == 0
