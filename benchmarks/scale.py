"""Models that grow: the cost of an update, and prediction among very many classes.

1. **Updates** at ``--update-classes`` classes (D = 384, one shot per class): what the service
   does per acknowledged update (copy the model, add one shot, make it durable), with the
   journal (now) and with a whole snapshot per update (before the journal), side by side in one
   run. Bytes written are the process's own ``write`` calls (``/proc/self/io``), so they count
   every file the update touches (compaction included). One update in ten creates a class:
   that one makes room for a row in every per-class array (classes stay sorted), so it is timed
   apart from the shots added to existing classes.
2. **Prediction** at ``--classes`` classes: prototypes are unit vectors drawn from a Gaussian
   mixture of 1,000 clusters (neighbours are realistic, not uniform noise); queries are a
   prototype plus noise. The dense product (float32 matrix product and argmax, the fastest way to
   score every class) against the index (:mod:`protoshot.index`: retrieval, then exact scores and
   probabilities over 32 candidates), in batches of 1 and 256; recall@1 is agreement of the
   index's top class with the dense top class.

    python benchmarks/scale.py [--update-classes 100,10000,100000] [--classes 1000,100000,1000000]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from protoshot import PrototypeClassifier
from protoshot.index import IndexedClasses, PrototypeIndex
from protoshot.store import journal

D = 384
CLUSTERS = 1000


def written_bytes() -> int:
    """Bytes this process has handed to ``write`` so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def mixture(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors around :data:`CLUSTERS` unit centres."""
    centres = unit(rng.normal(size=(CLUSTERS, D)))
    out = np.empty((n, D), np.float32)
    for start in range(0, n, 100_000):  # bounded memory
        m = min(100_000, n - start)
        spread = rng.normal(size=(m, D)).astype(np.float32) * np.float32(0.8 / np.sqrt(D))
        out[start : start + m] = unit(centres[rng.integers(CLUSTERS, size=m)] + spread)
    return out


# --------------------------------------------------------------------------- updates
def update_run(
    n_classes: int, n_updates: int, mode: str, folder: Path, rng: np.random.Generator
) -> dict[str, Any]:
    """``n_updates`` acknowledged updates, each as the service makes one."""
    model = PrototypeClassifier("cosine", normalization="l2")
    model.fit(mixture(n_classes, rng), np.arange(n_classes))
    model.save(folder, overwrite=True)
    shots = mixture(n_updates, rng)
    times, entry, new_class = [], 0, []
    before = written_bytes()
    for i in range(n_updates):
        new_class.append(i % 10 == 9)
        label = n_classes + i if new_class[-1] else int(rng.integers(n_classes))
        start = time.perf_counter()
        new = copy.copy(model)
        new.partial_fit(shots[i : i + 1], [label])
        if mode == "journal":
            entry += len(journal.encode(new._unsaved))
            new.commit(folder)
            if new._position is not None and _due(folder, new):
                new.save(folder, overwrite=True)  # compaction, counted like the update
        else:
            new.save(folder, overwrite=True)
        times.append(time.perf_counter() - start)
        model = new
    per_update = (written_bytes() - before) / n_updates
    t, new = np.asarray(times), np.asarray(new_class)
    return {
        "classes": n_classes,
        "mode": mode,
        "updates": n_updates,
        "updates_per_s": round(n_updates / t.sum(), 1),
        "p50_ms": round(1e3 * float(np.median(t)), 2),
        "p99_ms": round(1e3 * float(np.quantile(t, 0.99)), 2),
        "existing_class_p50_ms": round(1e3 * float(np.median(t[~new])), 2),
        "new_class_p50_ms": round(1e3 * float(np.median(t[new])), 2),
        "bytes_per_update": round(per_update),
        "entry_bytes": round(entry / n_updates) if entry else None,
        "written_over_entry": round(per_update / (entry / n_updates), 2) if entry else None,
    }


def _due(folder: Path, model: PrototypeClassifier) -> bool:
    from protoshot import store

    return store.needs_compaction(folder, model._position)


# --------------------------------------------------------------------------- prediction
def predict_run(n_classes: int, rng: np.random.Generator, n_latency: int) -> list[dict[str, Any]]:
    protos = mixture(n_classes, rng)
    estimator = PrototypeClassifier("cosine", temperature=0.05).fit(protos, np.arange(n_classes))
    source = rng.integers(n_classes, size=2048)
    noise = rng.normal(size=(2048, D)).astype(np.float32) * np.float32(0.5 / np.sqrt(D))
    queries = unit(protos[source] + noise)
    exact = np.concatenate(
        [(queries[i : i + 256] @ protos.T).argmax(1) for i in range(0, 2048, 256)]
    )

    def dense(q: np.ndarray) -> np.ndarray:
        return (q @ protos.T).argmax(1)

    rows = [
        measure("dense product", n_classes, dense, queries, exact, n_latency, 0.0, protos.nbytes)
    ]
    for kind in ("flat", "ivf"):
        start = time.perf_counter()
        indexed = IndexedClasses(PrototypeIndex(kind), n_candidates=32).build(estimator)
        built = time.perf_counter() - start

        def through_index(q: np.ndarray, indexed: IndexedClasses = indexed) -> np.ndarray:
            positions, proba = indexed.candidates(estimator, q)
            return positions[np.arange(len(q)), proba.argmax(1)]

        memory = _index_bytes(indexed.index)
        rows.append(
            measure(kind, n_classes, through_index, queries, exact, n_latency, built, memory)
        )
        del indexed
    return rows


def _index_bytes(index: PrototypeIndex) -> int:
    import faiss

    return int(faiss.serialize_index(index._index).nbytes)


def measure(
    name: str,
    n_classes: int,
    top1: Any,
    queries: np.ndarray,
    exact: np.ndarray,
    n_latency: int,
    build_s: float,
    memory: int,
) -> dict[str, Any]:
    found = np.concatenate([top1(queries[i : i + 256]) for i in range(0, len(queries), 256)])
    latency = []
    for i in range(n_latency):
        start = time.perf_counter()
        top1(queries[i : i + 1])
        latency.append(time.perf_counter() - start)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 2.0 or n < 512:
        top1(queries[n % 2048 : n % 2048 + 256])
        n += 256
    throughput = n / (time.perf_counter() - start)
    return {
        "classes": n_classes,
        "method": name,
        "build_s": round(build_s, 2),
        "memory_mb": round(memory / 2**20, 1),
        "batch1_ms_p50": round(1e3 * float(np.median(latency)), 3),
        "batch256_queries_per_s": round(throughput),
        "recall_at_1": round(float((found == exact).mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--update-classes", default="100,10000,100000")
    parser.add_argument("--classes", default="1000,100000,1000000")
    parser.add_argument("--updates", type=int, default=200, help="journal updates per size")
    parser.add_argument("--latency-queries", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    updates = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in map(int, filter(None, args.update_classes.split(","))):
            updates.append(update_run(n, args.updates, "journal", Path(tmp) / "j", rng))
            # a whole snapshot per update: a few are enough to see its cost
            few = max(5, min(args.updates, 2_000_000 // n))
            updates.append(update_run(n, few, "snapshot per update", Path(tmp) / "s", rng))
            print(json.dumps(updates[-2]), json.dumps(updates[-1]), sep="\n", flush=True)
    predictions = []
    for n in map(int, filter(None, args.classes.split(","))):
        for row in predict_run(n, rng, args.latency_queries):
            predictions.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"updates": updates, "predictions": predictions}, indent=1))


if __name__ == "__main__":
    main()
