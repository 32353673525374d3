"""Readers of the sources: text tables, image folders, saved Hugging Face datasets.

- :func:`read_table`: a CSV / TSV / JSONL / Parquet file with a text and a label column;
- :func:`read_image_folder`: one sub-folder per class, images inside;
- :func:`read_hf_dataset`: a Hugging Face dataset saved with ``save_to_disk``.

Already-embedded numpy arrays are read by :func:`protoshot.data.table.read_arrays`, since they
give an ``EmbeddingTable``, not ``Samples``.

Bad input never crashes a run half-way:

- text that is not valid UTF-8 is decoded as Latin-1 (which cannot fail) with a
  ``UserWarning`` naming the file and the first bad byte (SNIPS' ``train_PlayMusic_full.json``
  is such a file);
- in an image folder, files that are not images (by extension, or because their header does
  not parse), empty class folders and stray files at the top are skipped *before* anything is
  embedded, with one ``UserWarning`` listing them (also kept in ``Samples.skipped``); an image
  whose header parses but whose pixels do not decode raises a ``ValueError`` naming it when it
  is embedded, and every batch embedded before it stays in the cache.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from protoshot.data.samples import Samples, _concat, _pick_column, _samples

__all__ = [
    "IMAGE_COLUMNS",
    "IMAGE_SUFFIXES",
    "LABEL_COLUMNS",
    "TEXT_COLUMNS",
    "read_hf_dataset",
    "read_image_folder",
    "read_inputs",
    "read_table",
    "read_text_column",
]

TEXT_COLUMNS = ("text", "sentence", "utterance", "query", "question", "content", "input")
LABEL_COLUMNS = ("label", "category", "intent", "class", "target", "labels")
IMAGE_COLUMNS = ("image", "img", "picture")
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_SHOWN = 10  # skipped files named in a warning


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


def _rows_csv(
    path: Path, encoding: str | None, delimiter: str | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    text = _read_text(path, encoding)
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter=_delimiter(path, text, delimiter), strict=True
    )
    try:
        rows = list(reader)
    except csv.Error as err:  # e.g. a quote that never closes swallows the rest of the file
        raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({err})") from None
    return list(reader.fieldnames or []), rows


#: Delimiters a CSV header is searched for, most usual first (European exports use ``;``).
DELIMITERS = (",", ";", "\t", "|")


def _delimiter(path: Path, text: str, given: str | None) -> str:
    """The given delimiter (``tab`` or ``\\t`` for a tab), else a tab for ``.tsv``, else the
    one the header line holds most of (a comma when it holds none)."""
    if given is not None:
        given = "\t" if given in ("tab", "\\t") else given
        if len(given) != 1:
            raise ValueError(f"a delimiter is one character (or 'tab'), got {given!r}")
        return given
    if path.suffix.lower() == ".tsv":
        return "\t"
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])  # ties to the earlier, more usual one
    return best if counts[best] else ","


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
    delimiter: str | None = None,
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
    delimiter : str, optional
        CSV delimiter; default: a tab for ``.tsv``, else detected from the header line
        (``,``, ``;``, tab or ``|``).

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
        if suffix in (".csv", ".tsv"):
            columns, rows = _rows_csv(path, encoding, delimiter)
        else:
            columns, rows = _rows_jsonl(path, encoding)
        text_key, label_key = choose(columns)
        texts = [row.get(text_key) for row in rows]
        labels = [row.get(label_key) for row in rows]
    else:
        raise ValueError(
            f"cannot read {path}: expected a .csv, .tsv, .jsonl, .ndjson or .parquet file"
        )
    for i, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        if not isinstance(text, str):
            raise ValueError(f"{path}, row {i}: text must be a string, got {text!r}")
        if not text.strip():
            raise ValueError(f"{path}, row {i}: the text is empty")
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
        A split of a ``DatasetDict``, or ``"all"`` for every split (ids prefixed by the
        split); required when there are several, so train and test never merge by accident.
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
        if split is None and len(loaded) > 1:
            raise ValueError(
                f"{path} holds the splits {', '.join(loaded)}: name one ({path}:{next(iter(loaded))}), "
                f"or {path}:all to merge them (never train and test together by accident)"
            )
        if split not in (None, "all"):
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


def read_inputs(
    inputs: list[str],
    texts: list[str],
    modality: str,
    *,
    text_column: str | None = None,
    delimiter: str | None = None,
) -> tuple[list[Any], list[str], list[dict[str, Any]]]:
    """Items to classify, a display name for each, and each item's other columns.

    ``inputs`` are image files or folders (searched recursively) for an image model; for a text
    model, tables (CSV, TSV, JSONL, Parquet: the text column, ``text_column`` or detected, is
    classified and the other columns, an id or a true label, come back beside it) or text files
    with one text per line (``"-"``: standard input); ``texts`` are texts as is.
    """

    items: list[Any] = []
    names: list[str] = []
    columns: list[dict[str, Any]] = []
    if texts and modality == "image":
        raise ValueError("texts given, but this model embeds images: pass image files or folders")
    for text in texts:
        if not text.strip():
            raise ValueError("a given text is empty")
        items.append(text)
        names.append(text)
        columns.append({})
    for source in inputs:
        if modality == "image":
            path = Path(source)
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
                if not files:
                    raise ValueError(f"{path} holds no image files")
            elif path.is_file():
                files = [path]
            else:
                raise FileNotFoundError(f"no such image file or folder: {path}")
            items += files
            names += [str(p) for p in files]
            columns += [{} for _ in files]
        elif Path(source).suffix.lower() in TABLE_SUFFIXES:
            found, others = read_text_column(source, text_column=text_column, delimiter=delimiter)
            items += found
            names += found
            columns += others
        else:
            lines = _text_lines(source)
            items += lines
            names += lines
            columns += [{} for _ in lines]
    if not items:
        raise ValueError("no inputs: give files, folders, - for standard input, or texts")
    return items, names, columns


#: Files read as tables (a text column, other columns passed through) rather than lines.
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")


def read_text_column(
    path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """The texts of a table's text column (named, or the first of ``TEXT_COLUMNS``), and each
    row's other columns (ids, true labels...), so that predictions can carry them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix.lower() == ".parquet":
        data = _rows_parquet(path, lambda names: names)
        keys = list(data)
        rows = [dict(zip(keys, values, strict=True)) for values in zip(*data.values(), strict=True)]
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        keys, rows = _rows_jsonl(path, encoding)
    else:
        keys, rows = _rows_csv(path, encoding, delimiter)
    key = _pick_column(keys, text_column, TEXT_COLUMNS, "text", path)
    texts = []
    for i, row in enumerate(rows):
        text = row.get(key)
        if not isinstance(text, str):
            raise ValueError(f"{path}, row {i + 1}: text must be a string, got {text!r}")
        if not text.strip():
            raise ValueError(f"{path}, row {i + 1}: the text is empty")
        texts.append(text)
    return texts, [{k: v for k, v in row.items() if k != key} for row in rows]


def _text_lines(source: str) -> list[str]:
    if source == "-":
        content = sys.stdin.read()
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"no such text file: {path} (to classify a literal text, pass it as a text, not a file)"
            )
        raw = path.read_bytes()
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path} is not UTF-8 text (byte {err.start}): re-encode it") from err
    return [line.strip() for line in content.splitlines() if line.strip()]
