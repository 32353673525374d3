"""ONNX Runtime beside PyTorch: the same vectors (so one fingerprint), int8 as a model of its
own, and every way an exported file can go wrong ending in a rebuild or PyTorch, never a wrong
vector."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from protoshot.data import load_source
from protoshot.embedders import _onnx, create_embedder
from protoshot.model import FewShotModel
from tests.conftest import DATA_DIR


class _Scale(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


class _ThroughNumpy(torch.nn.Module):
    """Custom code an exporter cannot follow: the traced graph keeps the example's answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.sort(x.numpy(), axis=1))


def _export(module: torch.nn.Module):
    def export(path: Path) -> None:
        torch.onnx.export(
            module, (torch.ones(2, 3),), str(path), input_names=["x"],
            dynamic_axes={"x": {0: "batch"}}, dynamo=False,
        )  # fmt: skip

    return export


def _check(module: torch.nn.Module):
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    return lambda session: _onnx.largest_difference(
        session.run(None, {"x": x})[0], module(torch.from_numpy(x))
    )


def test_a_session_is_exported_once_checked_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "scale.onnx"
    session = _onnx.session(path, _export(_Scale()), _check(_Scale()))
    assert session.run(None, {"x": np.ones((1, 3), np.float32)})[0].tolist() == [[2, 2, 2]]
    stamp = path.stat().st_mtime_ns

    def never(_: Path) -> None:
        raise AssertionError("exported again")

    _onnx.session(path, never, _check(_Scale()))
    assert path.stat().st_mtime_ns == stamp


def test_a_truncated_or_stale_file_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "scale.onnx"
    _onnx.session(path, _export(_Scale()), _check(_Scale()))
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="rebuilding scale.onnx: ONNX Runtime cannot load it"):
        _onnx.session(path, _export(_Scale()), _check(_Scale()))
    _onnx.session(tmp_path / "other.onnx", _export(torch.nn.Identity()), None)
    shutil.copy(tmp_path / "other.onnx", path)  # loads, but answers for another model
    with pytest.warns(UserWarning, match=r"rebuilding scale.onnx: its vectors differ .* by up to"):
        session = _onnx.session(path, _export(_Scale()), _check(_Scale()))
    assert _check(_Scale())(session) == 0


def test_an_export_that_fails_or_disagrees_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    def unsupported(_: Path) -> None:
        raise RuntimeError("Exporting the operator 'aten::fancy' is not supported")

    with pytest.raises(_onnx.ExportError, match=r"the export failed .*aten::fancy"):
        _onnx.session(tmp_path / "a.onnx", unsupported, None)
    module = _ThroughNumpy()
    with pytest.raises(_onnx.ExportError, match="it cannot run a sample"):
        _onnx.session(tmp_path / "b.onnx", _export(module), _check(module))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.onnx.failed.json",
        "b.onnx.failed.json",
    ]

    def never(_: Path) -> None:
        raise AssertionError("exported again")

    # remembered: the next process does not pay for the export again (until versions change)
    with pytest.raises(_onnx.ExportError, match=r"cannot run a sample .*found before; delete"):
        _onnx.session(tmp_path / "b.onnx", never, _check(module))


def test_the_difference_is_on_the_vectors_scale() -> None:
    assert _onnx.largest_difference(np.array([[100.001]]), np.array([[100.0]])) == pytest.approx(
        1e-5, rel=1e-6
    )
    assert _onnx.largest_difference(np.array([[0.5]]), torch.tensor([[0.25]])) == 0.25
    assert _onnx.largest_difference(np.zeros((2, 3)), np.zeros((2, 4))) == float("inf")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    samples = load_source("banking77:test", root=DATA_DIR)
    long = " ".join(samples.items[:60])  # past MiniLM's 256-token window: truncated alike
    return [*samples.items[:200:4], long, "a", "🙂 Ünïcödé"]


@pytest.mark.slow
def test_minilm_in_onnx_runtime_gives_pytorchs_vectors(texts: list[str], tmp_path: Path) -> None:
    eager = create_embedder("minilm?runtime=torch")
    onnx = create_embedder("minilm", runtime="onnx", onnx_dir=tmp_path)
    assert onnx.runtime == "onnx" and list(tmp_path.glob("st-*.onnx"))
    got, want = onnx.embed(texts), eager.embed(texts)
    assert np.abs(got - want).max() <= 1e-5  # the bound
    assert onnx.fingerprint == eager.fingerprint and onnx.spec == eager.spec == "minilm"
    auto = create_embedder("minilm", onnx_dir=tmp_path)  # the CPU default, from the kept file
    assert auto.runtime == "onnx"
    np.testing.assert_allclose(auto.embed(texts[:5]), got[:5], atol=1e-6)  # other padding


@pytest.mark.slow
def test_int8_is_a_model_of_its_own(
    texts: list[str], tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROTOSHOT_CACHE_DIR", str(tmp_path / "home"))  # where a load exports
    int8 = create_embedder("minilm?runtime=onnx-int8")
    float32 = create_embedder("minilm?runtime=torch")
    assert int8.spec == "minilm?runtime=onnx-int8" and int8.fingerprint != float32.fingerprint
    cosine = (int8.embed(texts) * float32.embed(texts)).sum(1)
    assert cosine.min() > 0.97 and cosine.mean() > 0.99
    model = FewShotModel(int8, cache=cache_dir).fit(["card lost", "hello"], ["lost", "greet"])
    model.save(tmp_path / "m")
    loaded = FewShotModel.load(tmp_path / "m", cache=cache_dir)  # re-creates int8 from the spec
    assert loaded.embedder.fingerprint == int8.fingerprint
    assert loaded.predict(["I lost my card"])[0].label == "lost"


@pytest.mark.slow
def test_a_model_onnx_runtime_cannot_take_runs_in_pytorch_with_one_warning(
    texts: list[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embedder = create_embedder("minilm", runtime="onnx", onnx_dir=tmp_path / "file" / "onnx")
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1 and messages[0].startswith(
        "minilm: running in PyTorch, not ONNX Runtime: the export failed"
    )
    assert embedder.runtime == "torch"
    want = create_embedder("minilm?runtime=torch").embed(texts[:5])
    np.testing.assert_array_equal(embedder.embed(texts[:5]), want)


@pytest.mark.slow
def test_a_checked_export_runs_without_loading_the_model(texts: list[str], tmp_path: Path) -> None:
    import subprocess
    import sys

    full = create_embedder("minilm", runtime="onnx", onnx_dir=tmp_path)  # exports and checks
    assert type(full).__name__ == "SentenceTransformerEmbedder"
    light = create_embedder("minilm", onnx_dir=tmp_path)
    assert type(light).__name__ == "CheckedExportEmbedder"
    assert (light.spec, light.fingerprint, light.dim) == (full.spec, full.fingerprint, full.dim)
    ragged = [*texts, "  spaces around  ", "UPPER CASE TEXT", ""]
    np.testing.assert_array_equal(light.embed(ragged), full.embed(ragged))  # same tokens, same file
    script = (
        "import sys; from protoshot.embedders import create_embedder; "
        f"e = create_embedder('minilm', onnx_dir={str(tmp_path)!r}); e.embed(['hello']); "
        "print(type(e).__name__, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["CheckedExportEmbedder", "False"]
    (tmp_path / next(p.name for p in tmp_path.glob("st-*.onnx"))).write_bytes(b"changed")
    assert type(create_embedder("minilm", onnx_dir=tmp_path)).__name__ != "CheckedExportEmbedder"
