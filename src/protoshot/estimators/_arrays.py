"""Estimator arrays that an update changes in O(change), while copies of the model stay intact.

A served model is copied for every update and the copy swapped in (readers keep the old one), so
an update must not write into an array a copy shares, and copying a 10^5-class array per update
costs more than the update. Two shapes of change cover the estimators' big arrays:

- :class:`Appendable`: rows only ever appended (the shots). Copies share one buffer with room to
  grow; the newest copy appends in place beyond what the others can see, a stale one copies first.
- :class:`PatchedRows`: a few rows changed per update (per-class sums). The rows an update changes
  are kept beside the shared array, and folded into a new one once they are many.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Patched rows are folded into a new array when there are more than this many, or than
#: ``1 / FOLD_FRACTION`` of the rows: an update then copies O(change) rows on average.
FOLD_MIN = 64
FOLD_FRACTION = 32


class _Buffer:
    """Rows ``array[:used]`` written so far, by the newest copy of a model."""

    __slots__ = ("array", "used")

    def __init__(self, array: np.ndarray, used: int) -> None:
        self.array, self.used = array, used


class Appendable:
    """An append-only array attribute (see the module): ``obj.name`` reads it, assigning
    replaces it, :func:`append` adds rows."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.slot = name, f"_{name.strip('_')}_rows"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            buffer, n = obj.__dict__[self.slot]
        except KeyError:
            raise AttributeError(self.name) from None
        return buffer.array[:n]  # rows a copy may share: never write into them

    def __set__(self, obj: Any, value: np.ndarray) -> None:
        value = np.array(value)  # its own buffer
        obj.__dict__[self.slot] = (_Buffer(value, len(value)), len(value))


def append(obj: Any, name: str, rows: np.ndarray) -> None:
    """Append ``rows`` to the :class:`Appendable` ``name`` of ``obj``: in place when ``obj`` is
    the newest copy and there is room, else into a new buffer twice the size."""
    slot = type(obj).__dict__.get(name) or _find(type(obj), name)
    buffer, n = obj.__dict__[slot.slot]
    end = n + len(rows)
    if buffer.used != n or end > len(buffer.array):
        grown = np.empty((max(2 * end, 16), *buffer.array.shape[1:]), dtype=buffer.array.dtype)
        grown[:n] = buffer.array[:n]
        buffer = _Buffer(grown, n)
    buffer.array[n:end] = rows
    buffer.used = end
    obj.__dict__[slot.slot] = (buffer, end)


def _find(cls: type, name: str) -> Appendable:
    for klass in cls.__mro__:
        if isinstance(klass.__dict__.get(name), Appendable):
            return klass.__dict__[name]
    raise AttributeError(f"{cls.__name__}.{name} is not appendable")


class PatchedRows:
    """A float array attribute whose rows are changed a few at a time (see the module):
    ``obj.name`` reads it whole (a copy with the patches, while there are any), :meth:`rows`
    reads some rows, :meth:`patch` changes rows, assigning replaces it. Reading never changes
    the object: only an update folds the patches."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.slot = name, f"_{name.strip('_')}_patched"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            base, patches = obj.__dict__[self.slot]
        except KeyError:
            raise AttributeError(self.name) from None
        if patches:
            base = base.copy()
            base[np.fromiter(patches, np.int64, len(patches))] = np.stack(list(patches.values()))
        return base

    def __set__(self, obj: Any, value: np.ndarray) -> None:
        obj.__dict__[self.slot] = (np.asarray(value), {})

    def rows(self, obj: Any, positions: np.ndarray) -> np.ndarray:
        """A copy of the rows at ``positions``, patches applied."""
        base, patches = obj.__dict__[self.slot]
        out = base[positions]
        if patches:
            changed = np.fromiter(patches, np.int64, len(patches))
            for i in np.flatnonzero(np.isin(positions, changed)).tolist():
                out[i] = patches[int(positions[i])]
        return out

    def patch(self, obj: Any, positions: np.ndarray, values: np.ndarray) -> None:
        """Set the (distinct) rows at ``positions`` to ``values``."""
        base, patches = obj.__dict__[self.slot]
        patches = {**patches, **dict(zip(positions.tolist(), values, strict=True))}
        obj.__dict__[self.slot] = (base, patches)
        if len(patches) > max(FOLD_MIN, len(base) // FOLD_FRACTION):
            self.__set__(obj, self.__get__(obj))  # fold
