"""``adapter:<folder>``: a base embedder followed by a trained adapter (:mod:`protoshot.adapters`).

The base embedder's vectors go through the embedding cache under its own fingerprint (so they
are computed once, whichever adapters follow), and the adapter's vectors under the adapter's
fingerprint. A model folder fitted with an adapter names ``adapter:<absolute folder>``, so
``predict`` and ``serve`` rebuild both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protoshot.cache import CacheArg
from protoshot.embedders._registry import Embedder, Modality, create_embedder, register_embedder


class AdaptedEmbedder:
    """``adapter.transform(base vectors)``, with the adapter's fingerprint."""

    def __init__(self, base: Embedder, adapter: Any, spec: str, cache: CacheArg = True) -> None:
        if base.fingerprint != adapter.base["fingerprint"]:
            raise ValueError(
                f"{spec} was trained on vectors of {adapter.base['spec']!r} with fingerprint "
                f"{str(adapter.base['fingerprint'])[:12]}..., but {base.spec!r} here has "
                f"{base.fingerprint[:12]}...: other weights or preprocessing"
            )
        self.base, self.adapter, self.spec, self.cache = base, adapter, spec, cache
        self.fingerprint: str = adapter.fingerprint
        self.dim: int = adapter.dim
        self.modality: Modality = base.modality

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        from protoshot.embedders._embed import embed

        return self.adapter.transform(embed(list(items), self.base, cache=self.cache))

    def __repr__(self) -> str:
        return f"<AdaptedEmbedder {self.spec!r} over {self.base.spec!r}>"


@register_embedder("adapter:", usage="adapter:<folder>")
def _create_adapter(folder: str, cache: CacheArg = True, **options: Any) -> AdaptedEmbedder:
    """A base embedder followed by an adapter trained with ``protoshot adapt``."""
    from protoshot.adapters import Adapter

    path = Path(folder).expanduser().resolve()
    adapter = Adapter.load(path)
    base = create_embedder(adapter.base["spec"], **options)
    return AdaptedEmbedder(base, adapter, f"adapter:{path}", cache=cache)
