"""ONNX Runtime for the torch backends: pick the runtime, export once, check, load.

A model is exported to ``<cache dir>/onnx/`` under a name keyed by its fingerprint, and every
session is checked against eager PyTorch on a sample batch before it is used: float32 vectors
must agree within :data:`TOLERANCE` (then both runtimes share one fingerprint, and so one cache
entry). A file that cannot be loaded or disagrees (truncated, stale, hand-edited) is rebuilt;
a model that cannot be exported, or whose export disagrees, runs in PyTorch, with one warning
naming the reason: never a wrong vector.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot.cache import default_cache_dir
from protoshot.embedders._runtime import require
from protoshot.store import atomic_path

#: Largest difference allowed between an ONNX Runtime vector and eager PyTorch's (float32), on
#: the vectors' scale (see :func:`largest_difference`): absolute for unit vectors.
TOLERANCE = 1e-5

#: How int8 models are quantised: weights to int8 per output channel (closer to float32 than
#: one scale per tensor), activations dynamically. ``benchmarks/embed.py`` measures the cost.
INT8 = "int8-dynamic-per-channel"

Check = Callable[[Any], float]  # a session -> its largest difference from eager PyTorch


class ExportError(RuntimeError):
    """The model could not be run by ONNX Runtime as exported (the reason is the message)."""


def pick_runtime(runtime: str, device: torch.device, runtimes: tuple[str, ...]) -> str:
    """``runtime`` checked; ``"auto"`` is ONNX Runtime on a CPU when it is installed."""
    if runtime not in runtimes:
        raise ValueError(f"runtime must be one of {list(runtimes)}, got {runtime!r}")
    if runtime.startswith("onnx"):
        require("onnxruntime", "onnx")
        require("onnx", "onnx")
        return runtime
    if runtime == "torch" or device.type != "cpu":
        return "torch"
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx"


def onnx_dir(folder: str | os.PathLike[str] | None) -> Path:
    """Where exported models are kept (default: ``<default cache dir>/onnx``)."""
    return Path(folder) if folder is not None else default_cache_dir() / "onnx"


def session(path: Path, export: Callable[[Path], None], check: Check | None) -> Any:
    """An ONNX Runtime session on ``path``, exported there first when missing or unusable.

    ``check`` (for float32 files) measures the session against eager PyTorch; a file on disk
    that fails it is rebuilt once, a fresh export that fails it raises :class:`ExportError`.
    """
    if path.exists():
        try:
            return _checked(path, check)
        except ExportError as err:
            warnings.warn(f"rebuilding {path.name}: {err}", UserWarning, stacklevel=4)
            path.unlink(missing_ok=True)
    failed = _failure(path)
    if failed is not None:  # known not to work with these versions: never re-exported each run
        raise ExportError(failed)
    # export to a temporary name, then rename: concurrent exports never see a partial file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on tracing and deprecations
            export(tmp)
    except ExportError:
        raise
    except Exception as err:  # the exporter fails in many ways (unsupported op, custom code)
        reason = f"the export failed ({type(err).__name__}: {err})".strip()
        _remember_failure(path, reason)
        raise ExportError(reason) from err
    try:
        return _checked(path, check)
    except ExportError as err:
        path.unlink(missing_ok=True)
        _remember_failure(path, str(err))
        raise


def _checked(path: Path, check: Check | None) -> Any:
    ort = require("onnxruntime", "onnx")
    try:
        loaded = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ExportError(f"ONNX Runtime cannot load it ({type(err).__name__})") from err
    if check is not None:
        try:
            difference = check(loaded)
        except Exception as err:  # e.g. an input the exported graph dropped
            raise ExportError(f"it cannot run a sample ({type(err).__name__})") from err
        if not difference <= TOLERANCE:  # NaN fails too
            raise ExportError(
                f"its vectors differ from PyTorch's by up to {difference:.2g} (> {TOLERANCE:g})"
            )
    return loaded


def largest_difference(got: np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    """Largest absolute difference of two batches of vectors, on the scale of ``expected``
    (divided by its largest component where that exceeds 1; inf if the shapes differ)."""
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().to("cpu", torch.float32).numpy()
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max() / max(1.0, np.abs(expected).max()))


def fallback_warning(spec: str, reason: ExportError) -> None:
    """The one warning of a model that runs in PyTorch because ONNX Runtime cannot run it."""
    warnings.warn(
        f"{spec}: running in PyTorch, not ONNX Runtime: {reason}", UserWarning, stacklevel=4
    )


def remember(path: Path, facts: dict[str, Any]) -> None:
    """Record, beside a checked export, its SHA-256 and what running it needs (``facts``), so a
    later process can use it without loading the original model (see :func:`recall`)."""
    from protoshot.embedders._fingerprint import hash_file
    from protoshot.store import write_atomically

    record = {"sha256": hash_file(path), **facts}
    write_atomically(_record_path(path), json.dumps(record).encode())


def recall(path: Path) -> dict[str, Any] | None:
    """The facts :func:`remember` recorded for ``path``, if the file is still the one checked."""
    from protoshot.embedders._fingerprint import hash_file

    try:
        record = json.loads(_record_path(path).read_text(encoding="utf-8"))
        if isinstance(record, dict) and record.get("sha256") == hash_file(path):
            return record
    except (OSError, ValueError):
        pass
    return None


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _failure_path(path: Path) -> Path:
    return path.with_name(path.name + ".failed.json")


def _versions() -> dict[str, str]:
    ort = require("onnxruntime", "onnx")
    return {"torch": torch.__version__, "onnxruntime": ort.__version__}


def _remember_failure(path: Path, reason: str) -> None:
    """Keep why ``path`` could not be made, for these library versions (best effort)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _failure_path(path).write_text(json.dumps({"reason": reason, **_versions()}))
    except OSError:
        pass


def _failure(path: Path) -> str | None:
    """The remembered reason ``path`` cannot be made, if the library versions are the same."""
    try:
        record = json.loads(_failure_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or any(record.get(k) != v for k, v in _versions().items()):
        return None
    return f"{record.get('reason')} (found before; delete {_failure_path(path)} to try again)"


def quantize_int8(source: Path, target: Path) -> None:
    """:data:`INT8` quantisation of ``source`` into ``target``."""
    quantization = require("onnxruntime.quantization", "onnx")
    root = logging.getLogger()  # the quantizer advises pre-processing on the root logger
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantization.quantize_dynamic(
            str(source), str(target), per_channel=True,
            weight_type=quantization.QuantType.QInt8,
        )  # fmt: skip
    finally:
        root.setLevel(level)
