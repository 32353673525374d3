"""Embedding on Ray against one process: the overhead of the actor pool, same texts, same run.

5,000 BANKING77 train texts, the bundled MiniLM, no embedding cache: embedded in this process
(:func:`protoshot.embedders.embed`), then on a local Ray with one actor
(:func:`protoshot.distributed.embed_source`, which also writes the Parquet shards). Both times
include loading the model once. Ray's start-up is timed apart: on a cluster it is paid once, not
per job.

    HF_HUB_OFFLINE=1 python benchmarks/distributed.py [--texts 5000] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from protoshot.data import load_source
from protoshot.distributed import connect, embed_source
from protoshot.embedders import embed
from protoshot.pipeline import embedder_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    samples = load_source("banking77:train", root=os.environ.get("PROTOSHOT_DATA_DIR"))
    items, labels = list(samples.items[: args.texts]), samples.labels[: args.texts]
    start = time.perf_counter()  # the same work as an actor's: load the model, embed
    embed(items, embedder_for("minilm"), cache=False, batch_size=32, progress=False)
    single = time.perf_counter() - start
    start = time.perf_counter()
    connect()
    ray_start = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        embedded, _ = embed_source(items, labels, "minilm", out, workers=args.workers, cache=False)
        on_ray = time.perf_counter() - start
    row = {
        "texts": len(items),
        "workers": args.workers,
        "one_process_s": round(single, 2),
        "ray_job_s": round(on_ray, 2),
        "ray_start_s": round(ray_start, 2),
        "overhead": round(on_ray / single - 1, 3),
        "embedded": embedded,
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
