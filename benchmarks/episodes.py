"""Episodes/s of protoshot's batched evaluator against per-episode loops, on the same episodes.

(a) the naive tutorial loop: per episode, a Python loop over classes with a boolean mask and
    ``.mean()``, ``torch.cdist(...) ** 2`` and ``argmin``;
(b) an easyfsl-style loop: per episode, a per-label list comprehension for prototypes and
    ``torch.cdist`` scores;
(c) protoshot's batched evaluator (``evaluate_episodes``).

All three see the same 10,000 episodes (5-way, 15 queries per class) drawn from synthetic
embeddings of 200 classes x 100 samples; their accuracies must agree. Each is timed as the best
of 3 runs (on a shared machine, noise only ever adds time). Then, in fresh processes: the first
``evaluate`` with the kernels compiling and with them cached, and the peak memory of 100,000
episodes at D = 768.

    python benchmarks/episodes.py [--episodes 10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from protoshot import EpisodeSampler
from protoshot.evaluation import evaluate_episodes


def synthetic(dim: int, n_classes: int = 200, per_class: int = 100, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_classes, 1, dim)).astype(np.float32)
    x = means + 2.0 * rng.normal(size=(n_classes, per_class, dim)).astype(np.float32)
    return x.reshape(-1, dim), np.repeat(np.arange(n_classes), per_class)


def naive_loop(
    x: torch.Tensor,
    support: np.ndarray,
    query: np.ndarray,
    metric: str = "sqeuclidean",
    normalization: str = "none",
) -> np.ndarray:
    n, k = support.shape[1:]
    q = query.shape[2]
    s_lab = torch.arange(n).repeat_interleave(k)
    q_lab = torch.arange(n).repeat_interleave(q)
    accs = np.empty(len(support))
    for e in range(len(support)):
        s = x[torch.from_numpy(support[e].reshape(-1))]
        qx = x[torch.from_numpy(query[e].reshape(-1))]
        if normalization == "cl2n":
            center = s.mean(0)
            s, qx = s - center, qx - center
        if normalization != "none":
            s, qx = s / s.norm(dim=1, keepdim=True), qx / qx.norm(dim=1, keepdim=True)
        protos = torch.stack([s[s_lab == c].mean(0) for c in range(n)])
        if metric == "cosine":
            pred = torch.nn.functional.cosine_similarity(qx[:, None], protos[None], dim=-1).argmax(
                1
            )
        else:
            pred = (torch.cdist(qx, protos) ** 2).argmin(1)
        accs[e] = (pred == q_lab).float().mean().item()
    return accs


def easyfsl_loop(x: torch.Tensor, support: np.ndarray, query: np.ndarray) -> np.ndarray:
    n, k = support.shape[1:]
    q = query.shape[2]
    s_lab = torch.arange(n).repeat_interleave(k)
    q_lab = torch.arange(n).repeat_interleave(q)
    accs = np.empty(len(support))
    for e in range(len(support)):
        s = x[torch.from_numpy(support[e].reshape(-1))]
        qx = x[torch.from_numpy(query[e].reshape(-1))]
        protos = torch.cat([s[torch.nonzero(s_lab == label)].mean(0) for label in range(n)])
        scores = -torch.cdist(qx, protos)
        accs[e] = (scores.argmax(1) == q_lab).float().mean().item()
    return accs


def protoshot_batched(x: np.ndarray, episodes) -> np.ndarray:
    return evaluate_episodes(x, episodes).results[0].per_episode


def timed(fn, *args, repeat: int = 3) -> tuple[np.ndarray, float]:
    """The result and the best of ``repeat`` wall times: the machine's noise only adds time."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return out, best


def speed(n_episodes: int) -> list[dict]:
    rows = []
    for dim in (384, 768):
        x_np, y = synthetic(dim)
        x = torch.from_numpy(x_np)
        for shot in (1, 5):
            ep = EpisodeSampler(
                y, n_way=5, n_shot=shot, n_query=15, n_episodes=n_episodes, seed=1
            ).sample()
            evaluate_episodes(x_np, ep[:512])  # warm-up
            ours, t_ours = timed(protoshot_batched, x_np, ep)
            naive, t_naive = timed(naive_loop, x, ep.support, ep.query)
            easy, t_easy = timed(easyfsl_loop, x, ep.support, ep.query)
            agree = min(
                np.isclose(ours, naive, atol=1e-6).mean(), np.isclose(ours, easy, atol=1e-6).mean()
            )
            assert agree >= 0.999, f"implementations disagree on {1 - agree:.2%} of episodes"
            rows.append(
                {
                    "dim": dim,
                    "n_shot": shot,
                    "episodes": n_episodes,
                    "naive_eps": n_episodes / t_naive,
                    "easyfsl_eps": n_episodes / t_easy,
                    "protoshot_eps": n_episodes / t_ours,
                    "speedup_vs_naive": t_naive / t_ours,
                    "speedup_vs_easyfsl": t_easy / t_ours,
                    "accuracy": float(ours.mean()),
                    "agreement": float(agree),
                }
            )
            print(_row(rows[-1]), flush=True)
    return rows


