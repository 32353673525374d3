"""No single request can take the service down or change the model by failing: budgets per
request, load shedding, names, read-only serving, and JSON errors that leave the state as it was
(each error test checks the classes, the shots and the folder's bytes before and after)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoshot.data import load_source
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for
from protoshot.service import Budget
from protoshot.service.batching import MicroBatcher, Overloaded
from tests._embed_fixtures import save_image_model
from tests.conftest import DATA_DIR
from tests.test_service import serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def texts() -> dict[str, list[str]]:
    samples = load_source("banking77:test", root=DATA_DIR)
    intents = np.unique(samples.labels)[:3]
    return {
        c: [t for t, y in zip(samples.items, samples.labels, strict=True) if y == c][:6]
        for c in intents
    }


@pytest.fixture
def folder(texts, cache_dir: Path, tmp_path: Path) -> Path:
    model = FewShotModel(embedder_for("minilm"), cache=cache_dir)
    items = [t for c in texts for t in texts[c][:3]]
    model.fit(items, [c for c in texts for _ in range(3)])
    return model.save(tmp_path / "model")


def state(url: str, folder: Path) -> tuple[Any, str]:
    """What must not change on an error: the served classes and shots, and the folder's bytes."""
    served = httpx.get(url + "/v1/classes").json()["classes"]
    files = sorted(
        (p.name, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in folder.iterdir()
        if p.name != ".protoshot.lock"
    )
    return served, json.dumps(files)


def refused(response: httpx.Response, status: int) -> str:
    """The one-line JSON error of ``response``, checked; returns its detail."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "/tmp" not in detail
    return detail


def test_a_bad_name_answers_422_and_changes_nothing(folder: Path, cache_dir: Path) -> None:
    with serving(folder, cache_dir) as url:
        before = state(url, folder)
        for name in ("refund%00", "tab%09name", "%20", "x" * 201):
            response = httpx.post(
                f"{url}/v1/classes/{name}/examples", json={"texts": ["refund please"]}
            )
            assert "class name" in refused(response, 422)
        response = httpx.put(f"{url}/v1/classes/bad%00/description", json={"text": "words"})
        refused(response, 422)
        assert state(url, folder) == before


def test_unexpected_errors_are_json_500s_that_change_nothing(
    folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(folder, cache_dir) as url:
        before = state(url, folder)
        monkeypatch.setattr(FewShotModel, "add_embeddings", lambda *a, **k: 1 / 0)
        detail = refused(httpx.post(f"{url}/v1/classes/new/examples", json={"texts": ["hi"]}), 500)
        assert detail == "internal error (ZeroDivisionError); the model is unchanged"
        monkeypatch.undo()

        def disk_full(*args: Any, **kwargs: Any) -> None:
            raise OSError(28, "No space left on device", str(folder / "journal.log"))

        # the journal's append runs out of space (os.pwrite is used by nothing else here)
        monkeypatch.setattr("protoshot.store.journal.os.pwrite", disk_full)
        detail = refused(httpx.post(f"{url}/v1/classes/new/examples", json={"texts": ["hi"]}), 500)
        assert (
            detail
            == "the update could not be saved (No space left on device), so the model is unchanged"
        )
        assert state(url, folder) == before


def test_read_only_serving(folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for options in ({"read_only": True}, {}):
        if not options:  # a folder the server cannot write (root may write anywhere: injected)
            monkeypatch.setattr("protoshot.service.app.os.access", lambda path, mode: False)
        with serving(folder, cache_dir, **options) as url:
            before = state(url, folder)
            assert httpx.get(url + "/healthz").json()["read_only"] is True
            answer = httpx.post(url + "/v1/predict", json={"texts": ["I lost my card"]})
            assert answer.status_code == 200
            for response in (
                httpx.post(f"{url}/v1/classes/new/examples", json={"texts": ["hi"]}),
                httpx.put(f"{url}/v1/classes/new/description", json={"text": "hi"}),
                httpx.delete(f"{url}/v1/classes/new"),
            ):
                assert "read-only" in refused(response, 403)
            assert state(url, folder) == before
        assert not (folder / ".protoshot.lock").exists() or options == {}


def png(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def test_request_budgets_refuse_before_decoding(tmp_path: Path, cache_dir: Path) -> None:
    folder, _ = save_image_model(tmp_path, cache_dir)
    with serving(folder, cache_dir) as url:
        # twenty 7000 x 7000 images: each under the per-image limit, 980 megapixels in all
        bomb = png(7000, 7000)
        detail = refused(
            httpx.post(url + "/v1/predict", json={"images": [bomb] * 20}, timeout=60), 413
        )
        assert "980,000,000 pixels in all, over the limit of 100,000,000" in detail
        assert httpx.post(url + "/v1/predict", json={"images": [png(40, 40)]}).status_code == 200
    with serving(folder, cache_dir, budget=Budget(pixels=3000)) as url:
        detail = refused(httpx.post(url + "/v1/predict", json={"images": [png(40, 40)] * 2}), 413)
        assert "3,200 pixels in all" in detail


def test_a_text_budget_and_unicode_checks(folder: Path, cache_dir: Path) -> None:
    with serving(folder, cache_dir, budget=Budget(chars=1000)) as url:
        before = state(url, folder)
        long = httpx.post(url + "/v1/predict", json={"texts": ["word " * 1000]})
        assert "5,000 characters in all, over the limit of 1,000" in refused(long, 413)
        body = '{"texts": ["\\ud800 lone"]}'  # valid JSON, not valid Unicode
        response = httpx.post(
            url + "/v1/predict", content=body, headers={"content-type": "application/json"}
        )
        assert "lone surrogate" in refused(response, 422)
        assert state(url, folder) == before


def test_the_batcher_sheds_load_beyond_its_queue() -> None:
    import threading

    release = threading.Event()

    def slow(items: list[Any]) -> np.ndarray:
        release.wait(10)
        return np.zeros((len(items), 2), np.float32)

    batcher = MicroBatcher(slow, max_items=4, max_waiting=3)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.embed, ["a"])  # taken by the worker, which then blocks
        while batcher.passes == 0:
            pass
        waiting = pool.submit(batcher.embed, ["b", "c"])
        while batcher._waiting < 2:
            pass
        with pytest.raises(Overloaded, match="2 items are already waiting"):
            batcher.embed(["d", "e"])
        release.set()
        assert first.result().shape == (1, 2) and waiting.result().shape == (2, 2)
    assert batcher.shed == 1
    batcher.close()


def test_the_service_answers_503_with_retry_after_when_full(folder: Path, cache_dir: Path) -> None:
    batch = [f"please help with my card number {i}" for i in range(64)]
    with serving(folder, cache_dir, max_waiting=64) as url:
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.post(url + "/v1/predict", json={"texts": batch}, timeout=120),
                    range(8),
                )
            )
        shed = [a for a in answers if a.status_code == 503]
        assert shed and all(a.headers["retry-after"] == "1" for a in shed)
        assert all(a.status_code in (200, 503) for a in answers)
        assert httpx.get(url + "/healthz").json()["shed_requests"] == len(shed)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        ["/v1/predict", "/v1/classes/{}/examples", "/v1/classes/{}/description", "/v1/classes/{}"]
    ),
    name=st.text(min_size=0, max_size=30),
    body=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["texts", "images", "top_k", "text"]),
            st.one_of(
                st.integers(-5, 300),
                st.text(max_size=20),
                st.lists(st.text(max_size=15), max_size=4),
                st.lists(st.integers(), max_size=3),
                st.none(),
            ),
            max_size=3,
        ),
    ),
    method=st.sampled_from(["POST", "PUT", "DELETE"]),
)
def test_fuzzing_the_api_never_gives_a_500_and_errors_change_nothing(
    fuzz_server: tuple[str, Path], path: str, name: str, body: Any, method: str
) -> None:
    url, folder = fuzz_server
    before = state(url, folder)
    target = url + path.format(quote(name, safe="") or "x")  # any name, percent-encoded
    response = httpx.request(method, target, json=body, timeout=60)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["detail"], str)
        assert state(url, folder) == before


@pytest.fixture(scope="module")
def fuzz_server(texts, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    model = FewShotModel(embedder_for("minilm"), cache=cache_dir)
    model.fit([t for c in texts for t in texts[c][:3]], [c for c in texts for _ in range(3)])
    folder = model.save(tmp_path_factory.mktemp("fuzz") / "model")
    with serving(folder, cache_dir) as url:
        yield url, folder


def test_admission_sheds_requests_beyond_those_in_progress(folder: Path, cache_dir: Path) -> None:
    batch = [f"please help with my card number {i}" for i in range(48)]
    with serving(folder, cache_dir, max_in_flight=1) as url:
        with ThreadPoolExecutor(6) as pool:
            calls = [
                pool.submit(httpx.post, url + "/v1/predict", json={"texts": batch}, timeout=120)
                for _ in range(6)
            ]
            assert httpx.get(url + "/healthz").status_code == 200  # liveness is always let in
            answers = [c.result() for c in calls]
        shed = [a for a in answers if a.status_code == 503]
        assert shed and any(a.status_code == 200 for a in answers)
        assert all("requests in progress (limit 1)" in refused(a, 503) for a in shed)
        assert all(a.headers["retry-after"] == "1" for a in shed)
