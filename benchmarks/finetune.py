"""Fit-time fine-tuning (``fit --finetune``) against the frozen encoder, same shots, same head.

Both sides are ``FewShotModel`` with the default head (``auto``, class names as a prior) on the
bundled MiniLM; the tuned side first trains MiniLM's last layer on the shots
(:mod:`protoshot.finetune`, its fixed settings). Reported:

1. HINT3's three bots (their whole train split; the test split's in-scope rows): in-scope
   accuracy without rejection, then with the default train-only rejection (accept 90% of the
   shots, left out in turn) on all test rows: overall / in-scope / OOS recall, as
   ``benchmarks/openset.py`` reports them. HINT3 chose nothing here: a blind test.
2. The all-class protocol on BANKING77 (test split) and SNIPS (validation split): K shots per
   class from train, the whole evaluation split, paired over ``--seeds`` draws (mean difference
   with its 95% t-interval); 1 shot per class is not tuned (``fit --finetune`` says so and fits
   the frozen encoder). The settings came from a recipe tuned on BANKING77 (the issue's), so
   BANKING77 is not blind; SNIPS is.

Fit time is the whole ``fit`` (tuning, embedding the shots with the tuned encoder, the head).

    HF_HUB_OFFLINE=1 python benchmarks/finetune.py [--seeds 3] [--shots 5 10] [--only hint3 banking77 snips]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from openset import BOTS, OUT_OF_SCOPE, scores  # benchmarks/ is on the path of its scripts
from protoshot.data import load_benchmark, load_source
from protoshot.evaluation.results import mean_ci
from protoshot.finetune import finetuned
from protoshot.model import FewShotModel
from protoshot.pipeline import embed_samples, embedder_for

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("PROTOSHOT_DATA_DIR") or REPO.parent / "shared" / "data")


def fitted(texts: list[str], labels: np.ndarray, tuned: bool, work: Path) -> tuple[Any, float]:
    """A fitted model (frozen or fine-tuned MiniLM, head ``auto``) and its fit time."""
    start = time.perf_counter()
    embedder = embedder_for("minilm")
    cache: Any = True
    if tuned:  # every set here has 2 shots or more: a failure to tune is an error
        embedder = finetuned("minilm", texts, labels, work, show_progress=False)
        cache = work / "cache"  # tuned vectors are of no use after the run
    model = FewShotModel(embedder, cache=cache).fit(texts, labels)
    return model, time.perf_counter() - start


def hint3(work: Path) -> None:
    folder = ROOT / "hint3" / "dataset" / "v2"
    print("| HINT3 bot | encoder | fit (s) | in-scope, no rejection | overall / in-scope / OOS "
          "recall / false-accept, default rejection |")  # fmt: skip
    print("|---|---|---|---|---|")
    for bot in BOTS:
        train = load_source(folder / "train" / f"{bot}_train.csv")
        test = load_source(folder / "test" / f"{bot}_test.csv")
        known = np.asarray(test.labels) != OUT_OF_SCOPE
        for tuned in (False, True):
            model, seconds = fitted(list(train.items), np.asarray(train.labels), tuned, work)
            vectors = model.embed(list(test.items))
            table = embed_samples(test, model.embedder, cache=model.cache, progress=False)[0]
            closed = np.mean(
                np.asarray(model.classifier.predict(vectors[known])) == table.labels[known]
            )
            model.calibrate_on_shots()
            row = scores(model, table)
            print(
                f"| {bot} | {'fine-tuned' if tuned else 'frozen'} | {seconds:.1f} | "
                f"{100 * closed:.1f} | {100 * row['overall']:.1f} / {100 * row['in_scope']:.1f} "
                f"/ {100 * row['oos_recall']:.1f} / {100 * row['false_accept']:.1f} |",
                flush=True,
            )


def all_class(name: str, test_split: str, work: Path, shots: list[int], seeds: int) -> None:
    """The all-class protocol on benchmark ``name``: K shots of every class from its train
    split, its ``test_split`` classified whole, paired over ``seeds`` draws."""
    train = load_benchmark(name, "train", root=ROOT)
    test = load_benchmark(name, test_split, root=ROOT)
    labels = np.asarray(train.labels)
    print(f"\n| {name}, {seeds} draws | frozen | fine-tuned | paired difference | fit (s), "
          "frozen / fine-tuned |")  # fmt: skip
    print("|---|---|---|---|---|")
    for k in shots:
        accuracy: dict[bool, list[float]] = {False: [], True: []}
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            rows = np.concatenate([
                rng.choice(np.flatnonzero(labels == c), k, replace=False) for c in np.unique(labels)
            ])  # fmt: skip
            texts = [train.items[i] for i in rows]
            for tuned in (False, True):
                model, took = fitted(texts, labels[rows], tuned, work / f"{name}-{k}-{seed}")
                right = model.score(list(test.items), test.labels)
                accuracy[tuned].append(100 * right)
                seconds[tuned].append(took)
        diff, _, half = mean_ci(np.subtract(accuracy[True], accuracy[False]), method="t")
        print(
            f"| {k} shots | {np.mean(accuracy[False]):.2f} | {np.mean(accuracy[True]):.2f} | "
            f"{diff:+.2f} ± {half:.2f} | {np.mean(seconds[False]):.1f} / "
            f"{np.mean(seconds[True]):.1f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--only", choices=("hint3", "banking77", "snips"), nargs="+")
    args = parser.parse_args()
    parts = args.only or ("hint3", "banking77", "snips")
    with tempfile.TemporaryDirectory() as tmp:
        if "hint3" in parts:
            hint3(Path(tmp))
        for name, test_split in (("banking77", "test"), ("snips", "validation")):
            if name in parts:
                all_class(name, test_split, Path(tmp), args.shots, args.seeds)


if __name__ == "__main__":
    main()
