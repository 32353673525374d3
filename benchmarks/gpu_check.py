"""The CUDA paths in one short run: ``python benchmarks/gpu_check.py`` on a machine with a GPU.

(1) Batched evaluation: the same episodes (5-way 1- and 5-shot, 15 queries, synthetic D = 768
    embeddings of 200 noisy classes) on the CPU in float32 (the reference) and bfloat16, and on the
    device in float32 and bfloat16: episodes/s, mean accuracy, its difference from the CPU's
    float32 and the share of episodes whose accuracy changed.
(2) Embedding: MiniLM on the device (PyTorch, float32 and bf16 autocast) against the CPU
    default (ONNX Runtime): texts/s on BANKING77 test texts, the largest difference (float32)
    and the lowest cosine (bf16) to the CPU's vectors.
(3) The estimators (prototypes, linear, auto, Mahalanobis) fitted and scored on the device
    against the CPU: the largest difference of their probabilities.
(4) Fine-tuning (``fit --finetune``): MiniLM's last layer tuned on ``--texts`` BANKING77 train
    texts (5 shots of each class) on the CPU and on the device: seconds, and how far the tuned
    vectors of those texts are apart (on the CPU against itself: 0, the tuning is repeatable).

It prints one Markdown table to paste into the README. ``--device cpu`` runs everything on the
CPU against itself (so the script is tested where there is no GPU: every difference is 0).

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py [--device cuda] [--episodes 10000] [--json F]
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

from protoshot import EpisodeSampler
from protoshot.data import load_source
from protoshot.embedders import create_embedder
from protoshot.estimators import create_estimator
from protoshot.evaluation import evaluate_episodes
from protoshot.finetune import finetuned

ESTIMATORS = ("prototypes", "linear", "auto", "mahalanobis")
NOISE = 4.0


def synchronized(device: str, run: Callable[[], Any]) -> tuple[Any, float]:
    """``run()``'s result and its wall time, the device's queue drained before and after."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def evaluation(device: str, n_episodes: int) -> list[dict[str, Any]]:
    """(1) the same episodes in float32 and bfloat16, on the CPU and on ``device``."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(200, 1, 768)).astype(np.float32)
    # noisy enough that many queries are wrong (1-shot about 60%): precision has room to matter
    x = (means + NOISE * rng.normal(size=(200, 100, 768)).astype(np.float32)).reshape(-1, 768)
    y = np.repeat(np.arange(200), 100)
    rows = []
    for shot in (1, 5):
        episodes = EpisodeSampler(
            y, n_way=5, n_shot=shot, n_query=15, n_episodes=n_episodes, seed=1
        )
        block = episodes.sample()
        reference = None
        for where, dtype in (("cpu", "float32"), ("cpu", "bfloat16"), (device, "float32"),
                             (device, "bfloat16")):  # fmt: skip

            def run(where: str = where, dtype: str = dtype, block: Any = block) -> np.ndarray:
                grid = evaluate_episodes(x, block, device=where, dtype=dtype)
                return grid.results[0].per_episode

            run()  # warm-up: kernels compiled, memory allocated
            accuracy, seconds = synchronized(where, run)
            reference = accuracy if reference is None else reference
            rows.append({
                "part": "evaluation", "shot": shot, "device": where, "dtype": dtype,
                "episodes_per_s": n_episodes / seconds, "accuracy": 100 * float(accuracy.mean()),
                "difference": 100 * float((accuracy - reference).mean()),
                "episodes_changed": float((accuracy != reference).mean()),
            })  # fmt: skip
    return rows


def embedding(device: str, n_texts: int, root: str) -> list[dict[str, Any]]:
    """(2) MiniLM on ``device`` against the CPU default."""
    texts = load_source("banking77:test", root=root).items[:n_texts]
    cpu = create_embedder("minilm", device="cpu", batch_size=64)
    reference, cpu_s = synchronized("cpu", lambda: cpu.embed(texts))
    rows = [{"part": "embedding", "device": "cpu", "precision": cpu.runtime,
             "texts_per_s": n_texts / cpu_s, "max_difference": 0.0, "min_cosine": 1.0}]  # fmt: skip
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and not device.startswith("cuda"):
            continue  # autocast applies on a GPU only
        model = create_embedder(
            "minilm", runtime="torch", device=device, precision=precision, batch_size=64
        )
        model.embed(texts[:64])  # warm-up
        vectors, seconds = synchronized(device, lambda model=model: model.embed(texts))
        rows.append({
            "part": "embedding", "device": device, "precision": precision,
            "texts_per_s": n_texts / seconds,
            "max_difference": float(np.abs(vectors - reference).max()),
            "min_cosine": float((vectors * reference).sum(1).min()),
        })  # fmt: skip
    return rows


def estimators(device: str) -> list[dict[str, Any]]:
    """(3) each estimator fitted and scored on ``device`` against the CPU."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 1, 64))
    x = (centres + rng.normal(size=(20, 30, 64))).reshape(-1, 64)
    y = np.repeat(np.arange(20), 30)
    support = np.concatenate([np.flatnonzero(y == c)[:5] for c in range(20)])
    rows = []
    for method in ESTIMATORS:
        on_cpu = create_estimator(method, device="cpu").fit(x[support], y[support])
        on_device = create_estimator(method, device=device).fit(x[support], y[support])
        difference = np.abs(on_device.predict_proba(x) - on_cpu.predict_proba(x)).max()
        rows.append({"part": "estimators", "method": method, "max_difference": float(difference)})
    return rows


