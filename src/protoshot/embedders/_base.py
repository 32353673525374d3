"""The batching loop every backend shares: sort texts by length, run batches, keep order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from protoshot._device import best_device
from protoshot._validation import positive_int
from protoshot.embedders._registry import Modality
from protoshot.embedders._runtime import (
    Precision,
    batches,
    check_texts,
    inference,
    resolve_precision,
    text_batches,
    to_numpy,
)


class BatchedEmbedder:
    """Base of the torch backends: subclasses set the attributes and define ``_forward``.

    ``embed`` runs ``_forward`` on batches of ``batch_size`` items under
    ``torch.inference_mode()`` (and autocast on a GPU when ``precision`` asks for it), moves
    each batch to the CPU as float32 and returns the rows in input order. Texts are sorted by
    length first, as sentence-transformers does, and a batch ends where lengths drop sharply
    (:func:`~protoshot.embedders._runtime.text_batches`), so each batch pads little: also a
    service's pass of a few requests' texts of any lengths.
    """

    spec: str
    fingerprint: str
    modality: Modality

    def __init__(
        self,
        *,
        device: str | torch.device | None,
        precision: str | None,
        batch_size: int | str,
    ):
        self.device = best_device(device)
        self.precision: Precision = resolve_precision(precision, self.device)
        self.batch_size = positive_int(batch_size, "batch_size", from_text=True)
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Length of each vector (0 while unknown: a callable before its first batch)."""
        return self._dim or 0

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """Embed ``items`` in order.

        Parameters
        ----------
        items : sequence
            Texts for a text model; paths, PIL images or arrays for an image model.

        Returns
        -------
        float32 [n_items, dim]
        """
        items = list(items)
        chunks = batches(len(items), self.batch_size)
        if self.modality == "text":
            texts = check_texts(items, self.spec)
            order = np.argsort([-len(t) for t in texts], kind="stable")
            items = [texts[i] for i in order]
            chunks = text_batches(items, self.batch_size)
        parts = []
        for chunk in chunks:
            with inference(self.device, self.precision):
                output = self._forward(items[chunk])
            parts.append(to_numpy(output, chunk.stop - chunk.start))
            if self._dim is None:
                self._dim = parts[-1].shape[1]
            elif parts[-1].shape[1] != self._dim:
                raise ValueError(
                    f"{self.spec} returned vectors of dim {parts[-1].shape[1]}, "
                    f"expected {self._dim} as before"
                )
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.concatenate(parts)
        if self.modality == "text":
            vectors[order] = vectors.copy()
        return vectors

    def _forward(self, items: list[Any]) -> torch.Tensor | np.ndarray:
        """Preprocess one batch and run the model: [len(items), dim]."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r} on {self.device}>"
