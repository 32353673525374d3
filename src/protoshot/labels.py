"""Label encoding: labels of one type <-> class positions ``0 .. n_classes - 1``."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

import numpy as np


def _kind(value: Any) -> str:
    if isinstance(value, (str, np.str_)):
        return "str"
    if isinstance(value, (numbers.Number, np.number, np.bool_)):
        return "number"
    return type(value).__name__


def check_label_kinds(labels: Any) -> None:
    """Refuse Python sequences that mix label kinds (``1`` and ``"a"``).

    numpy would silently turn such a mix into strings; arrays already have one dtype.
    """
    if isinstance(labels, (list, tuple)):
        kinds = {_kind(v) for v in labels}
        if len(kinds) > 1:
            raise TypeError(f"labels must all be of one type, got a mix of {sorted(kinds)}")


def as_label_array(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Labels as a one-dimensional numpy array of one kind (strings or numbers).

    Raises
    ------
    TypeError
        If the labels mix kinds.
    ValueError
        If there are no labels or they are not one-dimensional.
    """
    check_label_kinds(labels)
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels are empty: at least one labelled sample is needed")
    return arr


def encode_labels(labels: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the sorted unique classes and each label's position among them."""
    arr = as_label_array(labels)
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as err:
        raise TypeError(f"labels cannot be ordered: {err}") from err
    return classes, codes.astype(np.int64).reshape(-1)


def labels_like(values: Sequence[Any] | np.ndarray, classes: np.ndarray) -> list[Any]:
    """Labels given as text (CLI, HTTP, files) converted to the type of ``classes`` (``"3"`` -> ``3``).

    Raises
    ------
    ValueError
        If ``classes`` are integers and a value is text that is not one.
    """
    if classes.dtype.kind not in "iu":
        return list(values)
    bad = [v for v in values if isinstance(v, str) and not v.strip().lstrip("-").isdigit()]
    if bad:
        raise ValueError(f"class {bad[0]!r} is not an integer, but the classes are integers")
    return [int(v) if isinstance(v, str) else v for v in values]


def readable_name(label: Any) -> str | None:
    """A class label as words to embed (``card_arrival``, ``CardArrival``, ``card-arrival`` ->
    ``"card arrival"``), or ``None`` when it says nothing (not text, empty, digits only)."""
    if not isinstance(label, (str, np.str_)):
        return None
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", str(label))
    text = " ".join(re.sub(r"[_\-./:]+", " ", text).split()).lower()
    return text if any(ch.isalpha() for ch in text) else None
