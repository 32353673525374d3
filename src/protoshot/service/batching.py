"""Micro-batching: concurrent requests share one forward pass of the embedder.

One worker thread embeds; while it is busy, requests queue up, and its next pass takes all of
them at once (up to ``max_items``). A lone request never waits for company, so it pays no extra
latency; under load, larger batches use the model far better than one text at a time. A pass
that fails is retried one request at a time, so a bad item fails only its own request.

A request may name what is done with its vectors (``finish``: the service classifies them with
the model the request started with). The requests of a pass that name the same ``finish`` get
one call of it, on the worker: the classifier's fixed cost per call (its input checks, more
than the arithmetic) is paid once a pass instead of once a request, and the caller
gets its answer from a future it can await on an event loop (no thread of its own waits).

The queue is bounded: when more than ``max_waiting`` items wait, a new request is refused at
once (:class:`Overloaded`, which the service answers 503 with ``Retry-After``) instead of
joining a line whose wait would only grow: latency stays bounded under any load (load shedding).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

#: What a request may ask done with its vectors: ``finish(vectors) -> one answer per row``.
Finish = Callable[[np.ndarray], Sequence[Any]]
_Job = tuple[list[Any], Finish | None, "Future[Any]"]


class Overloaded(RuntimeError):
    """More items wait than the queue allows: come back later."""


class MicroBatcher:
    """Embed items for many callers through one function, batching what arrives together.

    Parameters
    ----------
    embed : callable
        ``embed(items) -> float32 [len(items), dim]``, called from the worker thread only.
    max_items : int
        A pass stops taking waiting requests once it holds this many items.
    max_waiting : int, optional
        Most items waiting for a pass; a request that would exceed it raises
        :class:`Overloaded` (default: no bound).
    """

    def __init__(
        self,
        embed: Callable[[list[Any]], np.ndarray],
        *,
        max_items: int = 256,
        max_waiting: int | None = None,
    ) -> None:
        self._embed = embed
        self._max_items = max_items
        self._max_waiting = max_waiting
        self._waiting = 0  # items queued and not yet taken by a pass (guarded by _closing)
        self.shed = 0  # requests refused as overloaded
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._closing = threading.Lock()  # no request is queued after the close marker
        self.passes = 0  # forward passes made, and the requests they served
        self.requests = 0
        self._worker = threading.Thread(target=self._work, name="protoshot-batcher", daemon=True)
        self._worker.start()

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken by a pass."""
        return self._waiting

    def submit(self, items: Sequence[Any], finish: Finish | None = None) -> Future[Any]:
        """Queue ``items`` for the next pass; the future gets their embeddings, or with
        ``finish`` (hashable) its answers for them, from one call over the rows of every
        request of the pass that names an equal ``finish``.

        A future cancelled before its pass starts is dropped from the pass.

        Raises
        ------
        Overloaded
            If the items would make more than ``max_waiting`` wait.
        RuntimeError
            If the batcher is closed.
        """
        future: Future[Any] = Future()
        items = list(items)
        with self._closing:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            if self._max_waiting is not None and self._waiting + len(items) > self._max_waiting:
                self.shed += 1
                raise Overloaded(
                    f"{self._waiting} items are already waiting (limit {self._max_waiting})"
                )
            self._waiting += len(items)
            self._queue.put((items, finish, future))
        return future

    def embed(self, items: Sequence[Any]) -> np.ndarray:
        """The embeddings of ``items``, computed together with whatever else is waiting
        (blocks the calling thread until they are)."""
        result: np.ndarray = self.submit(items).result()
        return result

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
            with self._closing:
                self._waiting -= size
            # from here a future cannot be cancelled, so its answer can always be set
            batch = [job for job in batch if job[2].set_running_or_notify_cancel()]
            if batch:
                self.requests += len(batch)
                self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        self.passes += 1
        try:
            answers = _answers(batch, self._embed([item for job in batch for item in job[0]]))
        except Exception as err:
            if len(batch) == 1:
                batch[0][2].set_exception(err)
            else:  # find the failing request: the others still get their answers
                for job in batch:
                    self._run([job])
            return
        for (_, _, future), answer in zip(batch, answers, strict=True):
            future.set_result(answer)


def _answers(batch: list[_Job], vectors: np.ndarray) -> list[Any]:
    """Each request's answer: its rows of ``vectors``, or its share of the one call of its
    ``finish`` over the rows of every request that names it."""
    sizes = [len(items) for items, _, _ in batch]
    answers = _split(vectors, sizes)
    sharing: dict[Finish, list[int]] = {}
    for position, (_, finish, _) in enumerate(batch):
        if finish is not None:
            sharing.setdefault(finish, []).append(position)
    for finish, positions in sharing.items():
        done = finish(np.concatenate([answers[p] for p in positions]))
        for p, share in zip(positions, _split(done, [sizes[p] for p in positions]), strict=True):
            answers[p] = share
    return answers


def _split(rows: Sequence[Any] | np.ndarray, sizes: list[int]) -> list[Any]:
    """``rows`` cut into consecutive parts of ``sizes``."""
    bounds = itertools.accumulate(sizes, initial=0)
    return [rows[start:stop] for start, stop in itertools.pairwise(bounds)]
