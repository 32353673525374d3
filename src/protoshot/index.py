"""``PrototypeIndex``: the nearest prototypes of a query among 10^5-10^7 classes, through faiss.

Scoring every query against every prototype is right for hundreds of classes and the wrong shape
for face identities, product catalogues or entity linking. The index retrieves ``n_candidates``
prototypes per query (exactly with ``flat``, approximately with ``ivf``: an inverted file that
scans the ``nprobe`` cells nearest to the query); :class:`~protoshot.model.FewShotModel` then
scores those candidates exactly, with the model's own metric, and its probabilities are a
softmax over the candidates only (a class not retrieved gets none).

Classes are keyed by a stable 63-bit hash of their label, so the index follows the model's
updates (added shots move a prototype, removed classes leave) without being rebuilt.
``pip install 'protoshot[faiss]'`` (``faiss-gpu`` works too).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from protoshot._validation import check_choice

KINDS = ("auto", "flat", "ivf")
#: ``auto`` scans every prototype (exact) below this many classes, and uses ``ivf`` from it.
AUTO_IVF_FROM = 20_000
#: Training points per inverted-file cell (faiss asks for 30-256).
TRAIN_PER_CELL = 40


def _faiss() -> Any:
    from protoshot.embedders._runtime import require

    return require("faiss", "faiss", "a prototype index")


def label_ids(labels: Sequence[Any]) -> np.ndarray:
    """int64 [n]: a stable 63-bit key per class label (its JSON text, hashed)."""
    keys = [
        int.from_bytes(hashlib.blake2b(json.dumps(x).encode(), digest_size=8).digest(), "little")
        & (2**63 - 1)
        for x in labels
    ]
    return np.asarray(keys, dtype=np.int64)


class PrototypeIndex:
    """Nearest prototypes by inner product (cosine: on unit vectors) or squared Euclidean distance.

    Parameters
    ----------
    kind : {"auto", "flat", "ivf"}
        ``flat`` is exact; ``ivf`` is approximate and much faster on many classes; ``auto``
        takes ``flat`` below :data:`AUTO_IVF_FROM` classes.
    metric : {"ip", "l2"}
        What "nearest" means: largest inner product, or smallest squared Euclidean distance.
    nprobe : int, optional
        Cells an ``ivf`` search scans (default: ``max(8, n_cells // 128)``, chosen on synthetic
        data apart from the benchmark's); more is slower and finds more true neighbours.
    seed : int
        The k-means seed of ``ivf`` training (same seed, same index).
    """

    def __init__(
        self, kind: str = "auto", *, metric: str = "ip", nprobe: int | None = None, seed: int = 0
    ) -> None:
        check_choice("kind", kind, KINDS)
        check_choice("metric", metric, ("ip", "l2"))
        if nprobe is not None and nprobe < 1:
            raise ValueError(f"nprobe must be at least 1, got {nprobe}")
        self.kind, self.metric, self.nprobe, self.seed = kind, metric, nprobe, seed
        self._lock = threading.Lock()  # faiss indexes are not safe to change while searched
        self._index: Any = None
        self.kind_: str | None = None

    def build(self, vectors: np.ndarray, keys: np.ndarray) -> PrototypeIndex:
        """Index ``vectors`` float32 [n_classes, n_features] under ``keys`` int64 [n_classes]."""
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        if len(np.unique(keys)) != n:
            raise ValueError("two classes share an index key (labels with the same hash)")
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        kind = self.kind if self.kind != "auto" else ("ivf" if n >= AUTO_IVF_FROM else "flat")
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlat(d, metric))
        else:
            cells = int(min(max(16, 4 * math.sqrt(n)), n // TRAIN_PER_CELL or 1, 65536))
            quantizer = faiss.IndexFlat(d, metric)
            index = faiss.IndexIVFFlat(quantizer, d, cells, metric)
            index.cp.seed = self.seed
            rng = np.random.default_rng(self.seed)
            sample = min(n, cells * TRAIN_PER_CELL)
            index.train(vectors[np.sort(rng.choice(n, sample, replace=False))])
            index.nprobe = self.nprobe or max(8, cells // 128)
        index.add_with_ids(vectors, np.ascontiguousarray(keys, dtype=np.int64))
        with self._lock:
            self._index, self.kind_ = index, kind
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest keys of each query, int64 [n, k] (``-1`` where fewer exist), and
        their similarities float32 [n, k] (inner product, or minus the squared distance)."""
        if self._index is None:
            raise ValueError("the index is empty: build it first")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            found, keys = self._index.search(queries, k)
        return keys, (found if self.metric == "ip" else -found)

    def replace(self, vectors: np.ndarray, keys: np.ndarray) -> None:
        """Put ``vectors`` under ``keys`` (new or moved prototypes)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        with self._lock:
            self._index.remove_ids(keys)
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), keys)

    def remove(self, keys: np.ndarray) -> None:
        """Forget the prototypes under ``keys``."""
        with self._lock:
            self._index.remove_ids(np.ascontiguousarray(keys, dtype=np.int64))

    @property
    def ntotal(self) -> int:
        """How many prototypes the index holds."""
        return 0 if self._index is None else int(self._index.ntotal)


class IndexedClasses:
    """A :class:`PrototypeIndex` kept in step with a prototypes estimator's classes.

    Parameters
    ----------
    index : PrototypeIndex
        Built here from the estimator; its metric follows the estimator's.
    n_candidates : int
        Classes retrieved per query and scored exactly; probabilities are over these.
    """

    def __init__(self, index: PrototypeIndex, n_candidates: int = 32) -> None:
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
        self.index, self.n_candidates = index, n_candidates
        self._labels: dict[int, Any] = {}  # index key -> class label

    @staticmethod
    def check(estimator: Any) -> None:
        """Refuse a method that has no prototypes to index."""
        if not hasattr(estimator, "prototype_rows"):
            raise ValueError(
                f"an index needs a prototypes model (method prototypes or named-prototypes), "
                f"not {estimator.method!r}"
            )

    def build(self, estimator: Any) -> IndexedClasses:
        """Index every prototype of ``estimator``."""
        self.check(estimator)
        self.index.metric = "l2" if estimator.metric in ("sqeuclidean", "euclidean") else "ip"
        labels = estimator.classes_.tolist()
        keys = label_ids(labels)
        self.index.build(self._space(estimator, np.arange(len(labels))), keys)
        self._labels = dict(zip(keys.tolist(), labels, strict=True))
        return self

    def refresh(self, estimator: Any, labels: Sequence[Any]) -> None:
        """Bring the prototypes of ``labels`` up to date: moved, new, or gone from ``estimator``."""
        # as the classes' own values (a label 1 of float classes is the class 1.0, keyed so)
        labels = list(dict.fromkeys(np.asarray(labels, dtype=estimator.classes_.dtype).tolist()))
        present = np.isin(np.asarray(labels), estimator.classes_)
        keys = label_ids(labels)
        if (~present).any():
            self.index.remove(keys[~present])
            for key in keys[~present].tolist():
                self._labels.pop(key, None)
        if present.any():
            kept = [label for label, p in zip(labels, present, strict=True) if p]
            rows = np.searchsorted(estimator.classes_, np.asarray(kept))
            self.index.replace(self._space(estimator, rows), keys[present])
            self._labels.update(zip(keys[present].tolist(), kept, strict=True))

    def candidates(self, estimator: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's candidate classes (positions [n, k], ``-1`` for none) and their
        probabilities [n, k], the classes ordered as the index ranked them."""
        query = estimator.normalized(X).float().numpy()
        if estimator.metric == "cosine":
            query = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
        k = min(self.n_candidates, len(estimator.classes_))
        keys, _ = self.index.search(query, k)
        positions = self._positions(estimator, keys)
        lost = (positions < 0).all(axis=1)  # the index was ahead of this model (an update)
        if lost.any():  # those queries are scored against every class instead
            every = estimator.predict_proba(np.asarray(X)[lost])  # [n_lost, n_classes]
            positions[lost] = np.argsort(-every, axis=1, kind="stable")[:, :k]
        return positions, estimator.candidate_proba(X, positions)

    def _positions(self, estimator: Any, keys: np.ndarray) -> np.ndarray:
        """Class positions of index keys; ``-1`` for a key of no current class (an update may
        reach a shared index before the model that answers has it)."""
        classes = estimator.classes_
        missing = object()
        labels = [self._labels.get(key, missing) for key in keys.ravel().tolist()]
        found = np.asarray([label is not missing for label in labels])
        positions = np.full(keys.size, -1, dtype=np.int64)
        if found.any():
            wanted = np.asarray([label for label in labels if label is not missing])
            at = np.minimum(np.searchsorted(classes, wanted), len(classes) - 1)
            positions[found] = np.where(classes[at] == wanted, at, -1)
        return positions.reshape(keys.shape)

    @staticmethod
    def _space(estimator: Any, rows: np.ndarray) -> np.ndarray:
        vectors = estimator.prototype_rows(rows)
        if estimator.metric == "cosine":
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
