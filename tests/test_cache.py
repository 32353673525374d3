"""The embedding cache: content keys, batched look-ups, crash safety, concurrent processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from protoshot.cache import DB_NAME, EmbeddingCache, default_cache_dir, item_key
from protoshot.embedders import CallableEmbedder, embed
from tests._embed_fixtures import TinyNet, text_features, vectors_of

REPO = Path(__file__).resolve().parents[1]
FP = "f" * 64


def _keys(n: int) -> list[bytes]:
    return [item_key(f"item {i}") for i in range(n)]


def _text_embedder() -> CallableEmbedder:
    return CallableEmbedder(text_features, name="text-features", modality="text")


# -- item keys -------------------------------------------------------------------------------
def test_item_key_hashes_content_not_str(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    assert item_key(a) == item_key(b)  # content-addressed: two paths, one key
    assert item_key(str(a), "image") == item_key(a)  # a str is a path for an image model
    assert item_key(str(a), "text") != item_key(a)  # ... and text for a text model
    assert item_key(b"same bytes") != item_key(a)  # kinds are tagged
    assert item_key("x") != item_key(b"x")


def test_item_key_arrays_and_images() -> None:
    x = np.arange(6, dtype=np.float32)
    assert item_key(x) == item_key(x.copy())
    assert item_key(x) != item_key(x.astype(np.float64))
    assert item_key(x) != item_key(x.reshape(2, 3))
    assert item_key(x[::2]) == item_key(np.ascontiguousarray(x[::2]))
    gray = Image.new("L", (4, 3), 7)
    assert item_key(gray) == item_key(Image.new("L", (4, 3), 7))
    assert item_key(gray) != item_key(gray.convert("RGB"))
    assert item_key(gray) != item_key(Image.new("L", (3, 4), 7))


def test_item_key_rejects_other_types() -> None:
    with pytest.raises(TypeError, match=r"type 'dict'.*expected str"):
        item_key({"a": 1})
    with pytest.raises(TypeError, match="object array"):
        item_key(np.array([object()]))


# -- store -----------------------------------------------------------------------------------
def test_put_get_keeps_key_order_and_reports_misses(tmp_path: Path) -> None:
    keys = _keys(2500)  # more than one SELECT ... IN chunk
    vectors = np.random.default_rng(0).normal(size=(2500, 5)).astype(np.float32)
    with EmbeddingCache(tmp_path) as cache:
        cache.put(FP, keys[::2], vectors[::2], spec="toy")
        query = [keys[7], keys[4], keys[4], keys[2000], b"unknown"]
        found, hits = cache.get(FP, query)
    np.testing.assert_array_equal(found, [False, True, True, True, False])
    np.testing.assert_array_equal(hits, vectors[[4, 4, 2000]])
    assert hits.dtype == np.float32


def test_get_of_an_unknown_model_finds_nothing(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        found, hits = cache.get(FP, _keys(3))
        assert not found.any() and hits.shape[0] == 0
        assert cache.get(FP, [])[0].shape == (0,)


def test_put_existing_keys_keeps_the_first_vector(tmp_path: Path) -> None:
    keys = _keys(2)
    with EmbeddingCache(tmp_path) as cache:
        cache.put(FP, keys, np.ones((2, 3), np.float32))
        cache.put(FP, keys, np.zeros((2, 3), np.float32))
        np.testing.assert_array_equal(cache.get(FP, keys)[1], np.ones((2, 3)))


def test_put_checks_shapes(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path) as cache:
        with pytest.raises(ValueError, match=r"shape \[2, dim\].*got \[3, 4\]"):
            cache.put(FP, _keys(2), np.zeros((3, 4)))
        cache.put(FP, _keys(2), np.zeros((2, 4)))
        with pytest.raises(ValueError, match="cached with dim 4, got vectors of dim 5"):
            cache.put(FP, _keys(2), np.zeros((2, 5)))


def test_report_size_and_clear(tmp_path: Path) -> None:
    other = "0123456789" + "a" * 54
    with EmbeddingCache(tmp_path) as cache:
        cache.put(FP, _keys(10), np.zeros((10, 4), np.float32), spec="big")
        cache.put(other, _keys(3), np.zeros((3, 2), np.float32), spec="small")
        report = cache.report()
        assert [(u.spec, u.entries, u.bytes, u.dim) for u in report] == [
            ("big", 10, 160, 4),
            ("small", 3, 24, 2),
        ]
        cache.put("c" * 64, _keys(3000), np.zeros((3000, 384), np.float32), spec="huge")
        before = cache.size_bytes()
        assert cache.clear("huge") == 3000
        assert cache.size_bytes() < before / 4  # the space is given back
        assert cache.clear("big") == 10
        assert cache.clear("01234567") == 3  # a fingerprint prefix
        assert cache.report() == []
        with pytest.raises(ValueError, match="no cached model matches 'big'"):
            cache.clear("big")


def test_store_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    EmbeddingCache(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_location_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROTOSHOT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    with EmbeddingCache() as cache:
        assert cache.path == tmp_path / "c" / DB_NAME
    monkeypatch.delenv("PROTOSHOT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "protoshot"


# -- embed through the cache -----------------------------------------------------------------
def test_embed_hits_misses_and_order(tmp_path: Path) -> None:
    embedder = _text_embedder()
    texts = ["a cat", "the dog barks", "a cat", "hi"]
    first, stats = embed(texts, embedder, cache=tmp_path, return_stats=True)
    np.testing.assert_array_equal(first, text_features(texts))
    assert (stats.hits, stats.misses, stats.embedded) == (0, 4, 3)  # the duplicate ran once
    more = ["hi", "new one", "a cat"]
    second, stats = embed(more, embedder, cache=str(tmp_path), return_stats=True)
    np.testing.assert_array_equal(second, text_features(more))
    assert (stats.hits, stats.misses, stats.embedded) == (2, 1, 1)
    assert stats.hit_rate == pytest.approx(2 / 3)


def test_embed_without_cache_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROTOSHOT_CACHE_DIR", str(tmp_path))
    vectors, stats = embed(["x", "yy"], _text_embedder(), cache=None, return_stats=True)
    assert vectors.shape == (2, 4) and stats.hits == 0 and stats.misses == 2
    assert not (tmp_path / DB_NAME).exists()


def test_embed_rejects_a_bad_cache_argument() -> None:
    with pytest.raises(TypeError, match=r"cache must be an EmbeddingCache.*got int"):
        embed(["x"], _text_embedder(), cache=3)  # type: ignore[arg-type]


def test_models_do_not_share_entries(tmp_path: Path) -> None:
    items = vectors_of(4)
    a = embed(items, CallableEmbedder(TinyNet(seed=0)), cache=tmp_path)
    b, stats = embed(items, CallableEmbedder(TinyNet(seed=1)), cache=tmp_path, return_stats=True)
    assert stats.hits == 0 and not np.allclose(a, b)


@given(
    cached=st.lists(st.integers(0, 30), max_size=20),
    query=st.lists(st.integers(0, 30), max_size=30),
    batch_size=st.integers(1, 7),
)
def test_cached_equals_uncached(cached: list[int], query: list[int], batch_size: int) -> None:
    embedder = CallableEmbedder(TinyNet())
    pool = vectors_of(31)
    with tempfile.TemporaryDirectory() as folder, EmbeddingCache(folder) as cache:
        embed([pool[i] for i in cached], embedder, cache=cache)
        items = [pool[i] for i in query]
        got, stats = embed(items, embedder, cache=cache, batch_size=batch_size, return_stats=True)
    want = embed(items, embedder, cache=None)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert stats.hits == sum(i in set(cached) for i in query)


# -- crash safety and concurrency (real processes) --------------------------------------------
SCRIPT = """
import json, pathlib, sys, time
sys.path.insert(0, {repo!r})
from protoshot.embedders import CallableEmbedder, embed
from tests._embed_fixtures import TinyNet, vectors_of

