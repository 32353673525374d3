"""Data in and out: readers of the sources, known benchmarks, and the ``EmbeddingTable``.

Sources (:func:`load_source`, defined here as the one entry point over the submodules): an
image folder (one sub-folder per class), a CSV / TSV / JSONL / Parquet file with a text and a
label column, a Hugging Face dataset saved with ``save_to_disk``, or a known benchmark by name
(``banking77``, ``snips``, ``omniglot``, optionally ``:<split>``). Already-embedded arrays
(``.npz`` / ``.npy``) and Parquet tables load with :func:`load_table`.

Submodules (data flows downward: ``samples`` <- ``readers`` <- ``benchmarks``; ``table`` needs
only the label and column helpers of ``samples``):

- :mod:`~protoshot.data.samples`: :class:`Samples`, the in-memory items + labels + ids;
- :mod:`~protoshot.data.readers`: :func:`read_table` (CSV / TSV / JSONL / Parquet),
  :func:`read_image_folder`, :func:`read_hf_dataset`, and the column names they detect;
- :mod:`~protoshot.data.benchmarks`: :data:`BENCHMARKS`, :func:`data_dir`,
  :func:`load_benchmark`, and the checked downloads (``download_benchmark``);
- :mod:`~protoshot.data.table`: :class:`EmbeddingTable` (Parquet), :func:`read_arrays` (numpy),
  :func:`load_table`.
"""

from __future__ import annotations

import os
from pathlib import Path

from protoshot.data.benchmarks import (
    BENCHMARKS,
    SNIPS_INTENTS,
    _benchmark_in,
    data_dir,
    load_benchmark,
)
from protoshot.data.readers import (
    IMAGE_COLUMNS,
    IMAGE_SUFFIXES,
    LABEL_COLUMNS,
    TEXT_COLUMNS,
    _is_hf_dataset,
    read_hf_dataset,
    read_image_folder,
    read_inputs,
    read_table,
    read_text_column,
)
from protoshot.data.samples import Samples
from protoshot.data.table import EmbeddingTable, load_table, read_arrays

__all__ = [
    "BENCHMARKS",
    "IMAGE_COLUMNS",
    "IMAGE_SUFFIXES",
    "LABEL_COLUMNS",
    "SNIPS_INTENTS",
    "TEXT_COLUMNS",
    "EmbeddingTable",
    "Samples",
    "data_dir",
    "load_benchmark",
    "load_source",
    "load_table",
    "read_arrays",
    "read_hf_dataset",
    "read_image_folder",
    "read_inputs",
    "read_table",
    "read_text_column",
]


def load_source(
    source: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    delimiter: str | None = None,
) -> Samples:
    """Load samples from a path or a benchmark name.

    Parameters
    ----------
    source : str or path
        A file (``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson``, ``.parquet``), a folder (image
        folder, saved Hugging Face dataset, or a benchmark's folder), or a benchmark name;
        a folder or name may end in ``:<split>`` (``"banking77:test"``).
    text_column, label_column : str, optional
        Columns of a table or dataset (default: detected).
    root : path, optional
        Data dir for benchmark names (see :func:`data_dir`).
    download : bool
        Fetch a missing benchmark.
    delimiter : str, optional
        CSV delimiter (default: detected from the header line).

    Examples
    --------
    >>> load_source("banking77:test")  # doctest: +SKIP
    >>> load_source("intents.csv", text_column="utterance", label_column="intent")  # doctest: +SKIP
    """
    path = Path(source)
    if path.exists():
        return _load_path(path, None, text_column, label_column, delimiter)
    base, sep, split = str(source).rpartition(":")
    if sep and Path(base).is_dir():
        return _load_path(Path(base), split, text_column, label_column, delimiter)
    name, split = (base, split) if sep else (str(source), "")
    if name in BENCHMARKS:
        return load_benchmark(name, split or None, root=root, download=download)
    raise ValueError(
        f"no file, folder or known benchmark {str(source)!r}; benchmarks: {sorted(BENCHMARKS)}"
    )


def _load_path(
    path: Path,
    split: str | None,
    text_column: str | None,
    label_column: str | None,
    delimiter: str | None,
) -> Samples:
    if path.is_file():
        if path.suffix.lower() in (".npz", ".npy"):
            raise ValueError(f"{path} holds embeddings already: read it with load_table()")
        return read_table(
            path, text_column=text_column, label_column=label_column, delimiter=delimiter
        )
    if _is_hf_dataset(path):
        return read_hf_dataset(
            path, split=split, text_column=text_column, label_column=label_column
        )
    benchmark = _benchmark_in(path)
    if benchmark is not None:
        return load_benchmark(benchmark, split, folder=path)
    if split is not None:
        raise ValueError(f"{path} is an image folder: it has no split {split!r}")
    return read_image_folder(path)
