"""``protoshot demo``: the main job on the bundled models and the benchmark data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from protoshot.cli._common import (
    CacheDirOption,
    DeviceOption,
    DownloadOption,
    JsonOption,
    NoCacheOption,
    cache_arg,
    stderr,
    user_errors,
)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo_command)


def demo_command(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder holding banking77/ and omniglot/ (default: $PROTOSHOT_DATA_DIR, else the download folder in the cache)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the plots and results.json.")] = Path(
        "protoshot-demo"
    ),
    episodes: Annotated[int, typer.Option(min=1, help="5-way episodes per configuration.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the episodes.")] = 0,
    only: Annotated[str | None, typer.Option(help="Run one part: banking77 or omniglot.")] = None,
    download: DownloadOption = False,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    as_json: JsonOption = False,
) -> None:
    """Few-shot accuracy of the bundled MiniLM (BANKING77) and EfficientNet-Lite0 (Omniglot).

    Compares squared Euclidean vs cosine and none / L2 / centring + L2 at 1 and 5 shots on the
    same 5-way episodes, every method on BANKING77's all-class protocol (class names as a prior,
    a fitted head, auto), and Omniglot's 20 runs. Embeddings are cached: the second run takes
    seconds.
    """
    from rich.console import Console

    from protoshot.demo import (
        PUBLISHED_BANKING77,
        PUBLISHED_BANKING77_CPFT,
        PUBLISHED_OMNIGLOT_5WAY,
        run_demo,
    )

    err = stderr()
    start = time.perf_counter()
    with user_errors():
        datasets = ("banking77", "omniglot") if only is None else (only,)
        if only not in (None, "banking77", "omniglot"):
            raise ValueError(f"unknown part {only!r}; expected banking77 or omniglot")
        result = run_demo(
            data_root=data, out_dir=out, episodes=episodes, seed=seed, device=device, download=download,
            cache=cache_arg(no_cache, cache_dir), datasets=datasets, log=lambda m: err.print(f"[dim]{m}[/]"),
        )  # fmt: skip
        (out / "results.json").write_text(json.dumps(result.to_dict(), indent=2))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    console = Console()
    titles = {
        "banking77": "BANKING77 test · MiniLM (bundled) · 5-way",
        "omniglot": "Omniglot evaluation · EfficientNet-Lite0 (bundled) · 5-way",
    }
    for name, grid in result.episodic.items():
        console.print(grid.table(title=titles[name]))
    if result.all_class is not None:
        console.print(
            result.all_class.table(
                title="BANKING77 all-class K-shot, every method (77-way, full test set, 10 seeds)"
            )
        )
        refs = ", ".join(f"{k}-shot {v}%" for k, v in PUBLISHED_BANKING77.items())
        cpft = ", ".join(f"{k}-shot {v}%" for k, v in PUBLISHED_BANKING77_CPFT.items())
        console.print(
            f"published: USE+ConveRT + trained classifier (Casanueva et al. 2020) {refs}; "
            f"CPFT, a fine-tuned BERT (Zhang et al. 2021) {cpft}"
        )
    if result.omniglot_runs is not None:
        console.print(
            f"{result.omniglot_runs} (Lake et al. 2015 report 4.5% for humans, 4.8% for BPL)"
        )
        refs = ", ".join(f"{k}-shot {v}%" for k, v in PUBLISHED_OMNIGLOT_5WAY.items())
        console.print(
            f"published 5-way Omniglot, ProtoNet trained on the background set (Snell et al. 2017): {refs}"
        )
    hits = sum(e["cache_hits"] for e in result.embedding.values())
    total = sum(e["samples"] for e in result.embedding.values())
    err.print(
        f"{total} samples embedded ({hits} from the cache) in {time.perf_counter() - start:.1f} s; "
        f"plots: {', '.join(str(p) for p in result.plots)}; results: {out / 'results.json'}"
    )
