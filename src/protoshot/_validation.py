"""Input checks shared by the public API: clear errors at the edge, never deep inside torch."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

#: What the maths API accepts: a numpy array, a torch tensor or a nested sequence of numbers.
ArrayLike: TypeAlias = npt.ArrayLike | torch.Tensor


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of: {', '.join(allowed)}")
    return value


def positive_int(value: Any, name: str, *, from_text: bool = False) -> int:
    """``value`` as a positive int, or a ValueError naming ``name``.

    ``from_text=True`` also takes digit strings, for values that come from a spec or the CLI.
    """
    if from_text and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def as_float_tensor(
    x: ArrayLike,
    name: str,
    *,
    ndim: int | tuple[int, ...],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Convert ``x`` to a floating tensor with ``ndim`` axes and finite values.

    Floating inputs keep their precision (float64 stays float64, which the reference tests rely
    on) unless ``dtype`` is given; integer inputs become float32.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as err:
            raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from err
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        with warnings.catch_warnings():  # read-only arrays are fine: inputs are never written to
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.ascontiguousarray(arr))
    if not (t.is_floating_point() or dtype is not None):
        t = t.to(torch.float32)
    t = t.to(device=device, dtype=dtype)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if t.ndim not in ndims:
        expected = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name} must have {expected} dimensions, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    # any NaN or inf makes the sum non-finite; one reduction is far cheaper than isfinite()
    if not bool(torch.isfinite(t.sum())):
        bad = int((~torch.isfinite(t)).sum())
        if bad:  # else only the sum overflowed
            raise ValueError(f"{name} contains {bad} NaN or infinite values")
    return t


def check_same_features(a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str) -> None:
    """Raise a ValueError when the last (feature) axes of two tensors differ."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{b_name} has {b.shape[-1]} features, but {a_name} has {a.shape[-1]}; "
            "embed both with the same model"
        )
