"""Data in and out: readers for the sources, known benchmarks, and the ``EmbeddingTable``.

Sources (:func:`load_source`): an image folder (one sub-folder per class), a CSV / TSV / JSONL
/ Parquet file with a text and a label column, a Hugging Face dataset saved with
``save_to_disk``, or a known benchmark by name (``banking77``, ``snips``, ``omniglot``,
optionally ``:<split>``). Already-embedded arrays (``.npz`` / ``.npy``) and Parquet tables load
with :func:`load_table`.

Bad input never crashes a run half-way:

- text that is not valid UTF-8 is decoded as Latin-1 (which cannot fail) with a
  ``UserWarning`` naming the file and the first bad byte (SNIPS' ``train_PlayMusic_full.json``
  is such a file);
- in an image folder, files that are not images (by extension, or because their header does
  not parse), empty class folders and stray files at the top are skipped *before* anything is
  embedded, with one ``UserWarning`` listing them (also kept in ``Samples.skipped``); an image
  whose header parses but whose pixels do not decode raises a ``ValueError`` naming it when it
  is embedded, and every batch embedded before it stays in the cache.

Benchmarks are read from ``<data dir>/<name>``, the data dir being the ``root`` argument, else
``$PROTOSHOT_DATA_DIR``, else ``../shared/data`` (relative to the working directory) when it
exists, else ``<cache dir>/data``. With ``download=True`` a missing benchmark is fetched from
its public source and checked against a fixed digest (see ``protoshot._download``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "BENCHMARKS",
    "EmbeddingTable",
    "Samples",
    "data_dir",
    "load_benchmark",
    "load_source",
    "load_table",
    "read_arrays",
    "read_hf_dataset",
    "read_image_folder",
    "read_table",
]

TEXT_COLUMNS = ("text", "sentence", "utterance", "query", "question", "content", "input")
LABEL_COLUMNS = ("label", "category", "intent", "class", "target", "labels")
IMAGE_COLUMNS = ("image", "img", "picture")
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_METADATA_KEY = b"protoshot"
_SHOWN = 10  # skipped files named in a warning


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Samples:
    """Items to embed, with their labels.

    Attributes
    ----------
    items : list
        Texts (``str``), image paths (``pathlib.Path``) or PIL images.
    labels : numpy.ndarray [n_samples]
        Class of each item (str or int).
    ids : numpy.ndarray of str [n_samples]
        Stable identifier of each item (row number or relative path, split first).
    modality : {"text", "image"}
        What the items are.
    skipped : tuple of str
        Inputs left out, each as ``"path: reason"``.
    """

    items: list[Any]
    labels: np.ndarray
    ids: np.ndarray
    modality: Literal["text", "image"]
    skipped: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.items)
        if len(self.labels) != n or len(self.ids) != n:
            raise ValueError(
                f"items, labels and ids must have one entry per sample, got {n}, "
                f"{len(self.labels)} and {len(self.ids)}"
            )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def classes(self) -> list[Any]:
        """Distinct labels, sorted."""
        return np.unique(self.labels).tolist()


def _samples(
    items: list[Any],
    labels: Sequence[Any] | np.ndarray,
    ids: Sequence[str],
    modality: Literal["text", "image"],
    skipped: Sequence[str] = (),
) -> Samples:
    return Samples(
        items, _label_array(labels), np.asarray(ids, dtype=str), modality, tuple(skipped)
    )


def _label_array(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    return array.astype(str)


def _concat(parts: dict[str, Samples]) -> Samples:
    """Samples of several splits, ids prefixed by the split name."""
    first = next(iter(parts.values()))
    return _samples(
        [item for part in parts.values() for item in part.items],
        np.concatenate([part.labels for part in parts.values()]),
        [f"{split}/{i}" for split, part in parts.items() for i in part.ids],
        first.modality,
        [s for part in parts.values() for s in part.skipped],
    )


# --------------------------------------------------------------------------------------------
# Text files
# --------------------------------------------------------------------------------------------
def _read_text(path: Path, encoding: str | None = None) -> str:
    """A file's text: UTF-8 (BOM allowed), else Latin-1 with a warning, unless told."""
    data = path.read_bytes()
    if encoding is not None:
        return data.decode(encoding)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        warnings.warn(
            f"{path} is not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "decoded it as Latin-1 (pass encoding=... to choose)",
            UserWarning,
            stacklevel=3,
        )
        return data.decode("latin-1")


