"""Micro-batching: concurrent requests share one forward pass of the embedder.

One worker thread embeds; while it is busy, requests queue up, and its next pass takes all of
them at once (up to ``max_items``). A lone request never waits for company, so it pays no extra
latency; under load, larger batches use the model far better than one text at a time. A pass
that fails is retried one request at a time, so a bad item fails only its own request.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

_Job = tuple[list[Any], "Future[np.ndarray]"]


class MicroBatcher:
    """Embed items for many threads through one function, batching what arrives together.

    Parameters
    ----------
    embed : callable
        ``embed(items) -> float32 [len(items), dim]``, called from the worker thread only.
    max_items : int
        A pass stops taking waiting requests once it holds this many items.
    """

    def __init__(self, embed: Callable[[list[Any]], np.ndarray], *, max_items: int = 256) -> None:
        self._embed = embed
        self._max_items = max_items
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._closing = threading.Lock()  # no request is queued after the close marker
        self.passes = 0  # forward passes made, and the requests they served
        self.requests = 0
        self._worker = threading.Thread(target=self._work, name="protoshot-batcher", daemon=True)
        self._worker.start()

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """The embeddings of ``items``, computed together with whatever else is waiting."""
        future: Future[np.ndarray] = Future()
        with self._closing:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            self._queue.put((list(items), future))
        return future.result()

    def close(self) -> None:
        """Finish the requests already queued, then stop the worker."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._worker.join()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            batch, size = [job], len(job[0])
            while size < self._max_items:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # closing: this batch is the last
                    self._queue.put(None)
                    break
                batch.append(job)
                size += len(job[0])
            self.requests += len(batch)
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        self.passes += 1
        try:
            vectors = self._embed([item for items, _ in batch for item in items])
        except Exception as err:
            if len(batch) == 1:
                batch[0][1].set_exception(err)
            else:  # find the failing request: the others still get their answers
                for job in batch:
                    self._run([job])
            return
        start = 0
        for items, future in batch:
            future.set_result(vectors[start : start + len(items)])
            start += len(items)