def finetuning(device: str, n_texts: int, root: str) -> list[dict[str, Any]]:
    """(4) MiniLM's last layer tuned on the CPU and on ``device`` (the CPU twice: repeatable?)."""
    data = load_source("banking77:train", root=root)
    labels = np.asarray(data.labels)
    rows = np.concatenate([np.flatnonzero(labels == c)[:5] for c in np.unique(labels)])
    rows = rows[: max(n_texts // 5, 2) * 5]
    texts = [data.items[i] for i in rows]
    runs = []  # (where, seconds, tuned vectors of the shots): the CPU first, the reference
    with tempfile.TemporaryDirectory() as folder:
        for where in ("cpu", device):
            model, seconds = synchronized(
                where,
                lambda where=where: finetuned(
                    "minilm", texts, labels[rows], folder, device=where, show_progress=False
                ),
            )
            runs.append((where, seconds, model.embed(texts)))
    reference, frozen = runs[0][2], create_embedder("minilm", device="cpu").embed(texts)
    return [{
        "part": "finetune", "device": where, "shots": len(texts), "seconds": seconds,
        "max_difference": float(np.abs(vectors - reference).max()),
        "min_cosine": float((vectors * reference).sum(1).min()),
        "moved_from_frozen": float(np.abs(vectors - frozen).max()),  # the tuning did something
    } for where, seconds, vectors in runs]  # fmt: skip


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| check | where | speed | accuracy or agreement |", "| --- | --- | ---: | --- |"]
    for r in results:
        if r["part"] == "evaluation":
            lines.append(
                f"| evaluation 5-way {r['shot']}-shot | {r['device']} {r['dtype']} | "
                f"{r['episodes_per_s']:,.0f} episodes/s | {r['accuracy']:.2f}% "
                f"({r['difference']:+.3f} vs CPU float32; {100 * r['episodes_changed']:.2f}% "
                "of episodes changed) |"
            )
        elif r["part"] == "embedding":
            lines.append(
                f"| MiniLM embedding | {r['device']} {r['precision']} | "
                f"{r['texts_per_s']:,.0f} texts/s | max difference {r['max_difference']:.1e}, "
                f"min cosine {r['min_cosine']:.5f} |"
            )
        elif r["part"] == "finetune":
            lines.append(
                f"| fine-tuning MiniLM's last layer, {r['shots']} shots | {r['device']} | "
                f"{r['seconds']:.1f} s | tuned vectors vs CPU: max difference "
                f"{r['max_difference']:.1e}, min cosine {r['min_cosine']:.5f} |"
            )
        else:
            lines.append(
                f"| {r['method']} estimator | fit + predict_proba | | max difference "
                f"{r['max_difference']:.1e} vs CPU |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it on a machine with a GPU (or --device cpu)")
    root = os.environ.get("PROTOSHOT_DATA_DIR", str(Path(__file__).parents[2] / "shared" / "data"))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"{name}, torch {torch.__version__}")
    results = [
        *evaluation(args.device, args.episodes),
        *embedding(args.device, args.texts, root),
        *estimators(args.device),
        *finetuning(args.device, args.texts, root),
    ]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"device": name, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
