"""Reading an embedding table's rows in bulk: the one place the evaluator's heavy loops live.

- :mod:`~protoshot.kernels.rows`: :class:`RowReader`, weighted sums of rows and products of rows
  with references, for chunks of episodes; picks the kernel for the device.
- :mod:`~protoshot.kernels.numba_cpu`: the fused CPU kernels (numba), compiled on first use.

On GPUs the same operations are ``embedding_bag`` and ``index_select`` + ``bmm``. The formulas
these serve live in :mod:`protoshot.maths`; the methods and the evaluator sit above.
"""

from __future__ import annotations

from protoshot.kernels.rows import RowReader

__all__ = ["RowReader"]
