"""An embedder known by what a model folder recorded, built on its first uncached batch.

A saved model names its embedder's spec, fingerprint, dimension and modality. Vectors in the
cache under that fingerprint and the folder's prototypes come from the same model, so they
agree whatever is installed now: a command whose items are all cached needs no model at all
(and so starts in about a second instead of loading a transformer). The real embedder is built
only when something new must be embedded, and its fingerprint is checked then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from protoshot.embedders._registry import Embedder, Modality


class DeferredEmbedder:
    """Stands in for the embedder ``build()`` makes, which must have ``fingerprint``."""

    def __init__(
        self,
        spec: str,
        fingerprint: str,
        dim: int,
        modality: Modality,
        build: Callable[[], Embedder],
        *,
        where: object = "the model folder",
    ) -> None:
        self.spec, self.fingerprint, self.dim, self.modality = spec, fingerprint, dim, modality
        self._build, self._where = build, where
        self._embedder: Embedder | None = None

    @property
    def built(self) -> bool:
        """Whether the real embedder has been made."""
        return self._embedder is not None

    def load(self) -> Embedder:
        """The real embedder, built now if it was not yet.

        Raises
        ------
        ValueError
            If its fingerprint is not the recorded one (other weights, preprocessing or
            version): its vectors would not match the folder's prototypes.
        """
        if self._embedder is None:
            embedder = self._build()
            check_fingerprint(embedder, self.fingerprint, self._where)
            self._embedder = embedder
        return self._embedder

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        return self.load().embed(items)

    def __repr__(self) -> str:
        state = "built" if self.built else "not built yet"
        return f"<DeferredEmbedder {self.spec!r}, {state}>"


def check_fingerprint(embedder: Embedder, recorded: object, where: object) -> None:
    """A ValueError unless ``embedder`` has the ``recorded`` fingerprint."""
    if embedder.fingerprint != recorded:
        raise ValueError(
            f"the embedder {embedder.spec!r} has fingerprint {embedder.fingerprint[:12]}..., but "
            f"{where} was fitted with {str(recorded)[:12]}...: its prototypes would not match "
            "these vectors (other weights, preprocessing or version)"
        )
