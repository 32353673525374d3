"""The evaluator's CPU kernels: rows read straight from the table into products and sums.

Gathering the queries of a chunk of episodes into a buffer and then calling ``bmm`` reads every
query row twice and runs thousands of matrix products with ~5 columns, which BLAS does slowly.
``gather_products`` reads each row once into the few dot products it needs, blocked in
registers; ``bag_sums`` builds prototypes as weighted sums of rows the same way. The
(episode, way) pairs are visited class by class: a class's rows are read by every episode that
has it, so they are still in cache for the next one. ``benchmarks/episodes.py`` measures them.

Compiled by numba on first use and cached on disk, so later processes load it; where no cache
folder can be written (a read-only install without a writable home), compiled once per process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np


def _compiled(function: Callable[..., None]) -> Any:
    """``numba.njit`` with parallel loops, cached on disk where numba finds a writable place."""
    try:
        return numba.njit(function, parallel=True, fastmath=True, nogil=True, cache=True)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(function, parallel=True, fastmath=True, nogil=True)


@_compiled
def _gather_products(
    table: np.ndarray, index: np.ndarray, refs: np.ndarray, order: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``out[p, r, m] = table[index[p, r]] . refs[p // ways, m]`` for pairs in ``order``.

    Register-blocked: three rows against three references per pass over ``dim`` (nine
    accumulators and six loads fit AVX2's sixteen registers; measured faster than 2 x 4 and
    3 x 4). Past the last row or reference the block repeats it, writing the same value twice.
    """
    pairs, rows = index.shape
    n_refs, dim = refs.shape[1], refs.shape[2]
    ways = pairs // refs.shape[0]
    last_row, last_ref = rows - 1, n_refs - 1
    for i in numba.prange(pairs):
        pair = order[i]
        episode_refs = refs[pair // ways]
        for r0 in range(0, rows, 3):
            r1, r2 = min(r0 + 1, last_row), min(r0 + 2, last_row)
            row_a, row_b = table[index[pair, r0]], table[index[pair, r1]]
            row_c = table[index[pair, r2]]
            for m0 in range(0, n_refs, 3):
                m1, m2 = min(m0 + 1, last_ref), min(m0 + 2, last_ref)
                ref_0, ref_1, ref_2 = episode_refs[m0], episode_refs[m1], episode_refs[m2]
                zero = row_a[0] - row_a[0]  # of the table's dtype: float32 stays float32
                a0 = a1 = a2 = b0 = b1 = b2 = c0 = c1 = c2 = zero
                for d in range(dim):
                    u, v, w = row_a[d], row_b[d], row_c[d]
                    g0, g1, g2 = ref_0[d], ref_1[d], ref_2[d]
                    a0 += u * g0
                    a1 += u * g1
                    a2 += u * g2
                    b0 += v * g0
                    b1 += v * g1
                    b2 += v * g2
                    c0 += w * g0
                    c1 += w * g1
                    c2 += w * g2
                out[pair, r0, m0], out[pair, r0, m1], out[pair, r0, m2] = a0, a1, a2
                out[pair, r1, m0], out[pair, r1, m1], out[pair, r1, m2] = b0, b1, b2
                out[pair, r2, m0], out[pair, r2, m1], out[pair, r2, m2] = c0, c1, c2


@_compiled
def _bag_sums(
    table: np.ndarray, index: np.ndarray, weights: np.ndarray, order: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``out[p] = sum_k weights[p, k] * table[index[p, k]]`` for pairs in ``order``."""
    pairs, k = index.shape
    dim = table.shape[1]
    for i in numba.prange(pairs):
        pair = order[i]
        total = out[pair]
        row, w = table[index[pair, 0]], weights[pair, 0]
        for d in range(dim):
            total[d] = w * row[d]
        for s in range(1, k):
            row, w = table[index[pair, s]], weights[pair, s]
            for d in range(dim):
                total[d] += w * row[d]


def bag_sums(
    table: np.ndarray, index: np.ndarray, ways: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """``out[e, w] = sum_k weights[e, w, k] * table[index[e, w, k]]``, ``[E, N, D]``.

    ``index`` int [E, N, K], ``weights`` [E, N, K] of the table's dtype, ``ways`` as in
    :func:`gather_products`.
    """
    e, n, k = index.shape
    flat_index = np.ascontiguousarray(index.reshape(e * n, k), dtype=np.int64)
    flat_weights = np.ascontiguousarray(weights.reshape(e * n, k))
    out = np.empty((e * n, table.shape[1]), dtype=table.dtype)
    _bag_sums(table, flat_index, flat_weights, _class_order(ways), out)
    return out.reshape(e, n, -1)


def gather_products(
    table: np.ndarray, query: np.ndarray, ways: np.ndarray, refs: np.ndarray
) -> np.ndarray:
    """``out[e, w * Q + j, m] = table[query[e, w, j]] . refs[e, m]``.

    ``table`` [n, D], ``refs`` [E, M, D] (one float dtype, C-contiguous), ``query`` int [E, N, Q],
    ``ways`` [E, N] the class of each way (only the visiting order depends on it).
    """
    e, n, q = query.shape
    m = refs.shape[1]
    index = np.ascontiguousarray(query.reshape(e * n, q), dtype=np.int64)
    out = np.empty((e * n, q, m), dtype=table.dtype)
    _gather_products(table, index, refs, _class_order(ways), out)
    return out.reshape(e, n * q, m)


def _class_order(ways: np.ndarray) -> np.ndarray:
    """The (episode, way) pairs sorted by class, so each class's rows are read while cached."""
    return np.argsort(ways.reshape(-1), kind="stable")


def set_threads(n: int) -> None:
    """Use ``n`` threads (at most numba's own limit), so the kernel follows torch's setting."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
