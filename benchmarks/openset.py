"""Open-set rejection on real traffic: HINT3's three chatbots, thresholds without out-of-scope data.

Each bot's ``train`` split holds in-scope intents only; its ``test`` split is real traffic, 36-69%
out of scope (``NO_NODES_DETECTED``). A model is fitted as users fit it (``FewShotModel``, method
``auto``, the bundled MiniLM, intent names as a prior), then scored with ``score_report``: a row
is right when accepted with its true intent, or when out of scope and rejected.

``--select`` (run first; its result is ``MIX`` in ``protoshot.maths.openset``): BANKING77 as a
    stand-in open set. 50 intents are known (10 shots each from ``train``), the other 27 are
    out of scope; the whole ``test`` split is the traffic; 100 seeds of which intents are known.
    The weight of the prototype term against the nearest shot is chosen there, with the
    train-only threshold (``ACCEPT`` = 90%, a round value fixed before any run). HINT3 never
    chooses anything.

``report`` (the default), per bot:
    (a) the train-only threshold (``calibrate`` with no data, the default);
    (b) ``--expected-unknown-rate`` set to the bot's true out-of-scope share, applied to the test
        traffic itself (it sees the test rows' similarities, without labels: it stands apart);
    the closed-set accuracy (no rejection) and the train-only rule at 85% and 95% beside.

    python benchmarks/openset.py [--select] [--json out.json]

Data from ``$PROTOSHOT_DATA_DIR`` (default ``../shared/data``); embeddings from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from protoshot.data import load_benchmark, load_source
from protoshot.maths.openset import MIX
from protoshot.model import FewShotModel
from protoshot.openset import ACCEPT, from_shots, from_traffic
from protoshot.pipeline import embed_samples, embedder_for

ROOT = Path(os.environ.get("PROTOSHOT_DATA_DIR", "../shared/data"))
BOTS = ("sofmattress", "curekart", "powerplay11")
OUT_OF_SCOPE = "NO_NODES_DETECTED"
MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)
console = Console(width=130)


def embedded(source: Any, model: FewShotModel) -> Any:
    samples = load_source(source) if not hasattr(source, "items") else source
    return embed_samples(samples, model.embedder, progress=False)[0]


def scores(model: FewShotModel, test: Any) -> dict[str, float]:
    report = model.score_report_embeddings(test.vectors, test.labels, unknown_label=OUT_OF_SCOPE)
    return {
        "overall": report.accuracy,
        "in_scope": report.known_accuracy,
        "oos_recall": report.unknown_recall,
        "false_accept": report.false_accept_rate,
        "threshold": model.threshold,
    }


def report() -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for bot in BOTS:
        folder = ROOT / "hint3" / "dataset" / "v2"
        model = FewShotModel(embedder_for("minilm"))
        train = embedded(folder / "train" / f"{bot}_train.csv", model)
        test = embedded(folder / "test" / f"{bot}_test.csv", model)
        model.fit_embeddings(train.vectors, train.labels)
        share = float(np.mean(test.labels == OUT_OF_SCOPE))
        row: dict[str, Any] = {"out_of_scope_share": share, "method": model.method}
        row["closed_set"] = scores(model, test)
        for accept in (0.85, ACCEPT, 0.95):
            model.rejection = from_shots(model.classifier, accept=accept)
            row[f"train_only_{round(100 * accept)}"] = scores(model, test)
        model.rejection = from_traffic(model.classifier, test.vectors, unknown_rate=share)
        row["expected_unknown_rate"] = scores(model, test)
        rows[bot] = row
    _print_report(rows)
    return rows


def _print_report(rows: dict[str, dict[str, Any]]) -> None:
    table = Table(
        title="HINT3 v2, bundled MiniLM, method auto: overall / in-scope / OOS recall / false-accept (%)"
    )
    table.add_column("threshold from")
    for bot in BOTS:
        table.add_column(
            f"{bot} ({100 * rows[bot]['out_of_scope_share']:.0f}% OOS)", justify="right"
        )
    table.add_column("mean overall", justify="right")
    labels = {
        f"train_only_{round(100 * ACCEPT)}": f"own shots, accept {100 * ACCEPT:.0f}% (default)",
        "train_only_85": "own shots, accept 85%",
        "train_only_95": "own shots, accept 95%",
        "expected_unknown_rate": "test traffic at its true OOS share (b)",
        "closed_set": "no rejection",
    }
    for key, name in labels.items():
        cells = [
            " / ".join(
                f"{100 * rows[b][key][k]:.1f}"
                for k in ("overall", "in_scope", "oos_recall", "false_accept")
            )
            for b in BOTS
        ]
        mean = np.mean([rows[b][key]["overall"] for b in BOTS])
        table.add_row(name, *cells, f"{100 * mean:.1f}", end_section=key == "train_only_95")
    console.print(table)


def select(seeds: int = 100, known_share: int = 50, shots: int = 10) -> dict[str, Any]:
    """Choose MIX on BANKING77 with held-out intents as the out of scope."""
    model = FewShotModel(embedder_for("minilm"))
    train = embed_samples(load_benchmark("banking77", "train", root=ROOT), model.embedder)[0]
    test = embed_samples(load_benchmark("banking77", "test", root=ROOT), model.embedder)[0]
    classes = np.unique(train.labels)
    overall = {mix: [] for mix in MIXES}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        known = rng.permutation(classes)[:known_share]
        rows = np.concatenate(
            [rng.choice(np.flatnonzero(train.labels == c), shots, replace=False) for c in known]
        )
        model.fit_embeddings(train.vectors[rows], train.labels[rows])
        truth = np.where(np.isin(test.labels, known), test.labels, OUT_OF_SCOPE)
        for mix in MIXES:
            model.rejection = from_shots(model.classifier, mix=mix)
            report = model.score_report_embeddings(test.vectors, truth, unknown_label=OUT_OF_SCOPE)
            overall[mix].append(report.accuracy)
    table = Table(
        title=f"selection: BANKING77, {known_share} known intents x {shots} shots, {seeds} seeds"
    )
    table.add_column("mix (prototype weight)")
    table.add_column("overall %", justify="right")
    best = max(MIXES, key=lambda m: np.mean(overall[m]))
    for mix in MIXES:
        mark = " *" if mix == best else ""
        table.add_row(f"{mix:g}", f"{100 * np.mean(overall[mix]):.2f}{mark}")
    console.print(table)
    console.print(f"chosen mix {best:g} (the code's MIX is {MIX:g})")
    return {"overall": {str(m): float(np.mean(v)) for m, v in overall.items()}, "chosen": best}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--select", action="store_true", help="choose MIX on BANKING77")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    result = select() if args.select else report()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
