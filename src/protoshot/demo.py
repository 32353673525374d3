"""The main job on the embedded defaults: protoshot's demo.

The bundled MiniLM on BANKING77 and EfficientNet-Lite0 on Omniglot's evaluation alphabets:
squared Euclidean vs cosine, none / L2 / centring + L2, at 1 and 5 shots, every configuration
on the same 5-way episodes; plus the published protocols so the numbers stand beside the
papers': BANKING77 all-class K-shot with every method side by side (class names as a prior,
the fitted head, ``auto``; 0 shots = names alone), and Omniglot's 20 one-shot runs. Embeddings
go through the cache, so a second run takes seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protoshot.cache import CacheArg
from protoshot.evaluation import GridResult, evaluate_grid
from protoshot.evaluation.protocols import RunsResult, all_class_kshot, omniglot_runs
from protoshot.methods import METHODS as METHODS_SIDE_BY_SIDE

TEXT_MODEL = "minilm"
IMAGE_MODEL = "efficientnet-lite0"
METRICS = ("sqeuclidean", "cosine")
#: The all-class methods and shots (0: class names alone); settings fixed in advance.
ALL_CLASS_SHOTS = (0, 1, 5, 10)
#: Omniglot's 20 runs use one configuration fixed in advance (SimpleShot's CL2N), not the best
#: of the episodic grid on the same images.
RUNS_CONFIG = {"metric": "sqeuclidean", "normalization": "cl2n"}
NORMALIZATIONS = ("none", "l2", "cl2n")
SHOTS = (1, 5)

#: Published all-class accuracies on BANKING77's full test set: USE+ConveRT with a trained
#: classifier (Casanueva et al. 2020), and CPFT, a whole BERT pre-trained contrastively and
#: fine-tuned (Zhang et al. 2021).
PUBLISHED_BANKING77 = {5: 77.75, 10: 85.19}
PUBLISHED_BANKING77_CPFT = {5: 80.86, 10: 87.20}
#: Prototypical Networks trained on Omniglot's background set, 5-way (Snell et al. 2017).
PUBLISHED_OMNIGLOT_5WAY = {1: 98.8, 5: 99.7}


@dataclass
class DemoResult:
    """Everything the demo measured."""

    episodic: dict[str, GridResult] = field(default_factory=dict)
    all_class: GridResult | None = None
    omniglot_runs: RunsResult | None = None
    plots: list[Path] = field(default_factory=list)
    embedding: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "episodic": {name: grid.to_dict() for name, grid in self.episodic.items()},
            "all_class": None if self.all_class is None else self.all_class.to_dict(),
            "omniglot_runs": None if self.omniglot_runs is None else self.omniglot_runs.to_dict(),
            "published": {
                "banking77_all_class": PUBLISHED_BANKING77,
                "banking77_all_class_cpft": PUBLISHED_BANKING77_CPFT,
                "omniglot_5way": PUBLISHED_OMNIGLOT_5WAY,
            },
            "plots": [str(p) for p in self.plots],
            "embedding": self.embedding,
        }


def run_demo(
    *,
    data_root: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "protoshot-demo",
    episodes: int = 2000,
    seed: int = 0,
    cache: CacheArg = True,
    device: str | None = None,
    download: bool = False,
    datasets: tuple[str, ...] = ("banking77", "omniglot"),
    log: Callable[[str], None] = lambda _msg: None,
) -> DemoResult:
    """Run the demo; tables are returned, plots written to ``out_dir``.

    ``data_root`` holds ``banking77/`` and ``omniglot/`` (default: ``$PROTOSHOT_DATA_DIR``, else
    the download folder in the cache; see :func:`protoshot.data.data_dir`).
    """
    from protoshot.data import data_dir, load_benchmark
    from protoshot.embedders import embed
    from protoshot.evaluation.reports import plot_grid
    from protoshot.pipeline import class_name_embeddings, embed_samples, embedder_for

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    grid_options = dict(
        shots=SHOTS,
        n_query=15,
        n_episodes=episodes,
        seed=seed,
        metrics=METRICS,
        normalizations=NORMALIZATIONS,
        device=device,
    )

    def embedded(name: str, split: str, model: str) -> Any:
        log(f"embedding {name}:{split} with {model}")
        samples = load_benchmark(name, split, root=data_root, download=download)
        table, stats = embed_samples(
            samples, embedder_for(model, device=device, cache=cache), cache=cache
        )
        result.embedding[f"{name}:{split}"] = {
            "model": model,
            "samples": len(table),
            "dim": table.dim,
            "cache_hits": stats.hits,
            "cache_misses": stats.misses,
        }
        return table

    if "banking77" in datasets:
        train = embedded("banking77", "train", TEXT_MODEL)
        test = embedded("banking77", "test", TEXT_MODEL)
        log("evaluating BANKING77")
        grid = evaluate_grid(test.vectors, test.labels, **grid_options)  # type: ignore[arg-type]
        result.episodic["banking77"] = grid
        result.plots.append(
            plot_grid(
                grid,
                out / "banking77.png",
                title=f"BANKING77 test, MiniLM, 5-way, {episodes} episodes",
            )
        )
        text_embedder = embedder_for(TEXT_MODEL, device=device, cache=cache)
        names, _ = class_name_embeddings(list(train.classes), text_embedder, cache=cache)
        log("evaluating BANKING77 all-class, every method")
        result.all_class = all_class_kshot(
            train.vectors, train.labels, test.vectors, test.labels, shots=ALL_CLASS_SHOTS,
            n_seeds=10, seed=seed, methods=METHODS_SIDE_BY_SIDE, normalizations=["cl2n"],
            class_embeddings=names, device=device,
        )  # fmt: skip
    if "omniglot" in datasets:
        images = embedded("omniglot", "evaluation", IMAGE_MODEL)
        log("evaluating Omniglot")
        grid = evaluate_grid(images.vectors, images.labels, n_way=5, **grid_options)  # type: ignore[arg-type]
        result.episodic["omniglot"] = grid
        result.plots.append(
            plot_grid(
                grid,
                out / "omniglot.png",
                title=f"Omniglot evaluation, EfficientNet-Lite0, 5-way, {episodes} episodes",
            )
        )
        runs_zip = data_dir(data_root) / "omniglot" / "one-shot-classification" / "all_runs.zip"
        if runs_zip.exists():
            image_embedder = embedder_for(IMAGE_MODEL, device=device, cache=cache)
            result.omniglot_runs = omniglot_runs(
                runs_zip, lambda paths: embed(paths, image_embedder, cache=cache), **RUNS_CONFIG
            )
    return result
