"""Geometry beside accuracy: does a normalisation's accuracy change follow the space's shape?

For BANKING77 test (bundled MiniLM) and Omniglot's evaluation alphabets (EfficientNet-Lite0):
hubness, mean cosine, effective rank, within/between distance and prototype norm spread
(``protoshot.geometry``) under none / L2 / CL2N, next to 5-way 1- and 5-shot accuracy of
prototypes (squared Euclidean) under the same normalisation, on the same episodes.

    python benchmarks/geometry.py [--episodes 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from rich.console import Console
from rich.table import Table

from protoshot.data import load_benchmark
from protoshot.evaluation import evaluate_grid
from protoshot.geometry import inspect_geometry
from protoshot.pipeline import embed_samples, embedder_for

ROOT = os.environ.get("PROTOSHOT_DATA_DIR", "../shared/data")
SETS = {
    "BANKING77 test · MiniLM": ("banking77", "test", "minilm"),
    "Omniglot evaluation · EfficientNet-Lite0": ("omniglot", "evaluation", "efficientnet-lite0"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    table = Table(
        title="geometry and 5-way accuracy (prototypes, sq. Euclidean), per normalisation"
    )
    for column in ("data", "norm", "hubness", "mean cos", "eff. rank", "within/between",
                   "norm spread", "1-shot %", "5-shot %"):  # fmt: skip
        table.add_column(column)
    out: dict[str, Any] = {}
    for title, (name, split, model) in SETS.items():
        samples = load_benchmark(name, split, root=ROOT)
        data = embed_samples(samples, embedder_for(model), progress=True)[0]
        geometry = inspect_geometry(data.vectors, data.labels)
        grid = evaluate_grid(
            data.vectors, data.labels, n_way=5, shots=(1, 5), n_episodes=args.episodes,
            metrics=["sqeuclidean"],
        )  # fmt: skip
        acc = {(r.config["normalization"], r.config["n_shot"]): 100 * r.mean for r in grid}
        for norm, m in geometry.measures.items():
            table.add_row(
                title, norm, f"{m['hubness']:.2f}", f"{m['mean_cosine']:.3f}",
                f"{m['effective_rank']:.0f}", f"{m['within_between']:.3f}",
                f"{m['prototype_norm_spread']:.3f}", f"{acc[norm, 1]:.2f}", f"{acc[norm, 5]:.2f}",
            )  # fmt: skip
        out[title] = {"geometry": geometry.to_dict(), "accuracy": grid.to_dict()}
    Console(width=150).print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
