"""Gathering rows of an embedding table for chunks of episodes, the evaluator's bulk work."""

from __future__ import annotations

import numpy as np
import torch


class Gatherer:
    """Reads rows of an embedding table ``x`` [n, D] for chunks of episodes, reusing buffers.

    On a CPU the table rarely fits in cache, so memory traffic sets the pace: fresh
    multi-megabyte tensors per chunk cost page faults that dominate, and gathering into the
    same memory every chunk avoids them (about 2x at D = 768, see ``benchmarks/episodes.py``).
    """

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.sq_norms = (
            x.to(torch.float64 if x.dtype == torch.float64 else torch.float32).pow(2).sum(-1)
        )
        self._buffers: dict[str, torch.Tensor] = {}

    def take(
        self, name: str, index: torch.Tensor, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rows ``source[index]`` (default the table), in a reused buffer called ``name``."""
        src = self.x if source is None else source
        size = (index.numel(), *src.shape[1:])
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < size[0]:
            buf = self._buffers[name] = src.new_empty(size)
        return torch.index_select(src, 0, index, out=buf[: size[0]])

    def products(self, index: np.ndarray, refs: torch.Tensor) -> torch.Tensor:
        """``[E, R, M]`` products of the rows ``index`` [E, ...] (R per episode) with ``refs`` [E, M, D]."""
        e = index.shape[0]
        rows = self.take("products", torch.from_numpy(index).to(self.x.device).reshape(-1))
        return torch.bmm(rows.view(e, -1, self.x.shape[1]), refs.transpose(1, 2))
