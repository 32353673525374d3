"""Device selection shared by the evaluator, the classifier and the embedders."""

from __future__ import annotations

import torch


def best_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, or the best available one: cuda, then mps, then cpu."""
    if device is not None:
        try:
            chosen = torch.device(device)
        except RuntimeError as err:
            raise ValueError(
                f"unknown device {device!r}; expected e.g. 'cpu', 'cuda', 'cuda:1', 'mps'"
            ) from err
        _check_available(chosen)
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_available(device: torch.device) -> None:
    """Refuse a device this machine does not have, in one line (torch would fail later, deep
    inside its lazy initialisation)."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            built = "" if torch.backends.cuda.is_built() else " (this torch is built without CUDA)"
            raise ValueError(
                f"device {str(device)!r} is not available here: {count} CUDA GPUs{built}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' is not available here (no Apple GPU)")


DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A torch dtype from its name (``"float32"``, ``"bfloat16"``, ...) or itself."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
    return DTYPES[dtype]
