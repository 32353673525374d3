"""Are the probabilities honest? Expected calibration error of fitted models, BANKING77.

BANKING77 all-class (77 intents, K shots per intent from ``train``, the whole ``test`` split
scored, ``--seeds`` draws, the bundled MiniLM): each estimator as ``protoshot fit`` builds it,
scored with ``score_report`` (accuracy, top-label ECE over 15 bins, NLL). For the prototype and
Mahalanobis estimators, the temperature fitted on the shots (cross-validated NLL, the default)
is shown beside the fixed default it replaces; the heads (``linear``, ``auto``) are fitted with
cross-entropy and have no separate temperature. Nothing here is chosen on the test split.

    python benchmarks/calibration.py [--seeds 10] [--json out.json]
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

from protoshot.data import load_benchmark
from protoshot.estimators import create_estimator
from protoshot.maths.distances import default_temperature
from protoshot.model import FewShotModel
from protoshot.pipeline import embed_samples, embedder_for

ROOT = os.environ.get("PROTOSHOT_DATA_DIR", "../shared/data")
SHOTS = (1, 5, 10)
#: (row name, method, options, whether the temperature is fitted on the shots)
ROWS = (
    ("prototypes (cosine, CL2N)", "prototypes", {"metric": "cosine", "normalization": "cl2n"}),
    ("mahalanobis", "mahalanobis", {}),
    ("linear", "linear", {}),
    ("auto", "auto", {}),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    embedder = embedder_for("minilm")
    train = embed_samples(
        load_benchmark("banking77", "train", root=ROOT), embedder, progress=False
    )[0]
    test = embed_samples(load_benchmark("banking77", "test", root=ROOT), embedder, progress=False)[
        0
    ]
    classes = np.unique(train.labels)
    results: dict[str, dict[str, Any]] = {}
    for k in SHOTS:
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            rows = np.concatenate(
                [rng.choice(np.flatnonzero(train.labels == c), k, replace=False) for c in classes]
            )
            for name, method, options in ROWS:
                model = FewShotModel(embedder, create_estimator(method, **options))
                model.fit_embeddings(train.vectors[rows], train.labels[rows])
                fitted = model.score_report_embeddings(test.vectors, test.labels)
                cell = results.setdefault(
                    f"{name} | {k}", {"accuracy": [], "ece": [], "nll": [], "ece_default": []}
                )
                cell["accuracy"].append(fitted.accuracy)
                cell["ece"].append(fitted.ece)
                cell["nll"].append(fitted.nll)
                estimator = model.classifier
                if hasattr(estimator, "temperature_"):  # the fixed default it replaces
                    metric = options.get("metric", "sqeuclidean")
                    estimator.temperature_ = default_temperature(metric, estimator.normalization)
                    cell["ece_default"].append(
                        model.score_report_embeddings(test.vectors, test.labels).ece
                    )
    table = Table(title=f"BANKING77 all-class, MiniLM, mean of {args.seeds} seeds (%; NLL in nats)")
    for column in ("method", "shots", "accuracy", "ECE", "ECE at the fixed default", "NLL"):
        table.add_column(column, justify="left" if column == "method" else "right")
    summary = {}
    for key, cell in results.items():
        name, k = key.split(" | ")
        means = {m: float(np.mean(v)) if v else None for m, v in cell.items()}
        summary[key] = means
        default = "" if means["ece_default"] is None else f"{100 * means['ece_default']:.1f}"
        table.add_row(
            name,
            k,
            f"{100 * means['accuracy']:.2f}",
            f"{100 * means['ece']:.1f}",
            default,
            f"{means['nll']:.3f}",
        )
    Console(width=120).print(table)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
