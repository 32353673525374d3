"""Hugging Face transformers backend (``hf:<id-or-path>``).

Image models (DINOv2, ViT, CLIP / SigLIP image towers, ...) are recognised by their image
processor, text models (BERT-style) by their tokenizer. Pooling defaults:

- CLIP / SigLIP (a model with ``get_image_features``): ``"image_features"``, the projected
  image embedding;
- CLIP / SigLIP vision towers alone: ``"pooler"`` (their pooled output);
- other image models (DINOv2, ViT): ``"cls"``, the final class token;
- text models: ``"mean"`` over the non-padding tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from protoshot._validation import positive_int
from protoshot.embedders._base import BatchedEmbedder
from protoshot.embedders._fingerprint import fingerprint_of, weights_identity
from protoshot.embedders._images import load_rgb
from protoshot.embedders._registry import Modality, format_spec, register_embedder
from protoshot.embedders._runtime import as_bool, quiet_transformers, require

POOLINGS = ("mean", "cls", "pooler", "image_features")
_POOLER_TOWERS = ("clip_vision_model", "siglip_vision_model", "siglip2_vision_model")
_DEFAULT_MAX_LENGTH = 512


class TransformersEmbedder(BatchedEmbedder):
    """Embeddings from a transformers model loaded with ``AutoModel``.

    Parameters
    ----------
    name_or_path : str
        Hub id or local folder (``save_pretrained`` layout).
    pooling : {"mean", "cls", "pooler", "image_features"}, optional
        How token states become one vector (default: by model kind, see the module doc).
    normalize : bool
        L2-normalise each vector.
    max_length : int, optional
        Text truncation in tokens (default: the tokenizer's limit, at most 512).
    revision : str, optional
        Hub revision.
    device, precision, batch_size
        As for every backend.
    """

    def __init__(
        self,
        name_or_path: str,
        *,
        pooling: str | None = None,
        normalize: bool | str = False,
        max_length: int | str | None = None,
        revision: str | None = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int | str = 32,
    ):
        super().__init__(device=device, precision=precision, batch_size=batch_size)
        transformers = require("transformers", "hf")
        with quiet_transformers():
            model = transformers.AutoModel.from_pretrained(name_or_path, revision=revision)
            self._processor, self.modality = _load_processor(
                transformers, name_or_path, revision, model
            )
        self._model = model.to(self.device).eval()
        self.pooling = pooling or _default_pooling(model, self.modality)
        _check_pooling(self.pooling, model, self.modality)
        self.normalize = as_bool(normalize, "normalize")
        self.max_length = None
        if self.modality == "text":
            self.max_length = positive_int(
                max_length or _text_limit(self._processor), "max_length", from_text=True
            )
        self.spec = format_spec(
            f"hf:{name_or_path}",
            pooling=pooling,
            normalize=self.normalize or None,
            max_length=max_length,
            revision=revision,
        )
        self.fingerprint = fingerprint_of(
            {
                "backend": "transformers",
                "model_type": model.config.model_type,
                "weights": weights_identity(name_or_path, revision, model),
                "preprocess": _describe(self._processor),
                "max_length": self.max_length,
                "pooling": self.pooling,
                "normalize": self.normalize,
                "precision": self.precision,
            }
        )
        # one blank input tells the output size, whatever the pooling and projection
        probe = "" if self.modality == "text" else np.zeros((32, 32, 3), dtype=np.uint8)
        self._dim = int(self.embed([probe]).shape[1])

    def _forward(self, items: list[Any]) -> torch.Tensor:
        if self.modality == "image":
            images = [load_rgb(item, extra="hf") for item in items]
            inputs = self._processor(images=images, return_tensors="pt")
            mask = None
        else:
            inputs = self._processor(
                items,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            mask = inputs["attention_mask"]
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        vectors = self._pool(inputs, mask)
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
        return vectors

    def _pool(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        if self.pooling == "image_features":
            out = self._model.get_image_features(pixel_values=inputs["pixel_values"])
            # transformers 4 returns the tensor, 5 an output whose pooler_output holds it
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        out = self._model(**inputs)
        if self.pooling == "pooler":
            return out.pooler_output
        states = out.last_hidden_state
        if self.pooling == "cls":
            return states[:, 0]
        if mask is None:
            return states.mean(dim=1)
        weights = mask.to(self.device, states.dtype).unsqueeze(-1)
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _load_processor(
    transformers: Any, name_or_path: str, revision: str | None, model: Any
) -> tuple[Any, Modality]:
    """The image processor of an image model, else the tokenizer of a text model."""
    if hasattr(model, "get_image_features") or hasattr(model.config, "num_channels"):
        processor = transformers.AutoImageProcessor.from_pretrained(name_or_path, revision=revision)
        return processor, "image"
    return transformers.AutoTokenizer.from_pretrained(name_or_path, revision=revision), "text"


def _default_pooling(model: Any, modality: Modality) -> str:
    if modality == "text":
        return "mean"
    if hasattr(model, "get_image_features"):
        return "image_features"
    return "pooler" if model.config.model_type in _POOLER_TOWERS else "cls"


def _check_pooling(pooling: str, model: Any, modality: Modality) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    if pooling == "image_features" and not hasattr(model, "get_image_features"):
        raise ValueError(
            f"pooling='image_features' needs a CLIP/SigLIP-style model, "
            f"got model type {model.config.model_type!r}"
        )
    if hasattr(model, "get_image_features") and pooling != "image_features":
        raise ValueError(
            f"a {model.config.model_type!r} model embeds images with pooling='image_features', "
            f"got {pooling!r}"
        )


def _text_limit(tokenizer: Any) -> int:
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit and limit <= _DEFAULT_MAX_LENGTH else _DEFAULT_MAX_LENGTH


def _describe(processor: Any) -> dict[str, Any]:
    """The processor's class and settings (tokenizers: their class; their files are hashed)."""
    settings = processor.to_dict() if hasattr(processor, "to_dict") else {}
    return {"class": type(processor).__name__, **settings}


@register_embedder("hf:", usage="hf:<id-or-path>", requires=(("transformers", "hf"),))
def _create_hf(name: str, **options: Any) -> TransformersEmbedder:
    """A transformers model (DINOv2, CLIP / SigLIP image towers, ViT, BERT-style text)."""
    return TransformersEmbedder(name, **options)