cache, start, n, delay, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
embedder = CallableEmbedder(TinyNet(delay=delay), name="tiny")
if len(sys.argv) > 6:  # a start line shared with other processes
    barrier = pathlib.Path(sys.argv[6])
    (barrier / f"ready-{{start}}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.01)
began = time.time()
_, stats = embed(vectors_of(n, start), embedder, cache=cache, batch_size=batch, return_stats=True)
print(json.dumps({{"hits": stats.hits, "misses": stats.misses, "span": [began, time.time()]}}))
"""


def _spawn(tmp_path: Path, *args: object) -> subprocess.Popen[str]:
    script = tmp_path / "embed_script.py"
    script.write_text(SCRIPT.format(repo=str(REPO)))
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _count(db_path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_sigkill_mid_embedding_keeps_finished_batches(tmp_path: Path) -> None:
    cache_dir, batch = tmp_path / "cache", 10
    process = _spawn(tmp_path, cache_dir, 0, 5000, 0.01, batch)
    deadline = time.monotonic() + 60
    while _count(cache_dir / DB_NAME) < 5 * batch:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the child wrote nothing in 60 s"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    with EmbeddingCache(cache_dir) as cache:
        assert cache._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        saved = cache.report()[0].entries
        assert saved >= 5 * batch and saved % batch == 0  # whole batches only
        items = vectors_of(saved + 25)
        embedder = CallableEmbedder(TinyNet(), name="tiny")
        vectors, stats = embed(items, embedder, cache=cache, return_stats=True)
    assert (stats.hits, stats.misses) == (saved, 25)
    np.testing.assert_allclose(vectors, embed(items, embedder, cache=None), rtol=1e-6)


def test_two_processes_embed_into_one_cache_at_once(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    # overlapping items, small batches: many competing write transactions
    first = _spawn(tmp_path, cache_dir, 0, 600, 0.005, 5, tmp_path)
    second = _spawn(tmp_path, cache_dir, 300, 600, 0.005, 5, tmp_path)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 2:  # both loaded: start them together
        assert time.monotonic() < deadline, "the children did not start in 60 s"
        crashed = [p for p in (first, second) if p.poll() is not None]
        assert not crashed, crashed[0].communicate()[1] if crashed else ""
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    spans = []
    for process, (out, err) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, err
        stats = json.loads(out)
        assert stats["hits"] + stats["misses"] == 600
        spans.append(stats["span"])
    assert max(s[0] for s in spans) < min(s[1] for s in spans), "the runs did not overlap"
    items = vectors_of(900)
    embedder = CallableEmbedder(TinyNet(), name="tiny")
    with EmbeddingCache(cache_dir) as cache:
        assert cache.report()[0].entries == 900
        vectors, stats = embed(items, embedder, cache=cache, return_stats=True)
    assert stats.hits == 900
    np.testing.assert_allclose(vectors, embed(items, embedder, cache=None), rtol=1e-6)
