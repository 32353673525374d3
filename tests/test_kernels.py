"""The row reader and its CPU kernels against plain gather + ``bmm`` / ``embedding_bag``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

import protoshot
from protoshot import evaluate
from protoshot.kernels import RowReader


@given(
    rows=st.integers(1, 7),
    n_refs=st.integers(1, 9),
    dim=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_fused_products_match_gather_then_bmm(rows: int, n_refs: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = torch.from_numpy(rng.normal(size=(30, dim)))
    index = torch.from_numpy(rng.integers(0, 30, size=(6, 3, rows)))
    ways = rng.integers(0, 4, size=(6, 3))
    refs = torch.from_numpy(rng.normal(size=(6, n_refs, dim)))
    fused = RowReader(table, fused=True).products(index, ways, refs)
    naive = torch.bmm(table[index.reshape(6, -1)], refs.transpose(1, 2))
    assert fused.shape == (6, 3 * rows, n_refs)
    torch.testing.assert_close(fused, naive, rtol=1e-12, atol=1e-12)


@given(
    shots=st.integers(1, 6),
    dim=st.integers(1, 40),
    weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fused_weighted_sums_match_embedding_bag_and_naive(
    shots: int, dim: int, weighted: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    table = torch.from_numpy(rng.normal(size=(30, dim)))
    index = torch.from_numpy(rng.integers(0, 30, size=(6, 3, shots)))
    ways = rng.integers(0, 4, size=(6, 3))
    weights = torch.from_numpy(rng.random((6, 3, shots))) if weighted else None
    naive = table[index].mean(2) if weights is None else (table[index] * weights[..., None]).sum(2)
    for fused in (True, False):
        got = RowReader(table, fused=fused).weighted_sums(index, ways, weights)
        torch.testing.assert_close(got, naive, rtol=1e-12, atol=1e-12)


def test_kernels_compile_where_no_cache_folder_can_be_written(tmp_path: Path) -> None:
    """A read-only install without a writable home: compiled per process instead of failing."""
    package = Path(protoshot.__file__).parent
    copy = shutil.copytree(package, tmp_path / "protoshot", ignore=shutil.ignore_patterns("*.pyc"))
    for folder in (copy, copy / "kernels"):  # a file: no cache folder inside the package
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
        (folder / "__pycache__").write_text("")
    unwritable = "/dev/null/cache"  # nothing can be created below a device file
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1",
           "NUMBA_CACHE_DIR": unwritable, "XDG_CACHE_HOME": unwritable, "HOME": "/dev/null"}  # fmt: skip
    code = (
        "import numpy as np, protoshot\n"
        "from protoshot import evaluate\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(60, 8)) + np.repeat(rng.normal(size=(6, 8)) * 3, 10, axis=0)\n"
        "print(protoshot.__file__, evaluate(x, np.repeat(np.arange(6), 10), n_query=3).mean)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == str(copy / "__init__.py")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)) + np.repeat(rng.normal(size=(6, 8)) * 3, 10, axis=0)
    assert float(out[1]) == evaluate(x, np.repeat(np.arange(6), 10), n_query=3).mean
