"""Micro-batching: concurrent requests share one forward pass of the embedder.

One worker thread embeds; while it is busy, requests queue up, and its next pass takes all of
them at once (up to ``max_items``). A lone request never waits for company, so it pays no extra
latency; under load, larger batches use the model far better than one text at a time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np


class MicroBatcher:
    """Embed items for many threads through one function, batching what arrives together."""

    def __init__(self, embed: Callable[[list[Any]], np.ndarray], *, max_items: int = 256) -> None:
        self._embed = embed
        self._max_items = max_items
        self._queue: queue.Queue[tuple[list[Any], Future[np.ndarray]]] = queue.Queue()
        self.passes = 0  # forward passes made, and the requests they served
        self.requests = 0
        threading.Thread(target=self._work, name="protoshot-batcher", daemon=True).start()

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """The embeddings of ``items``, computed together with whatever else is waiting."""
        future: Future[np.ndarray] = Future()
        self._queue.put((list(items), future))
        return future.result()

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            size = len(batch[0][0])
            while size < self._max_items:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(batch[-1][0])
            self.passes += 1
            self.requests += len(batch)
            try:
                vectors = self._embed([item for items, _ in batch for item in items])
            except Exception as err:  # handed to every waiting request
                for _, future in batch:
                    future.set_exception(err)
                continue
            start = 0
            for items, future in batch:
                future.set_result(vectors[start : start + len(items)])
                start += len(items)