def _pick_column(
    columns: Sequence[str], given: str | None, candidates: Sequence[str], what: str, path: Path
) -> str:
    if given is not None:
        if given not in columns:
            raise ValueError(f"{path} has no {what} column {given!r}; columns: {list(columns)}")
        return given
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    raise ValueError(
        f"{path} has no {what} column: expected one of {list(candidates)} or "
        f"{what}_column=...; columns: {list(columns)}"
    )


def _rows_csv(path: Path, encoding: str | None) -> tuple[list[str], list[dict[str, Any]]]:
    text = _read_text(path, encoding)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def _rows_jsonl(path: Path, encoding: str | None) -> tuple[list[str], list[dict[str, Any]]]:
    rows = []
    for number, line in enumerate(_read_text(path, encoding).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {row!r:.60}")
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return columns, rows


def _rows_parquet(path: Path, columns: Callable[[list[str]], list[str]]) -> dict[str, list[Any]]:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    return pq.read_table(path, columns=columns(names)).to_pydict()


def read_table(
    path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
) -> Samples:
    """Read texts and labels from a CSV, TSV, JSONL or Parquet file.

    Parameters
    ----------
    path : path
        ``.csv``, ``.tsv``, ``.jsonl`` / ``.ndjson`` or ``.parquet``.
    text_column, label_column : str, optional
        Column names; default: the first present of ``TEXT_COLUMNS`` / ``LABEL_COLUMNS``
        (case-insensitive).
    encoding : str, optional
        Text encoding; default UTF-8, falling back to Latin-1 with a warning.

    Returns
    -------
    Samples
        Text samples; ids are the row numbers (from 0).

    Raises
    ------
    ValueError
        If a column is missing (the message lists the columns present), a text is not a
        string, or a label is missing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    chosen: dict[str, str] = {}

    def choose(columns: list[str]) -> list[str]:
        chosen["text"] = _pick_column(columns, text_column, TEXT_COLUMNS, "text", path)
        chosen["label"] = _pick_column(columns, label_column, LABEL_COLUMNS, "label", path)
        return [chosen["text"], chosen["label"]]

    if suffix == ".parquet":
        table = _rows_parquet(path, choose)
        texts, labels = table[chosen["text"]], table[chosen["label"]]
    elif suffix in (".csv", ".tsv", ".jsonl", ".ndjson"):
        reader = _rows_csv if suffix in (".csv", ".tsv") else _rows_jsonl
        columns, rows = reader(path, encoding)
        text_key, label_key = choose(columns)
        texts = [row.get(text_key) for row in rows]
        labels = [row.get(label_key) for row in rows]
    else:
        raise ValueError(
            f"cannot read {path}: expected a .csv, .tsv, .jsonl, .ndjson or .parquet file"
        )
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if not isinstance(text, str):
            raise ValueError(f"{path}, row {i}: text must be a string, got {text!r}")
        if label is None or label == "":
            raise ValueError(f"{path}, row {i}: the label is missing")
    return _samples(list(texts), labels, [str(i) for i in range(len(texts))], "text")


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------
def read_image_folder(root: str | os.PathLike[str], *, check: bool = True) -> Samples:
    """Read an image folder: one sub-folder per class, images inside.

    Parameters
    ----------
    root : path
        The folder.
    check : bool
        Open each image's header (cheap) so files that are not images are skipped now, not
        in the middle of embedding.

    Returns
    -------
    Samples
        Items are ``pathlib.Path`` objects; ids are ``"<class>/<file>"``; labels are the
        sub-folder names. Hidden files and folders are ignored.

    Raises
    ------
    ValueError
        If no class folder holds an image.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    items, labels, skipped = [], [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            skipped.append(f"{entry}: not in a class folder")
            continue
        found = 0
        for path in sorted(entry.iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            reason = _not_an_image(path, check)
            if reason:
                skipped.append(f"{path}: {reason}")
                continue
            items.append(path)
            labels.append(entry.name)
            found += 1
        if not found:
            skipped.append(f"{entry}: empty class folder")
    if skipped:
        listed = "; ".join(skipped[:_SHOWN]) + ("; ..." if len(skipped) > _SHOWN else "")
        warnings.warn(f"skipped {len(skipped)} inputs in {root}: {listed}", UserWarning, 2)
    if not items:
        raise ValueError(f"no images under {root}: expected one sub-folder of images per class")
    ids = [path.relative_to(root).as_posix() for path in items]
    return _samples(items, labels, ids, "image", skipped)


def _not_an_image(path: Path, check: bool) -> str | None:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image file"
    if not check:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return f"unreadable image ({err})"
    return None


# --------------------------------------------------------------------------------------------
# Hugging Face datasets saved to disk
# --------------------------------------------------------------------------------------------
def _is_hf_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def read_hf_dataset(
    path: str | os.PathLike[str],
    *,
    split: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> Samples:
    """Read a Hugging Face dataset saved with ``save_to_disk``.

    Parameters
    ----------
    path : path
        The saved ``Dataset`` or ``DatasetDict``.
    split : str, optional
        A split of a ``DatasetDict``; default: all splits, ids prefixed by the split.
    text_column, label_column : str, optional
        Default: the first present of ``TEXT_COLUMNS`` (then ``IMAGE_COLUMNS``) /
        ``LABEL_COLUMNS``. An image column gives image samples (PIL images).

    Returns
    -------
    Samples
        Class-label features are mapped to their names.
    """
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "reading a Hugging Face dataset needs 'datasets': pip install 'protoshot[datasets]'"
        ) from err
    path = Path(path)
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split is not None:
            if split not in loaded:
                raise ValueError(f"{path} has no split {split!r}; splits: {list(loaded)}")
            return _read_hf_split(loaded[split], path, text_column, label_column)
        return _concat(
            {
                name: _read_hf_split(part, path, text_column, label_column)
                for name, part in loaded.items()
            }
        )
    if split is not None:
        raise ValueError(
            f"{path} is a single Dataset, not a DatasetDict: it has no split {split!r}"
        )
    return _read_hf_split(loaded, path, text_column, label_column)


def _read_hf_split(
    dataset: Any, path: Path, text_column: str | None, label_column: str | None
) -> Samples:
    columns = list(dataset.column_names)
    try:
        text_key = _pick_column(columns, text_column, TEXT_COLUMNS, "text", path)
        modality: Literal["text", "image"] = "text"
    except ValueError:
        if text_column is not None:
            raise
        text_key = _pick_column(columns, None, IMAGE_COLUMNS, "text or image", path)
        modality = "image"
    label_key = _pick_column(columns, label_column, LABEL_COLUMNS, "label", path)
    labels = dataset[label_key]
    feature = dataset.features[label_key]
    if hasattr(feature, "int2str"):
        labels = feature.int2str(list(labels))
    items = list(dataset[text_key])
    return _samples(items, list(labels), [str(i) for i in range(len(items))], modality)


# --------------------------------------------------------------------------------------------
# Known benchmarks
# --------------------------------------------------------------------------------------------
def _read_banking77(folder: Path, split: str) -> Samples:
    return read_table(
        folder / "banking_data" / f"{split}.csv", text_column="text", label_column="category"
    )


_SNIPS_DIR = "2017-06-custom-intent-engines"
SNIPS_INTENTS = (
    "AddToPlaylist",
    "BookRestaurant",
    "GetWeather",
    "PlayMusic",
    "RateBook",
    "SearchCreativeWork",
    "SearchScreeningEvent",
)


def _read_snips(folder: Path, split: str) -> Samples:
    items, labels, ids = [], [], []
    for intent in SNIPS_INTENTS:
        name = f"train_{intent}_full.json" if split == "train" else f"validate_{intent}.json"
        path = folder / _SNIPS_DIR / intent / name
        try:
            records = json.loads(_read_text(path))[intent]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a SNIPS intent file ({err})") from None
        for i, record in enumerate(records):
            items.append("".join(chunk["text"] for chunk in record["data"]))
            labels.append(intent)
            ids.append(f"{intent}/{i}")
    return _samples(items, labels, ids, "text")


def _read_omniglot(folder: Path, split: str) -> Samples:
    return read_image_folder(folder / f"images_{split}")


@dataclass(frozen=True)
class _Benchmark:
    splits: dict[str, str]  # split -> path (relative to the benchmark folder) that must exist
    read: Callable[[Path, str], Samples]


BENCHMARKS: dict[str, _Benchmark] = {
    "banking77": _Benchmark(
        {"train": "banking_data/train.csv", "test": "banking_data/test.csv"}, _read_banking77
    ),
    "snips": _Benchmark(
        {
            "train": f"{_SNIPS_DIR}/PlayMusic/train_PlayMusic_full.json",
            "validation": f"{_SNIPS_DIR}/PlayMusic/validate_PlayMusic.json",
        },
        _read_snips,
    ),
    "omniglot": _Benchmark(
        {"background": "images_background", "evaluation": "images_evaluation"}, _read_omniglot
    ),
}


def data_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where benchmarks are read from and downloaded to (see the module doc)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PROTOSHOT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    shared = Path.cwd().parent / "shared" / "data"
    if shared.is_dir():
        return shared
    from protoshot.cache import default_cache_dir

    return default_cache_dir() / "data"


def load_benchmark(
    name: str,
    split: str | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    folder: str | os.PathLike[str] | None = None,
) -> Samples:
    """Load a known benchmark.

    Parameters
    ----------
    name : {"banking77", "snips", "omniglot"}
        The benchmark.
    split : str, optional
        banking77: "train" / "test"; snips: "train" / "validation"; omniglot: "background" /
        "evaluation". Default: every split. Ids start with the split (``"test/17"``).
    root : path, optional
        The data dir holding ``<name>/`` (see :func:`data_dir`).
    download : bool
        Fetch a missing benchmark from its public source (checked against fixed digests).
    folder : path, optional
        The benchmark's own folder, overriding ``root``.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    if split is not None and split not in bench.splits:
        raise ValueError(f"{name} has no split {split!r}; splits: {list(bench.splits)}")
    where = Path(folder) if folder is not None else data_dir(root) / name
    splits = [split] if split is not None else list(bench.splits)
    missing = [s for s in splits if not (where / bench.splits[s]).exists()]
    if missing and download:
        from protoshot._download import download as fetch

        fetch(name, where)
    elif missing:
        raise ValueError(
            f"{name} ({', '.join(missing)}) not found in {where}; pass root=... or set "
            "PROTOSHOT_DATA_DIR to the folder that holds it, or download=True (--download)"
        )
    return _concat({s: bench.read(where, s) for s in splits})


def _benchmark_in(folder: Path) -> str | None:
    """The known benchmark whose layout ``folder`` has, if any."""
    for name, bench in BENCHMARKS.items():
        if any((folder / marker).exists() for marker in bench.splits.values()):
            return name
    return None


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------
def load_source(
    source: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
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

    Examples
    --------
    >>> load_source("banking77:test")  # doctest: +SKIP
    >>> load_source("intents.csv", text_column="utterance", label_column="intent")  # doctest: +SKIP
    """
    path = Path(source)
    if path.exists():
        return _load_path(path, None, text_column, label_column)
    base, sep, split = str(source).rpartition(":")
    if sep and Path(base).is_dir():
        return _load_path(Path(base), split, text_column, label_column)
    name, split = (base, split) if sep else (str(source), "")
    if name in BENCHMARKS:
        return load_benchmark(name, split or None, root=root, download=download)
    raise ValueError(
        f"no file, folder or known benchmark {str(source)!r}; benchmarks: {sorted(BENCHMARKS)}"
    )


def _load_path(
    path: Path, split: str | None, text_column: str | None, label_column: str | None
) -> Samples:
    if path.is_file():
        if path.suffix.lower() in (".npz", ".npy"):
            raise ValueError(f"{path} holds embeddings already: read it with load_table()")
        return read_table(path, text_column=text_column, label_column=label_column)
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


# --------------------------------------------------------------------------------------------
# Embedding tables
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EmbeddingTable:
    """Embedded samples: vectors, labels, ids, class names and the model that made them.

    On disk a Parquet file with columns ``id`` (string), ``label`` (string or int64) and
    ``embedding`` (``fixed_size_list<float32>[dim]``); the model spec, fingerprint and classes
    sit in the schema metadata under ``protoshot``. pandas, polars and DuckDB read it as is.

    Attributes
    ----------
    vectors : float32 [n_samples, dim]
    labels : numpy.ndarray [n_samples]
    ids : numpy.ndarray of str [n_samples]
    classes : list
        Class names in a fixed order (default: sorted labels).
    model : str
        Spec of the embedder ("" if unknown).
    fingerprint : str
        Fingerprint of the embedder ("" if unknown).
    """

    vectors: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    classes: list[Any]
    model: str = ""
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.dtype != np.float32:
            raise ValueError(
                f"vectors must be float32 [n_samples, dim], got {self.vectors.dtype} "
                f"{list(self.vectors.shape)}"
            )
        n = self.vectors.shape[0]
        if self.labels.shape != (n,) or self.ids.shape != (n,):
            raise ValueError(
                f"labels and ids must have shape [{n}] to match the vectors, "
                f"got {list(self.labels.shape)} and {list(self.ids.shape)}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct, got {self.classes}")
        unknown = sorted(set(self.labels.tolist()) - set(self.classes), key=str)
        if unknown:
            raise ValueError(
                f"labels {unknown[:5]} are not among the classes {self.classes[:5]}..."
            )

    @classmethod
    def from_arrays(
        cls,
        vectors: Any,
        labels: Sequence[Any] | np.ndarray,
        *,
        ids: Sequence[Any] | np.ndarray | None = None,
        classes: Sequence[Any] | None = None,
        model: str = "",
        fingerprint: str = "",
    ) -> EmbeddingTable:
        """Build a table, converting vectors to float32 and ids to str (default: row numbers)."""
        array = np.asarray(vectors, dtype=np.float32)
        label_array = _label_array(labels)
        if ids is None:
            ids = [str(i) for i in range(len(label_array))]
        if classes is None:
            classes = np.unique(label_array).tolist()
        return cls(
            np.ascontiguousarray(array),
            label_array,
            np.asarray(ids, dtype=str),
            [_plain(c) for c in classes],
            model,
            fingerprint,
        )

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        """Length of each vector."""
        return int(self.vectors.shape[1])

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the table as Parquet (atomically: a temporary file, then a rename).

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``overwrite`` is false.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")
        flat = pa.array(self.vectors.reshape(-1), type=pa.float32())
        embedding = pa.FixedSizeListArray.from_arrays(flat, self.dim)
        metadata = {
            "format": 1,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "classes": self.classes,
            "dim": self.dim,
        }
        table = pa.table(
            {
                "id": pa.array(self.ids.tolist(), pa.string()),
                "label": self.labels,
                "embedding": embedding,
            }
        ).replace_schema_metadata({_METADATA_KEY: json.dumps(metadata)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EmbeddingTable:
        """Read a table written by :meth:`save` (or any Parquet file with those columns)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        table = pq.read_table(path)
        for column in ("label", "embedding"):
            if column not in table.column_names:
                raise ValueError(f"{path} has no {column!r} column; columns: {table.column_names}")
        column = table.column("embedding").combine_chunks()
        if not (pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type)):
            raise ValueError(f"{path}: 'embedding' must be a list of floats, got {column.type}")
        if column.null_count:
            raise ValueError(f"{path}: 'embedding' has {column.null_count} missing vectors")
        lengths = set(column.value_lengths().to_pylist()) if pa.types.is_list(column.type) else None
        if lengths is not None and len(lengths) > 1:
            raise ValueError(f"{path}: vectors have different lengths {sorted(lengths)[:5]}")
        values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        vectors = values.reshape(len(table), -1) if len(table) else values.reshape(0, 0)
        meta = json.loads((table.schema.metadata or {}).get(_METADATA_KEY, b"{}"))
        ids = table.column("id").to_pylist() if "id" in table.column_names else None
        return cls.from_arrays(
            vectors,
            table.column("label").to_pylist(),
            ids=ids,
            classes=meta.get("classes"),
            model=meta.get("model", ""),
            fingerprint=meta.get("fingerprint", ""),
        )


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars (for JSON metadata)."""
    return value.item() if isinstance(value, np.generic) else value


_VECTOR_KEYS = ("embeddings", "vectors", "features", "X", "x")
_LABEL_KEYS = ("labels", "y", "targets")


def read_arrays(
    path: str | os.PathLike[str], *, labels: str | os.PathLike[str] | Sequence[Any] | None = None
) -> EmbeddingTable:
    """Read already-embedded arrays.

    Parameters
    ----------
    path : path
        An ``.npz`` with ``embeddings`` (or ``vectors``, ``features``, ``X``) and ``labels``
        (or ``y``, ``targets``), optionally ``ids`` and ``classes``; or an ``.npy`` of vectors.
    labels : path or sequence, optional
        Labels for an ``.npy`` (an ``.npy`` file or the labels themselves).

    Returns
    -------
    EmbeddingTable
        With no model spec or fingerprint. Pickled (object) arrays are refused.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if labels is None:
            raise ValueError(f"{path} holds vectors only: pass labels=... (a file or a list)")
        if isinstance(labels, (str, os.PathLike)):
            labels = _load_numpy(Path(labels))
        return EmbeddingTable.from_arrays(_load_numpy(path), np.asarray(labels))
    arrays = _load_numpy(path)
    vector_key = _pick_column(list(arrays), None, _VECTOR_KEYS, "embeddings", path)
    label_key = _pick_column(list(arrays), None, _LABEL_KEYS, "labels", path)
    classes = arrays.get("classes")
    return EmbeddingTable.from_arrays(
        arrays[vector_key],
        arrays[label_key],
        ids=arrays.get("ids"),
        classes=None if classes is None else classes.tolist(),
    )


def _load_numpy(path: Path) -> Any:
    """An ``.npy`` array or a dict of an ``.npz``'s arrays, never unpickling anything."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:  # an .npz archive; object arrays fail as they are read
            return {key: loaded[key] for key in loaded.files}
    except ValueError as err:
        if "pickle" in str(err):
            raise ValueError(
                f"{path} holds object arrays, which protoshot never unpickles"
            ) from None
        raise


def load_table(path: str | os.PathLike[str]) -> EmbeddingTable:
    """Load embeddings from a Parquet table (:meth:`EmbeddingTable.load`) or numpy arrays."""
    if Path(path).suffix.lower() in (".npz", ".npy"):
        return read_arrays(path)
    return EmbeddingTable.load(path)