def grid_speed(n_episodes: int) -> dict:
    """The CLI's default comparison: 2 metrics x 3 normalisations x shots 1 and 5 (12 configurations).

    The naive way runs its loop once per configuration; protoshot scores all of them in one pass.
    """
    x_np, y = synthetic(384)
    x = torch.from_numpy(x_np)
    ep = EpisodeSampler(y, n_way=5, n_shot=5, n_query=15, n_episodes=n_episodes, seed=3).sample()
    metrics, norms, shots = ("sqeuclidean", "cosine"), ("none", "l2", "cl2n"), (1, 5)
    grid, t_ours = timed(
        lambda: evaluate_episodes(x_np, ep, shots=shots, metrics=metrics, normalizations=norms)
    )

    def naive_grid() -> None:
        for r in grid.results:
            k, norm, metric = r.config["n_shot"], r.config["normalization"], r.config["metric"]
            naive = naive_loop(x, ep.support[:, :, :k], ep.query, metric, norm)
            assert np.isclose(naive, r.per_episode, atol=1e-6).mean() >= 0.999

    _, t_naive = timed(naive_grid, repeat=1)
    return {
        "configs": len(grid),
        "episodes": n_episodes,
        "naive_s": t_naive,
        "protoshot_s": t_ours,
        "speedup": t_naive / t_ours,
    }


def _row(r: dict) -> str:
    return (
        f"| {r['dim']} | {r['n_shot']} | {r['naive_eps']:,.0f} | {r['easyfsl_eps']:,.0f} | "
        f"{r['protoshot_eps']:,.0f} | {r['speedup_vs_naive']:.1f}x | {r['speedup_vs_easyfsl']:.1f}x |"
    )


_MEMORY_CHILD = """
import resource, sys
import numpy as np
sys.path.insert(0, "benchmarks")
from episodes import synthetic
from protoshot import EpisodeSampler
from protoshot.evaluation import evaluate_episodes
x, y = synthetic(768)
sampler = EpisodeSampler(y, n_way=5, n_shot=5, n_query=15, n_episodes=100_000, seed=2)
result = evaluate_episodes(x, sampler)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak / 2**20, result.results[0].mean)
"""


_STARTUP_CHILD = """
import time
import numpy as np
from protoshot import evaluate
x = np.random.default_rng(0).normal(size=(400, 32)).astype(np.float32)
start = time.perf_counter()
evaluate(x, np.repeat(np.arange(20), 20), n_episodes=10)
print(time.perf_counter() - start)
"""


def kernel_startup() -> dict:
    """Seconds of a process's first ``evaluate``: compiling the kernels, then loading them cached."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        first, cached = (
            float(
                subprocess.run(
                    [sys.executable, "-c", _STARTUP_CHILD], env=env, capture_output=True,
                    text=True, check=True,
                ).stdout
            )
            for _ in range(2)
        )  # fmt: skip
    return {"compile_s": first, "cached_s": cached}


def peak_memory() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD], capture_output=True, text=True, check=True
    ).stdout.split()
    return {"peak_rss_gib": float(out[0]), "episodes": 100_000}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(
        "| D | shots | naive loop (ep/s) | easyfsl-style (ep/s) | protoshot (ep/s) | vs naive | vs easyfsl |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = speed(args.episodes)
    grid = grid_speed(max(1, args.episodes // 5))
    print(
        f"\ngrid of {grid['configs']} configurations (2 metrics x 3 normalisations x 1/5 shots), D = 384, "
        f"{grid['episodes']:,} episodes: naive loops {grid['naive_s']:.1f} s, protoshot {grid['protoshot_s']:.2f} s "
        f"({grid['speedup']:.0f}x)"
    )
    startup = kernel_startup()
    print(
        f"first evaluate in a process: {startup['compile_s']:.1f} s when the kernels compile "
        f"(once per machine), {startup['cached_s']:.2f} s when numba's disk cache has them"
    )
    mem = peak_memory()
    print(
        f"peak memory, 100,000 5-way 5-shot episodes at D = 768: {mem['peak_rss_gib']:.2f} GiB RSS "
        "(the whole process: Python, torch, the 61 MB table and the evaluation)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"speed": rows, "grid": grid, "startup": startup, "memory": mem}, f, indent=2)


if __name__ == "__main__":
    main()
