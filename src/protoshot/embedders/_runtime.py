"""What every torch backend shares: optional imports, device choice, inference context, I/O."""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch

Precision = Literal["fp32", "fp16", "bf16"]
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def require(module: str, extra: str, who: str = "this embedder") -> ModuleType:
    """Import an optional dependency, or say which extra installs it (and ``who`` needs it).

    Raises
    ------
    ImportError
        Naming the missing module and the ``pip install 'protoshot[extra]'`` command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{who} needs the {module!r} package: pip install 'protoshot[{extra}]'"
        ) from err


def resolve_precision(precision: str | None, device: torch.device) -> Precision:
    """Check ``precision`` and fall back to "fp32" (with a warning) off the GPU."""
    precision = precision or "fp32"
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be 'fp32', 'fp16' or 'bf16', got {precision!r}")
    if precision != "fp32" and device.type != "cuda":
        warnings.warn(
            f"precision={precision!r} applies on a CUDA GPU only; running float32 on {device}",
            UserWarning,
            stacklevel=3,
        )
        return "fp32"
    return precision  # type: ignore[return-value]  # checked above


@contextlib.contextmanager
def inference(device: torch.device, precision: Precision) -> Iterator[None]:
    """``torch.inference_mode()`` plus autocast to ``precision`` on a GPU."""
    with torch.inference_mode():
        if precision == "fp32":
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
                yield


def to_numpy(batch: torch.Tensor | np.ndarray, n_items: int) -> np.ndarray:
    """A model's output for one batch as float32 numpy [n_items, dim], checked."""
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(batch, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n_items:
        raise ValueError(
            f"the model returned shape {list(array.shape)} for {n_items} items; "
            f"expected [{n_items}, dim]"
        )
    return array


def batches(n_items: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n_items)``."""
    return (slice(i, min(i + batch_size, n_items)) for i in range(0, n_items, batch_size))


#: A text that would make fewer than ``1 / LENGTH_SPREAD`` of the tokens of the longest text of
#: its batch starts a new batch: every text of a batch is padded to its longest, so a batch of
#: mixed lengths (what a service's requests bring together) wastes most of its work on padding.
LENGTH_SPREAD = 1.5


def text_batches(texts: Sequence[str], batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` texts (sorted longest first) covering them,
    cut where a text is more than :data:`LENGTH_SPREAD` times shorter than its batch's first."""
    start = 0
    for i in range(1, len(texts)):
        if i - start == batch_size or _tokens(texts[i]) * LENGTH_SPREAD < _tokens(texts[start]):
            yield slice(start, i)
            start = i
    if texts:
        yield slice(start, len(texts))


def _tokens(text: str) -> float:
    """About how many tokens a subword tokenizer makes of ``text``: one per 4.5 characters of
    English, plus the 2 special tokens (so "hi" and "ok?" are not kept apart)."""
    return 2 + len(text) / 4.5


def check_texts(items: Sequence[Any], who: str) -> list[str]:
    """``items`` as a list of str, or a TypeError naming the first one that is not."""
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{who} embeds text: item {i} is a {type(item).__name__}, not a str")
    return list(items)


def as_bool(value: Any, name: str) -> bool:
    """A boolean option that may come as text from a spec (``?normalize=true``)."""
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load-time progress bars and notices, then restore them."""
    logging = importlib.import_module("transformers.utils.logging")
    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
