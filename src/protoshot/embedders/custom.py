"""Any callable or ``nn.Module`` as an embedder: the user's own ``foundation_model(inputs)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from protoshot.embedders._base import BatchedEmbedder
from protoshot.embedders._fingerprint import fingerprint_of, hash_state_dict
from protoshot.embedders._registry import Modality

MODALITIES = ("text", "image", "any")


class CallableEmbedder(BatchedEmbedder):
    """Wrap a function or module that maps a batch of inputs to vectors [batch, dim].

    Parameters
    ----------
    fn : callable or torch.nn.Module
        Called once per batch with ``preprocess(items)``; returns a tensor or array
        [len(items), dim]. A module is put in eval mode and moved to ``device``.
    name : str, optional
        Identifies the model in the fingerprint. Required for a plain callable (whose code
        protoshot cannot hash): give it a new name whenever its outputs change. For a module
        the fingerprint also hashes the state dict, and ``name`` defaults to its class name.
    preprocess : callable, optional
        Turns a list of items into the model's input for one batch. By default, numeric
        items (arrays, tensors) are stacked into one float32 tensor on ``device`` and other
        items (texts, paths) are passed as a list.
    modality : {"text", "image", "any"}
        What the items are; decides whether a ``str`` item is hashed as text or as a path.
    device, precision, batch_size
        As for every backend.

    Examples
    --------
    >>> net = torch.nn.Linear(8, 4)
    >>> embedder = CallableEmbedder(net)
    >>> embedder.embed([np.ones(8, np.float32)] * 3).shape
    (3, 4)
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        name: str | None = None,
        preprocess: Callable[[list[Any]], Any] | None = None,
        modality: Modality = "any",
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int | str = 32,
    ):
        super().__init__(device=device, precision=precision, batch_size=batch_size)
        if not callable(fn):
            raise TypeError(f"fn must be a callable or a torch.nn.Module, got {type(fn).__name__}")
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {list(MODALITIES)}, got {modality!r}")
        weights = None
        if isinstance(fn, torch.nn.Module):
            fn = fn.to(self.device).eval()
            weights = hash_state_dict(fn)
            name = name or type(fn).__qualname__
        elif not name:
            raise ValueError(
                f"a plain callable ({getattr(fn, '__qualname__', type(fn).__name__)}) needs "
                "name=...: the name stands for its weights and code in the cache key"
            )
        self._fn = fn
        self._preprocess = preprocess
        self.modality = modality
        self.name = name
        self.spec = f"callable:{name}"
        self.fingerprint = fingerprint_of(
            {
                "backend": "callable",
                "name": name,
                "state_dict_sha256": weights,
                "preprocess": getattr(preprocess, "__qualname__", None),
                "precision": self.precision,
            }
        )

    def _forward(self, items: list[Any]) -> torch.Tensor | np.ndarray:
        if self._preprocess is not None:
            inputs = self._preprocess(items)
        elif items and all(isinstance(item, (np.ndarray, torch.Tensor)) for item in items):
            inputs = torch.stack([torch.as_tensor(item, dtype=torch.float32) for item in items])
        else:
            inputs = items
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.to(self.device)
        return self._fn(inputs)
