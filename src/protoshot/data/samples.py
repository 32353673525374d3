"""``Samples``: items to embed with their labels, and the helpers that build them.

The readers (:mod:`protoshot.data.readers`, :mod:`protoshot.data.benchmarks`) all return
``Samples``; labels go through one normalisation (:func:`_label_array`), shared with
:class:`protoshot.data.table.EmbeddingTable`, so the labels of a source and of its embedded
table compare equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["Samples"]


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
    """Labels as int64 when they are integers, else as str."""
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


def _pick_column(
    columns: Sequence[str], given: str | None, candidates: Sequence[str], what: str, path: Path
) -> str:
    """``given`` if ``columns`` has it, else the first of ``candidates`` (case-insensitive)."""
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
