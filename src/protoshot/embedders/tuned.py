"""``tuned:<folder>``: a text encoder whose top layers were fine-tuned on a model's own shots
(:mod:`protoshot.finetune`).

The base model is built in PyTorch (the tuned layers replace its own), and the vectors carry
the tuned encoder's fingerprint, so the cache never mixes them with the frozen model's. A model
folder fitted with ``fit --finetune`` keeps its encoder in a sub-folder of its own and names it
by absolute path; :func:`beside` finds it again when the model folder has moved.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot.embedders._registry import (
    Embedder,
    Modality,
    create_embedder,
    format_spec,
    parse_spec,
    register_embedder,
)

PREFIX = "tuned:"


class TunedEmbedder:
    """The base text model with its last layers replaced by a :class:`TunedEncoder`'s."""

    def __init__(self, base: Embedder, encoder: Any, spec: str) -> None:
        from protoshot.finetune import TextParts

        if base.fingerprint != encoder.base["fingerprint"]:
            raise ValueError(
                f"{spec} was tuned from {encoder.base['spec']!r} with fingerprint "
                f"{str(encoder.base['fingerprint'])[:12]}..., but {base.spec!r} here has "
                f"{base.fingerprint[:12]}...: other weights or preprocessing"
            )
        layers = TextParts.of(base).layers[-encoder.settings.layers :]
        state = {k: torch.from_numpy(np.array(v)) for k, v in encoder.weights.items()}
        try:
            layers.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(
                f"{spec}: the tuned weights do not fit {base.spec!r} ({err})"
            ) from None
        self.base, self.encoder, self.spec = base, encoder, spec
        self.fingerprint: str = encoder.fingerprint
        self.dim: int = base.dim
        self.modality: Modality = base.modality

    @property
    def folder(self) -> Path:
        """Where the tuned encoder's files are (or will be, until :meth:`save`)."""
        return Path(self.spec.removeprefix(PREFIX))

    def save(self) -> Path:
        """Write the tuned encoder to :attr:`folder`."""
        return self.encoder.save(self.folder)

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        return self.base.embed(items)

    def __repr__(self) -> str:
        return f"<TunedEmbedder {self.spec!r} over {self.encoder.base['spec']!r}>"


def torch_spec(spec: str) -> str:
    """``spec`` with ``runtime=torch``: tuning and tuned layers need the PyTorch model.

    Raises
    ------
    ValueError
        For a model that is not a sentence-transformers text model, or an int8 runtime.
    """
    from protoshot.finetune import CAN_TUNE

    head, rest, options = parse_spec(spec)
    if head not in ("minilm", "st"):
        raise ValueError(f"{spec} cannot be fine-tuned: {CAN_TUNE}")
    if options.get("runtime", "torch") not in ("torch", "auto", "onnx"):
        raise ValueError(
            f"{spec}: an int8 model cannot be fine-tuned (its vectors are not the float32 "
            "model's); pick the model without ?runtime"
        )
    return format_spec(f"{head}:{rest}" if rest else head, **{**options, "runtime": "torch"})


def beside(spec: str, model_folder: str | os.PathLike[str]) -> str:
    """A ``tuned:`` spec whose folder is gone, pointed at the sub-folder of the same name in
    ``model_folder`` where there is one (the model folder was moved); other specs unchanged."""
    if not spec.startswith(PREFIX):
        return spec
    recorded = Path(spec.removeprefix(PREFIX))
    moved = Path(model_folder) / recorded.name
    return f"{PREFIX}{moved.resolve()}" if not recorded.exists() and moved.is_dir() else spec


@register_embedder(PREFIX, usage="tuned:<folder>")
def _create_tuned(folder: str, **options: Any) -> TunedEmbedder:
    """A text model fine-tuned at fit time (``protoshot fit --finetune``)."""
    from protoshot.finetune import TunedEncoder

    path = Path(folder).expanduser().resolve()
    encoder = TunedEncoder.load(path)
    base = create_embedder(torch_spec(str(encoder.base["spec"])), **options)
    return TunedEmbedder(base, encoder, f"{PREFIX}{path}")
