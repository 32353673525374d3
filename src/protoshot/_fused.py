"""The CPU kernel of the evaluator: gather query rows and take their products in one pass.

Gathering the queries of a chunk of episodes into a buffer and then calling ``bmm`` reads every
query row twice and runs thousands of matrix products with ~5 columns, which BLAS does slowly.
This kernel reads each row once, straight from the table, into the few dot products it needs,
blocked in registers.
The (episode, way) pairs are visited class by class: a class's rows are read by every episode
that has it, so they are still in cache for the next one. ``benchmarks/episodes.py`` measures it.

Compiled by numba on first use and cached on disk (``cache=True``), so later processes load it.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _gather_products(
    table: np.ndarray, index: np.ndarray, refs: np.ndarray, order: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """``out[p, r, m] = table[index[p, r]] . refs[p // ways, m]`` for pairs in ``order``.

    Register-blocked: two rows against four references per pass over ``dim``, so each loaded
    value feeds several multiply-adds. An odd last row is computed twice and written to itself;
    ``out``'s last axis is ``M`` rounded up to 4, its extra columns repeat the last reference.
    """
    pairs, rows = index.shape
    n_refs, dim = refs.shape[1], refs.shape[2]
    ways = pairs // refs.shape[0]
    last = n_refs - 1
    for i in numba.prange(pairs):
        pair = order[i]
        episode_refs = refs[pair // ways]
        for r in range(0, rows, 2):
            r_b = min(r + 1, rows - 1)
            row_a, row_b = table[index[pair, r]], table[index[pair, r_b]]
            for m in range(0, n_refs, 4):
                ref_0, ref_1 = episode_refs[m], episode_refs[min(m + 1, last)]
                ref_2, ref_3 = episode_refs[min(m + 2, last)], episode_refs[min(m + 3, last)]
                zero = row_a[0] - row_a[0]  # of the table's dtype: float32 stays float32
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
                for d in range(dim):
                    u, v = row_a[d], row_b[d]
                    a0 += u * ref_0[d]
                    a1 += u * ref_1[d]
                    a2 += u * ref_2[d]
                    a3 += u * ref_3[d]
                    b0 += v * ref_0[d]
                    b1 += v * ref_1[d]
                    b2 += v * ref_2[d]
                    b3 += v * ref_3[d]
                out[pair, r, m], out[pair, r, m + 1] = a0, a1
                out[pair, r, m + 2], out[pair, r, m + 3] = a2, a3
                out[pair, r_b, m], out[pair, r_b, m + 1] = b0, b1
                out[pair, r_b, m + 2], out[pair, r_b, m + 3] = b2, b3


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
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
    out = np.empty((e * n, q, -(-m // 4) * 4), dtype=table.dtype)
    _gather_products(table, index, refs, _class_order(ways), out)
    return out.reshape(e, n * q, -1)[..., :m]


def _class_order(ways: np.ndarray) -> np.ndarray:
    """The (episode, way) pairs sorted by class, so each class's rows are read while cached."""
    return np.argsort(ways.reshape(-1), kind="stable")


def set_threads(n: int) -> None:
    """Use ``n`` threads (at most numba's own limit), so the kernel follows torch's setting."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
