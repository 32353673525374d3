"""Accuracy of every method, chosen honestly, and the fitted head against scikit-learn.

Three parts, each printed as a table (and written with ``--json``):

``--select`` (run first; its result is the defaults in the code): the pre-registered selection.
    SNIPS all-class (7 intents, K shots from ``train``, the whole ``validation`` split classified,
    200 seeds, the bundled MiniLM): the prior weight of named prototypes and the penalty of the
    named linear head, each the best mean accuracy over 1, 2, 5 and 10 shots. SNIPS is never
    reported; BANKING77 and Omniglot never choose anything.

``report`` (the default): BANKING77 all-class (77 intents, K shots from ``train``, the whole
    ``test`` split, ``--seeds`` draws, MiniLM) and Omniglot 5-way episodes (EfficientNet-Lite0 on
    ``images_evaluation``), every inductive method on the same draws, 0/1/5/10 shots, each row
    with its paired difference to plain prototypes. ``auto`` chooses per seed / episode from its
    own shots. The transductive methods are reported apart: on BANKING77 with
    ``--transductive-seeds`` draws (the whole, unbalanced test split is their batch) and on
    Omniglot on the same episodes (balanced queries).

``--adapters``: adapters trained on base classes (``protoshot adapt``'s defaults) beside the
    frozen embeddings, on the same episodes. Omniglot: a linear adapter on EfficientNet-Lite0's
    ``images_background`` embeddings and partial fine-tuning of its top (``--kind top``, run as
    the command from an empty cache, so its time includes embedding the base set), steps chosen
    on held-out background classes, reported on ``images_evaluation`` (5- and 20-way, 1 and 5
    shots, ``--episodes`` episodes, CL2N, paired differences) and on Lake et al.'s 20 original
    20-way 1-shot runs. Text: a residual adapter on BANKING77's
    ``train`` split, steps chosen on SNIPS, reported on HINT3's three bots (5-way episodes of
    their in-scope training intents with at least 10 examples, 5 queries).

``--sklearn``: the named linear head against ``LogisticRegression(C=10)`` on L2-normalised
    embeddings with the name as one more example (the issue's reference), both fitted on the same
    BANKING77 supports (5 and 10 shots, ``--sklearn-seeds`` seeds): accuracy and seconds per fit,
    side by side in one run.

    python benchmarks/accuracy.py [--select] [--sklearn] [--adapters] [--seeds 600] [--json F]

Data from ``$PROTOSHOT_DATA_DIR`` (default ``../shared/data``); embeddings from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
from rich.console import Console

from protoshot.data import load_benchmark
from protoshot.evaluation import evaluate_grid
from protoshot.evaluation.protocols import all_class_kshot
from protoshot.methods import METHODS, TRANSDUCTIVE, HeadSettings, LinearHead, Prototypes
from protoshot.pipeline import class_name_embeddings, embed_samples, embedder_for

ROOT = os.environ.get("PROTOSHOT_DATA_DIR", "../shared/data")
console = Console(width=130)
SHOTS = (0, 1, 5, 10)


def table(name: str, split: str, model: str) -> Any:
    samples = load_benchmark(name, split, root=ROOT)
    return embed_samples(samples, embedder_for(model), progress=True)[0]


def names_for(train: Any, model: str) -> dict[Any, np.ndarray]:
    names, skipped = class_name_embeddings(list(train.classes), embedder_for(model))
    assert not skipped, skipped
    return names


def select(seeds: int) -> dict[str, Any]:
    train, test = table("snips", "train", "minilm"), table("snips", "validation", "minilm")
    names = names_for(train, "minilm")
    methods: list[Any] = [Prototypes(["cl2n"], prior_weight=w) for w in (0.5, 1.0, 2.0, 4.0)]
    methods += [
        LinearHead(settings=HeadSettings(penalty=p, prior_weight=w))
        for p in (1.0, 0.3, 0.1, 0.03, 0.01)
        for w in (1.0, 2.0)
    ]
    grid = all_class_kshot(
        train.vectors, train.labels, test.vectors, test.labels, shots=(1, 2, 5, 10),
        n_seeds=seeds, methods=methods, class_embeddings=names,
    )  # fmt: skip
    console.print(
        grid.table(title=f"SNIPS all-class, {seeds} seeds (selection only, never reported)")
    )
    means: dict[tuple[str, float, float], list[float]] = {}
    for r in grid:
        key = (r.config["method"], r.config.get("prior_weight", 0.0), r.config.get("penalty", 0.0))
        means.setdefault(key, []).append(r.mean)
    best = {
        method: max((k for k in means if k[0] == method), key=lambda k: np.mean(means[k]))
        for method in ("named-prototypes", "named-linear")
    }
    for method, (_, weight, penalty) in best.items():
        print(f"chosen for {method}: prior_weight={weight}, penalty={penalty or '-'}")
    return {
        "grid": grid.to_dict(),
        "chosen": {m: {"prior_weight": k[1], "penalty": k[2]} for m, k in best.items()},
    }


def report(seeds: int, episodes: int, transductive_seeds: int) -> dict[str, Any]:
    train, test = table("banking77", "train", "minilm"), table("banking77", "test", "minilm")
    start = time.perf_counter()
    banking = all_class_kshot(
        train.vectors, train.labels, test.vectors, test.labels, shots=SHOTS, n_seeds=seeds,
        methods=METHODS, normalizations=["cl2n"], class_embeddings=names_for(train, "minilm"),
    )  # fmt: skip
    banking_s = time.perf_counter() - start
    console.print(banking.table(title=f"BANKING77 all-class, {seeds} seeds, {banking_s:.0f} s"))
    transductive = all_class_kshot(
        train.vectors, train.labels, test.vectors, test.labels, shots=(1, 5, 10),
        n_seeds=transductive_seeds, methods=["prototypes", *TRANSDUCTIVE],
        normalizations=["cl2n"],
    )  # fmt: skip
    console.print(
        transductive.table(
            title=f"BANKING77 all-class, transductive, {transductive_seeds} seeds "
            "(the whole test split is the batch)"
        )
    )
    images = table("omniglot", "evaluation", "efficientnet-lite0")
    start = time.perf_counter()
    omniglot = evaluate_grid(
        images.vectors, images.labels, n_way=5, shots=(1, 5), n_episodes=episodes,
        methods=["prototypes", "linear", "auto", "mahalanobis", *TRANSDUCTIVE],
        metrics=["sqeuclidean"], normalizations=["cl2n"],
    )  # fmt: skip
    omniglot_s = time.perf_counter() - start
    console.print(omniglot.table(title=f"Omniglot 5-way, {episodes} episodes, {omniglot_s:.0f} s"))
    return {
        "banking77_all_class": banking.to_dict(),
        "banking77_seconds": banking_s,
        "banking77_all_class_transductive": transductive.to_dict(),
        "omniglot_5way": omniglot.to_dict(),
        "omniglot_seconds": omniglot_s,
    }


def against_sklearn(seeds: int) -> dict[str, Any]:
    """The named head vs LogisticRegression(C=10) + name, same supports, one run."""
    from sklearn.linear_model import LogisticRegression

    from protoshot import EpisodeSampler, LinearClassifier

    train, test = table("banking77", "train", "minilm"), table("banking77", "test", "minilm")
    names = names_for(train, "minilm")
    classes = np.asarray(train.classes)
    name_rows = np.stack([names[c] for c in classes])
    x, y = np.asarray(train.vectors), np.asarray(train.labels)
    xq, yq = np.asarray(test.vectors), np.asarray(test.labels)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    draws = {
        k: EpisodeSampler(y, n_way="all", n_shot=k, n_query=1, n_episodes=seeds).sample().support
        for k in (5, 10)
    }
    # one library at a time: interleaved, OpenBLAS's spinning threads slow torch's down
    ours = {k: [] for k in draws}
    for k, supports in draws.items():
        for support in supports:
            idx = support.reshape(-1)
            start = time.perf_counter()
            head = LinearClassifier().fit(x[idx], y[idx], class_embeddings=names)
            seconds = time.perf_counter() - start
            ours[k].append(((head.predict(xq) == yq).mean(), seconds))
    theirs = {k: [] for k in draws}
    for k, supports in draws.items():
        for support in supports:
            idx = support.reshape(-1)
            xs = unit(np.concatenate([x[idx], name_rows]))
            ys = np.concatenate([y[idx], classes])
            start = time.perf_counter()
            lr = LogisticRegression(C=10, max_iter=1000).fit(xs, ys)
            seconds = time.perf_counter() - start
            theirs[k].append(((lr.predict(unit(xq)) == yq).mean(), seconds))
    rows = []
    for k in draws:
        a, b = np.array(ours[k]), np.array(theirs[k])
        r = {
            "shots": k,
            "named_linear_acc": 100 * a[:, 0].mean(),
            "sklearn_acc": 100 * b[:, 0].mean(),
            "named_linear_s": float(np.median(a[:, 1])),
            "sklearn_s": float(np.median(b[:, 1])),
        }
        rows.append(r)
        print(
            f"{k} shots, {seeds} seeds: named linear {r['named_linear_acc']:.2f}% in "
            f"{r['named_linear_s'] * 1000:.0f} ms a fit; LogisticRegression(C=10) + name "
            f"{r['sklearn_acc']:.2f}% in {r['sklearn_s'] * 1000:.0f} ms "
            f"({r['sklearn_s'] / r['named_linear_s']:.1f}x)"
        )
    return {"sklearn": rows}


def adapters(episodes: int) -> dict[str, Any]:
    return {"omniglot": omniglot_adapters(episodes), "text": text_adapter(episodes)}


def trained(base: Any, model: str, kind: str, validation: Any = None) -> tuple[Any, float]:
    """An adapter of ``kind`` with ``protoshot adapt``'s defaults, and its training seconds."""
    from protoshot.adapters import AdapterSettings, describe, train_adapter

    described = describe(embedder_for(model))
    start = time.perf_counter()
    adapter = train_adapter(
        base.vectors, base.labels, described, settings=AdapterSettings.for_kind(kind, seed=0),
        validation=None if validation is None else (validation.vectors, validation.labels),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    best = max(adapter.history[1:], key=lambda h: h["accuracy"])["step"]
    console.print(
        f"{model}: {kind} adapter in {seconds:.0f} s, validation "
        f"{100 * adapter.frozen_accuracy:.2f} -> {100 * adapter.accuracy:.2f} at step {best}"
    )
    return adapter, seconds


def adapt_top_from_nothing() -> tuple[Any, dict[str, Any]]:
    """``protoshot adapt omniglot:background --kind top`` as a user runs it, timed from an empty
    embedding cache (so the time includes embedding the base set's lower maps once)."""
    import subprocess
    import sys
    import tempfile

    from protoshot.adapters import Adapter

    with tempfile.TemporaryDirectory(prefix="protoshot-top-") as folder:
        command = [sys.executable, "-m", "protoshot", "adapt", "omniglot:background", "--model",
                   "efficientnet-lite0", "--kind", "top", "-o", f"{folder}/adapter",
                   "--cache-dir", f"{folder}/cache", "--json"]  # fmt: skip
        env = {**os.environ, "PROTOSHOT_DATA_DIR": os.path.abspath(ROOT)}  # the data evaluated
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(done.stderr)
        summary = {**json.loads(done.stdout), "command_seconds": seconds}
        adapter = Adapter.load(f"{folder}/adapter")
    console.print(
        f"top (partial fine-tuning): {seconds:.0f} s from nothing cached, validation "
        f"{100 * adapter.frozen_accuracy:.2f} -> {100 * adapter.accuracy:.2f} at step "
        f"{summary['best_step']} of {summary['steps_run']}"
    )
    return adapter, summary


def paired(a: Any, b: Any) -> tuple[float, float]:
    """Mean and 95% half-width of ``a - b`` over the same episodes, in points."""
    d = a.per_episode - b.per_episode
    return 100 * float(d.mean()), 196 * float(d.std(ddof=1)) / float(np.sqrt(len(d)))


def omniglot_adapters(episodes: int) -> dict[str, Any]:
    """Frozen EfficientNet-Lite0, a linear adapter and partial fine-tuning (``top``), all
    trained on ``images_background`` and reported on ``images_evaluation``, same episodes."""
    from protoshot.embedders import embed
    from protoshot.embedders.adapter import AdaptedEmbedder
    from protoshot.evaluation.protocols import omniglot_runs

    model, lower = "efficientnet-lite0", "efficientnet-lite0?features=lower"
    images = table("omniglot", "evaluation", model)
    linear, linear_seconds = trained(table("omniglot", "background", model), model, "linear")
    top, summary = adapt_top_from_nothing()
    maps = table("omniglot", "evaluation", lower)
    assert list(maps.ids) == list(images.ids)  # the same images, row for row
    for adapter in (linear, top):
        adapter.check_disjoint(images.labels, "images_evaluation")
    vectors = {"frozen": images.vectors, "linear": linear.transform(images.vectors),
               "top": top.transform(maps.vectors)}  # fmt: skip
    rows = []
    for n_way in (5, 20):
        options = {"n_way": n_way, "shots": (1, 5), "n_episodes": episodes, "seed": 0,
                   "n_query": 15, "metrics": ["sqeuclidean"], "normalizations": ["cl2n"]}  # fmt: skip
        grids = {k: evaluate_grid(v, images.labels, **options) for k, v in vectors.items()}
        for frozen, lin, tuned in zip(*grids.values(), strict=True):
            rows.append({
                "n_way": n_way, "shots": frozen.config.get("n_shot"),
                "frozen": 100 * frozen.mean, "linear": 100 * lin.mean, "top": 100 * tuned.mean,
                "linear_vs_frozen": paired(lin, frozen), "top_vs_frozen": paired(tuned, frozen),
                "top_vs_linear": paired(tuned, lin),
            })  # fmt: skip
            console.print(rows[-1])
    zip_path = os.path.join(ROOT, "omniglot", "one-shot-classification", "all_runs.zip")
    frozen_e = embedder_for(model)
    lake = {}
    for label, e in (("frozen", frozen_e), ("linear", AdaptedEmbedder(frozen_e, linear, "a")),
                     ("top", AdaptedEmbedder(embedder_for(lower), top, "t"))):  # fmt: skip
        err = omniglot_runs(zip_path, lambda p, e=e: embed(p, e), normalization="cl2n")
        lake[label] = 100 * err.error_rate
        console.print(f"Lake's 20 runs, {label}: {lake[label]:.2f}% error")
    return {
        "rows": rows, "lake_runs_error": lake, "linear_seconds": linear_seconds,
        "linear_history": linear.history, "top": summary, "top_history": top.history,
    }  # fmt: skip


def text_adapter(episodes: int) -> dict[str, Any]:
    """A residual adapter on BANKING77's ``train`` split, steps chosen on SNIPS, reported on
    HINT3's three bots."""
    base, snips = table("banking77", "train", "minilm"), table("snips", "train", "minilm")
    adapter, seconds = trained(base, "minilm", "residual", validation=snips)
    rows = []
    for bot in ("curekart", "powerplay11", "sofmattress"):
        t = hint3_table(bot)
        adapter.check_disjoint(t.labels, bot)
        options = {"n_way": 5, "shots": (1, 5), "n_episodes": episodes, "seed": 0, "n_query": 5,
                   "metrics": ["sqeuclidean"], "normalizations": ["cl2n"]}  # fmt: skip
        grids = [
            evaluate_grid(v, t.labels, **options) for v in (t.vectors, adapter.transform(t.vectors))
        ]
        for frozen, adapted in zip(*grids, strict=True):
            rows.append({
                "target": bot, "shots": frozen.config.get("n_shot"), "frozen": 100 * frozen.mean,
                "adapted": 100 * adapted.mean, "adapted_vs_frozen": paired(adapted, frozen),
            })  # fmt: skip
            console.print(rows[-1])
    return {"seconds": seconds, "history": adapter.history, "rows": rows}


def hint3_table(bot: str) -> Any:
    """A HINT3 bot's in-scope training intents with at least 10 examples (5 shots and 5
    queries), embedded by MiniLM."""
    from protoshot.data import EmbeddingTable, load_source

    samples = load_source(os.path.join(ROOT, "hint3", "dataset", "v2", "train", f"{bot}_train.csv"))
    t = embed_samples(samples, embedder_for("minilm"), progress=False)[0]
    names, counts = np.unique(t.labels, return_counts=True)
    keep = np.isin(t.labels, names[counts >= 10]) & (t.labels != "NO_NODES_DETECTED")
    return EmbeddingTable.from_arrays(t.vectors[keep], t.labels[keep], model=t.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--select", action="store_true", help="run the SNIPS selection")
    parser.add_argument("--sklearn", action="store_true", help="compare with scikit-learn")
    parser.add_argument("--adapters", action="store_true", help="adapters beside frozen")
    parser.add_argument("--seeds", type=int, default=600, help="BANKING77 all-class seeds")
    parser.add_argument("--select-seeds", type=int, default=200)
    parser.add_argument("--transductive-seeds", type=int, default=20)
    parser.add_argument("--sklearn-seeds", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=2000, help="Omniglot episodes")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if args.select:
        out["select"] = select(args.select_seeds)
    elif args.sklearn:
        out |= against_sklearn(args.sklearn_seeds)
    elif args.adapters:
        out["adapters"] = adapters(args.episodes)
    else:
        out |= report(args.seeds, args.episodes, args.transductive_seeds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
