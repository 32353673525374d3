"""Label encoding: labels of one type <-> class positions ``0 .. n_classes - 1``."""

from __future__ import annotations

import numbers
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The longest class name (in characters): a name is a label, not a document.
MAX_NAME_LENGTH = 200


def check_name(name: str) -> str:
    """A class name made canonical: Unicode NFC (so "é" typed either way is one class).

    Raises
    ------
    ValueError
        If it is empty or blank, ``.`` or ``..`` (no URL path can hold them: the HTTP API could
        not reach the class), holds a control character (NUL, newline, ...) or a lone
        surrogate, or is longer than :data:`MAX_NAME_LENGTH`.
    """
    shown = repr(name[:40]) + ("..." if len(name) > 40 else "")
    if not name.strip():
        raise ValueError(f"class name {shown} is empty")
    if name in (".", ".."):
        raise ValueError(f"class name {shown} cannot be used: no URL path can hold it")
    bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"class name {shown} holds the control character {bad!r}")
    name = unicodedata.normalize("NFC", name)  # the length that is stored
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"class name {shown} has {len(name)} characters; the limit is {MAX_NAME_LENGTH}"
        )
    return name


def canonical_labels(labels: Any) -> Any:
    """Labels with every text label checked and made canonical (:func:`check_name`), as an
    array; numbers pass as they are. Used wherever labels enter a model (library, CLI and HTTP
    alike), before numpy's fixed-width strings could drop a trailing NUL and merge two names."""
    if isinstance(labels, (list, tuple)):
        values = list(labels)
    else:
        array = np.asarray(labels)
        if array.dtype.kind not in "UO" or array.ndim != 1:  # the shape check comes later
            return labels
        values = array.tolist()
    if not any(isinstance(v, str) for v in values):
        return labels
    return np.asarray([check_name(v) if isinstance(v, str) else v for v in values])


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
    arr = np.asarray(canonical_labels(labels))
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels are empty: at least one labelled sample is needed")
    return arr


def encode_labels(labels: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the sorted unique classes and each label's position among them (text labels
    checked and made canonical first, see :func:`check_name`)."""
    arr = as_label_array(labels)
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as err:
        raise TypeError(f"labels cannot be ordered: {err}") from err
    return classes, codes.astype(np.int64).reshape(-1)


def labels_like(
    values: Sequence[Any] | np.ndarray, classes: np.ndarray, *, strict: bool = True
) -> list[Any]:
    """Labels from text or numbers (CLI, HTTP, files) converted to the kind of ``classes``:
    ``"3"`` -> ``3`` for integer classes, ``3`` -> ``"3"`` for text classes; text labels
    checked and made canonical (:func:`check_name`).

    With ``strict=False`` a value that cannot be a class (text that is not an integer, for
    integer classes) is kept as it is: it is then simply not one of the classes (an
    out-of-scope label, say).

    Raises
    ------
    ValueError
        If ``strict`` and the classes are integers and a value is text that is not one.
    """
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    if classes.dtype.kind not in "iu":
        text = classes.dtype.kind in "UO"
        return [
            check_name(v) if isinstance(v, str)
            else str(v) if text and isinstance(v, int) and not isinstance(v, bool)
            else v
            for v in values
        ]  # fmt: skip
    bad = [v for v in values if isinstance(v, str) and not v.strip().lstrip("-").isdigit()]
    if bad and strict:
        raise ValueError(f"class {bad[0]!r} is not an integer, but the classes are integers")
    return [int(v) if isinstance(v, str) and v not in bad else v for v in values]


def readable_name(label: Any) -> str | None:
    """A class label as words to embed (``card_arrival``, ``CardArrival``, ``card-arrival`` ->
    ``"card arrival"``), or ``None`` when it says nothing (not text, empty, digits only)."""
    if not isinstance(label, (str, np.str_)):
        return None
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", str(label))
    text = " ".join(re.sub(r"[_\-./:]+", " ", text).split()).lower()
    return text if any(ch.isalpha() for ch in text) else None
