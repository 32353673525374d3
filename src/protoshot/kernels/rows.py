"""``RowReader``: weighted sums and products of an embedding table's rows, the evaluator's bulk work."""

from __future__ import annotations

import numpy as np
import torch

from protoshot.maths.distances import squared_norms


class RowReader:
    """Reads rows of an embedding table ``x`` [n, D] for chunks of episodes.

    Two operations carry the evaluator: weighted sums of rows (prototypes) and products of rows
    with each episode's references (scores). On a CPU both are fused numba kernels
    (:mod:`protoshot.kernels.numba_cpu`) that read each row straight from the table; elsewhere (GPUs,
    bfloat16) they are ``embedding_bag`` and ``index_select`` + ``bmm``, gathering into buffers
    reused across chunks, since fresh multi-megabyte tensors per chunk cost page faults.
    """

    def __init__(self, x: torch.Tensor, *, fused: bool | None = None) -> None:
        self.x = x
        self.fused = (
            x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            if fused is None
            else fused
        )
        self.sq_norms = squared_norms(
            x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
        )
        self._buffers: dict[str, torch.Tensor] = {}
        if self.fused:
            from protoshot.kernels import numba_cpu

            numba_cpu.set_threads(torch.get_num_threads())

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

    def weighted_sums(
        self, index: torch.Tensor, ways: np.ndarray, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """``[E, N, D]`` means of the rows ``index`` [E, N, K], or sums weighted by ``weights``.

        A fused gather-and-add: the rows are never copied out of the table.
        """
        e, n, k = index.shape
        if weights is None:
            weights = torch.full((e, n, k), 1.0 / k, dtype=self.x.dtype, device=self.x.device)
        weights = weights.to(self.x.dtype)
        if self.fused:
            from protoshot.kernels import numba_cpu

            return torch.from_numpy(
                numba_cpu.bag_sums(self.x.numpy(), index.numpy(), ways, weights.numpy())
            )
        sums = torch.nn.functional.embedding_bag(
            index.reshape(e * n, k),
            self.x,
            mode="sum",
            per_sample_weights=weights.reshape(e * n, k),
        )
        return sums.view(e, n, -1)

    def products(self, index: torch.Tensor, ways: np.ndarray, refs: torch.Tensor) -> torch.Tensor:
        """``[E, N * Q, M]`` products of the rows ``index`` [E, N, Q] with ``refs`` [E, M, D].

        ``ways`` [E, N] gives the class of each way, so the fused kernel can visit them class by
        class.
        """
        if self.fused:
            from protoshot.kernels import numba_cpu

            out = numba_cpu.gather_products(
                self.x.numpy(), index.numpy(), ways, refs.contiguous().numpy()
            )
            return torch.from_numpy(out)
        e = index.shape[0]
        rows = self.take("products", index.reshape(-1))
        return torch.bmm(rows.view(e, -1, self.x.shape[1]), refs.transpose(1, 2))
