"""What an operator needs: API keys, CORS, Prometheus metrics, readiness, an access log, and
one-line errors for a device the machine lacks; over real servers on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest

from protoshot.data import load_source
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for
from tests._embed_fixtures import save_image_model
from tests.conftest import DATA_DIR
from tests.test_service import _free_port, _wait_until_up, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    samples = load_source("banking77:test", root=DATA_DIR)
    intents = np.unique(samples.labels)[:3]
    texts = [
        t
        for c in intents
        for t in [x for x, y in zip(samples.items, samples.labels, strict=True) if y == c][:3]
    ]
    model = FewShotModel(embedder_for("minilm"), cache=cache_dir)
    model.fit(texts, [c for c in intents for _ in range(3)])
    return model.save(tmp_path_factory.mktemp("ops") / "model")


def test_api_keys_guard_updates_or_everything(folder: Path, cache_dir: Path) -> None:
    add = {"texts": ["one more example"]}
    with serving(folder, cache_dir, api_keys=["k1", "k2"]) as url:
        assert httpx.post(url + "/v1/predict", json={"texts": ["hi"]}).status_code == 200
        missing = httpx.post(url + "/v1/classes/new/examples", json=add)
        assert missing.status_code == 401 and "an API key is needed" in missing.json()["detail"]
        wrong = httpx.delete(url + "/v1/classes/new", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "the API key is not valid"
        bearer = {"Authorization": "Bearer k2"}
        assert (
            httpx.post(url + "/v1/classes/new/examples", json=add, headers=bearer).status_code
            == 200
        )
        assert httpx.delete(url + "/v1/classes/new", headers={"X-API-Key": "k1"}).status_code == 200
    with serving(folder, cache_dir, api_keys=["k1"], protect_all=True) as url:
        assert httpx.post(url + "/v1/predict", json={"texts": ["hi"]}).status_code == 401
        assert httpx.get(url + "/v1/classes").status_code == 401
        assert httpx.get(url + "/healthz").status_code == 200  # probes stay open
        assert httpx.get(url + "/readyz").status_code == 200
        ok = httpx.post(url + "/v1/predict", json={"texts": ["hi"]}, headers={"X-API-Key": "k1"})
        assert ok.status_code == 200


def test_cors_is_off_unless_an_origin_is_given(folder: Path, cache_dir: Path) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with serving(folder, cache_dir) as url:
        answer = httpx.options(url + "/v1/predict", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    with serving(folder, cache_dir, cors_origins=["https://app.example"]) as url:
        answer = httpx.options(url + "/v1/predict", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(
            url + "/v1/predict", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_metrics_and_readiness(folder: Path, cache_dir: Path) -> None:
    with serving(folder, cache_dir) as url:
        assert httpx.get(url + "/readyz").json() == {"status": "ready"}
        for _ in range(3):
            httpx.post(url + "/v1/predict", json={"texts": ["where is my card"]})
        httpx.post(url + "/v1/classes/a%00b/examples", json={"texts": ["x"]})  # a 422
        text = httpx.get(url + "/metrics").text
        assert 'protoshot_requests_total{route="/v1/predict",status="200"} 3.0' in text
        assert (
            'protoshot_requests_total{route="/v1/classes/{name:path}/examples",status="422"} 1.0'
            in text
        )
        assert 'protoshot_request_seconds_count{route="/v1/predict"} 3.0' in text
        assert "protoshot_embedding_batch_items_count" in text
        assert "protoshot_classes 3.0" in text and "protoshot_queue_items 0.0" in text
        assert 'protoshot_model_info{embedder="minilm"' in text and 'method="auto: ' in text
        updated = max(c["updated"] for c in httpx.get(url + "/v1/classes").json()["classes"])
        name = "protoshot_model_last_update_timestamp_seconds "
        stamp = float(next(line for line in text.splitlines() if line.startswith(name)).split()[1])
        assert abs(stamp - utc(updated).timestamp()) < 1e-3


def test_the_access_log_and_quiet(folder: Path, cache_dir: Path) -> None:
    for quiet in (False, True):
        port = _free_port()
        args = [sys.executable, "-m", "protoshot", "serve", str(folder), "--port", str(port),
                "--cache-dir", str(cache_dir), "--read-only", *(["--quiet"] if quiet else [])]  # fmt: skip
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(url, lambda p=proc: p.poll() is None)
            httpx.post(url + "/v1/predict", json={"texts": ["hi"]})
        finally:
            proc.terminate()
            err, _ = proc.communicate(timeout=30)
        logged = '"POST /v1/predict HTTP/1.1" 200' in err
        assert logged != quiet, err


def test_a_device_the_machine_lacks_is_one_line(folder: Path) -> None:
    import torch
    from typer.testing import CliRunner

    import protoshot.cli._commands  # noqa: F401
    from protoshot.cli import app

    missing = torch.cuda.device_count() if torch.cuda.is_available() else 0
    result = CliRunner().invoke(app, ["serve", str(folder), "--device", f"cuda:{missing}"])
    assert result.exit_code == 1
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]  # one line
    assert "is not available here" in result.stderr


def test_docs_are_served_from_the_package_not_a_cdn(folder: Path, cache_dir: Path) -> None:
    import re

    with serving(folder, cache_dir) as url:
        page = httpx.get(url + "/docs")
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/docs-assets/") for s in sources), sources
        for source in sources:
            assert httpx.get(url + source).status_code == 200
        assert "cdn" not in page.text.lower()


def test_one_class_by_name(folder: Path, cache_dir: Path) -> None:
    with serving(folder, cache_dir, read_only=True) as url:
        listed = httpx.get(url + "/v1/classes").json()["classes"][0]
        one = httpx.get(f"{url}/v1/classes/{listed['name']}").json()
        assert one["name"] == listed["name"] and one["shots"] == listed["shots"] == 3
        assert one["described"] is True  # text classes carry their name as a prior
        missing = httpx.get(url + "/v1/classes/no-such-class")
        assert missing.status_code == 404 and missing.json()["detail"] == "no class 'no-such-class'"


def test_a_class_says_when_it_last_changed(folder: Path, cache_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(folder, tmp_path / "m")
    with serving(tmp_path / "m", cache_dir) as url:
        listed = {c["name"]: c["updated"] for c in httpx.get(url + "/v1/classes").json()["classes"]}
        name, other = list(listed)[:2]
        before = datetime.now(timezone.utc)
        assert httpx.post(f"{url}/v1/classes/{name}/examples", json={"texts": ["more"]}).is_success
        after = httpx.get(f"{url}/v1/classes/{name}").json()["updated"]
        assert utc(after) >= before > utc(listed[name])
        assert httpx.get(f"{url}/v1/classes/{other}").json()["updated"] == listed[other]
    with serving(tmp_path / "m", cache_dir) as url:  # saved with the model
        assert httpx.get(f"{url}/v1/classes/{name}").json()["updated"] == after


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))  # Python 3.10 reads no "Z"


def test_images_uploaded_as_multipart_files(cache_dir: Path, tmp_path: Path) -> None:
    import base64

    folder, files = save_image_model(tmp_path, cache_dir)
    with serving(folder, cache_dir) as url:
        upload = [("file", (p.name, p.read_bytes(), "image/png")) for p in files[:2]]
        answer = httpx.post(url + "/v1/predict", files=upload, data={"top_k": "2"})
        assert answer.status_code == 200, answer.text
        as_json = httpx.post(
            url + "/v1/predict",
            json={
                "images": [base64.b64encode(p.read_bytes()).decode() for p in files[:2]],
                "top_k": 2,
            },
        )
        assert answer.json()["predictions"] == as_json.json()["predictions"]
        assert len(answer.json()["predictions"][0]["top_k"]) == 2
        empty = httpx.post(url + "/v1/predict", files={"note": (None, "no file here")})
        assert empty.status_code == 422 and "holds no file" in empty.json()["detail"]
        bad = httpx.post(
            url + "/v1/predict", files=[("file", ("x.png", b"not an image", "image/png"))]
        )
        assert bad.status_code == 422 and "not a readable image" in bad.json()["detail"]


def test_empty_keys_are_refused_and_keys_are_trimmed(folder: Path, cache_dir: Path) -> None:
    from protoshot.service import create_app

    with pytest.raises(ValueError, match="an API key is empty"):
        create_app(folder, cache=cache_dir, api_keys=["k1", " "])
    with serving(folder, cache_dir, api_keys=[" k1 "]) as url:
        add = httpx.post(
            url + "/v1/classes/x/examples", json={"texts": ["x"]}, headers={"X-API-Key": "k1"}
        )
        assert add.status_code == 200
        httpx.delete(url + "/v1/classes/x", headers={"X-API-Key": "k1"})


def test_stalled_uploads_cannot_hold_the_admission_slots(folder: Path, cache_dir: Path) -> None:
    import socket

    with serving(folder, cache_dir, max_in_flight=2) as url:
        host, port = url.removeprefix("http://").split(":")
        stalled = []
        for _ in range(4):  # more stalled bodies than slots
            sock = socket.create_connection((host, int(port)))
            sock.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            stalled.append(sock)
        try:
            assert (
                httpx.post(url + "/v1/predict", json={"texts": ["hi"]}, timeout=30).status_code
                == 200
            )
            assert httpx.get(url + "/readyz").status_code == 200
            assert httpx.get(url + "/metrics").status_code == 200
        finally:
            for sock in stalled:
                sock.close()


def test_an_upload_top_k_is_validated_like_json(cache_dir: Path, tmp_path: Path) -> None:
    folder, files = save_image_model(tmp_path, cache_dir)
    with serving(folder, cache_dir) as url:
        upload = [("file", (files[0].name, files[0].read_bytes(), "image/png"))]
        bad = httpx.post(url + "/v1/predict", files=upload, data={"top_k": "²"})
        assert bad.status_code == 422 and "top_k" in bad.json()["detail"]
        httpx.post(url + "/v1/predict", files=upload)
        text = httpx.get(url + "/metrics").text
        assert (
            'protoshot_requests_total{route="/v1/predict",status="200"} 1.0' in text
        )  # not "unmatched"
