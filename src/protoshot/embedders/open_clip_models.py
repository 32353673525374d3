"""open_clip backend (``open_clip:<arch>/<pretrained>``): image embeddings of a CLIP model."""

from __future__ import annotations

from typing import Any

import torch

from protoshot.embedders._base import BatchedEmbedder
from protoshot.embedders._fingerprint import fingerprint_of, hash_state_dict
from protoshot.embedders._images import load_rgb
from protoshot.embedders._registry import Modality, register_embedder
from protoshot.embedders._runtime import require


class OpenClipEmbedder(BatchedEmbedder):
    """``model.encode_image`` of an open_clip model, with its own preprocessing.

    Parameters
    ----------
    name : str
        ``"<arch>/<pretrained>"``, e.g. ``"ViT-B-32/laion2b_s34b_b79k"``; ``"<arch>"`` alone
        gives random weights.
    device, precision, batch_size
        As for every backend.
    """

    modality: Modality = "image"

    def __init__(
        self,
        name: str,
        *,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int | str = 32,
    ):
        super().__init__(device=device, precision=precision, batch_size=batch_size)
        open_clip = require("open_clip", "open-clip")
        arch, _, pretrained = name.partition("/")
        model, _, transform = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained or None
        )
        self._model = model.to(self.device).eval()
        self._transform = transform
        self._dim = getattr(model.visual, "output_dim", None)
        self.spec = f"open_clip:{name}"
        self.fingerprint = fingerprint_of(
            {
                "backend": "open_clip",
                "arch": arch,
                "pretrained": pretrained,
                "state_dict_sha256": hash_state_dict(model.visual),
                "preprocess": repr(transform),
                "precision": self.precision,
            }
        )

    def _forward(self, items: list[Any]) -> torch.Tensor:
        pixels = torch.stack([self._transform(load_rgb(item, extra="open-clip")) for item in items])
        return self._model.encode_image(pixels.to(self.device))


@register_embedder(
    "open_clip:", usage="open_clip:<arch>/<pretrained>", requires=(("open_clip", "open-clip"),)
)
def _create_open_clip(name: str, **options: Any) -> OpenClipEmbedder:
    """An OpenCLIP image tower (architecture / pretrained tag)."""
    return OpenClipEmbedder(name, **options)
