"""timm backend (``timm:<name>``): the classifier head removed (``num_classes=0``).

Preprocessing comes from the model's pretrained config through
``timm.data.resolve_data_config`` and ``timm.data.create_transform``.
"""

from __future__ import annotations

from typing import Any

import torch

from protoshot.embedders._base import BatchedEmbedder
from protoshot.embedders._fingerprint import fingerprint_of, hash_state_dict
from protoshot.embedders._images import load_rgb
from protoshot.embedders._registry import Modality, format_spec, register_embedder
from protoshot.embedders._runtime import as_bool, require


class TimmEmbedder(BatchedEmbedder):
    """Pooled features of a timm model.

    Parameters
    ----------
    name : str
        A timm model name, e.g. ``"vit_small_patch14_dinov2.lvd142m"`` or ``"hf-hub:..."``.
    pretrained : bool
        Load pretrained weights (``False`` gives random weights, for tests).
    device, precision, batch_size
        As for every backend.
    """

    modality: Modality = "image"

    def __init__(
        self,
        name: str,
        *,
        pretrained: bool | str = True,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int | str = 32,
    ):
        super().__init__(device=device, precision=precision, batch_size=batch_size)
        timm = require("timm", "timm")
        data = require("timm.data", "timm")
        pretrained = as_bool(pretrained, "pretrained")
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
        self._model = model.to(self.device).eval()
        config = data.resolve_data_config({}, model=model)
        self._transform = data.create_transform(**config)
        self._dim = int(model.num_features)
        self.spec = format_spec(f"timm:{name}", pretrained=None if pretrained else False)
        self.fingerprint = fingerprint_of(
            {
                "backend": "timm",
                "name": name,
                "state_dict_sha256": hash_state_dict(model),
                "preprocess": config,
                "precision": self.precision,
            }
        )

    def _forward(self, items: list[Any]) -> torch.Tensor:
        pixels = torch.stack([self._transform(load_rgb(item, extra="timm")) for item in items])
        return self._model(pixels.to(self.device))


@register_embedder("timm:", usage="timm:<name>", requires=(("timm", "timm"),))
def _create_timm(name: str, **options: Any) -> TimmEmbedder:
    """A timm image model, pooled features (weights from the Hugging Face hub or a file)."""
    return TimmEmbedder(name, **options)
