"""Frozen foundation models as embedders, a registry of them, and the cache-aware ``embed``.

>>> from protoshot.embedders import create_embedder, embed
>>> vectors = embed(["hello", "world"], create_embedder("minilm"))  # doctest: +SKIP

Specs: the bundled ``minilm`` (all-MiniLM-L6-v2, text, 384-d) and ``efficientnet-lite0``
(images, 1280-d), or ``st:<name-or-path>``, ``hf:<id-or-path>``, ``timm:<name>``,
``open_clip:<arch>/<pretrained>``, each optionally followed by ``?option=value&...``. Any
callable or ``torch.nn.Module`` becomes an embedder through :class:`CallableEmbedder`.
Each backend imports its heavy library only when it is created.
"""

from __future__ import annotations

from protoshot.embedders._embed import embed, embed_loader
from protoshot.embedders._registry import (
    Embedder,
    Modality,
    create_embedder,
    describe_embedders,
    list_embedders,
    lower_part,
    register_embedder,
    upper_part,
)
from protoshot.embedders.custom import CallableEmbedder

__all__ = [
    "CallableEmbedder",
    "Embedder",
    "Modality",
    "create_embedder",
    "describe_embedders",
    "embed",
    "embed_loader",
    "list_embedders",
    "lower_part",
    "register_embedder",
    "upper_part",
]
