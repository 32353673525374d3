"""``protoshot evaluate``: mean accuracy ± 95% CI of nearest-prototype classification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from protoshot.cli._common import (
    CacheDirOption,
    DeviceOption,
    JsonOption,
    ModelOption,
    NoCacheOption,
    cache_arg,
    split_ints,
    split_list,
    stderr,
    user_errors,
)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate_command)


def evaluate_command(
    source: Annotated[
        str,
        typer.Argument(
            help="Embedding table (.parquet from `protoshot embed`, .npz), or raw data "
            "(image folder, CSV/JSONL/Parquet, saved HF dataset, banking77[:split], ...) with --model."
        ),
    ],
    model: ModelOption = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="episodic: N-way K-shot episodes; all-class: K shots of every class from SOURCE, "
            "the whole --test split classified, repeated over --episodes seeds."
        ),
    ] = "episodic",
    test: Annotated[
        str | None, typer.Option(help="all-class protocol: the test split (table or source).")
    ] = None,
    ways: Annotated[str, typer.Option(help="Classes per episode, or 'all'.")] = "5",
    shots: Annotated[str, typer.Option(help="Shots per class, comma-separated.")] = "1,5",
    queries: Annotated[int, typer.Option(min=1, help="Query samples per class.")] = 15,
    episodes: Annotated[
        int, typer.Option(min=1, help="Episodes (all-class: seeds) to average over.")
    ] = 600,
    seed: Annotated[int, typer.Option(help="Seed of the episode sampler.")] = 0,
    metrics: Annotated[
        str, typer.Option(help="sqeuclidean, euclidean, cosine, dot; comma-separated.")
    ] = "sqeuclidean,cosine",
    normalizations: Annotated[
        str, typer.Option(help="none, l2, cl2n (centring + L2); comma-separated.")
    ] = "none,l2,cl2n",
    classes: Annotated[
        str | None,
        typer.Option(
            help="Only these classes (novel classes): comma-separated, or @FILE with one per line."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="Evaluate on one part of a seeded class split: base, validation or novel."
        ),
    ] = None,
    split_fractions: Annotated[
        str, typer.Option(help="Fractions of classes in base, validation, novel.")
    ] = "0.6,0.2,0.2",
    split_seed: Annotated[int, typer.Option(help="Seed of the class split.")] = 0,
    center_from: Annotated[
        str | None,
        typer.Option(
            help="Centre cl2n on the mean of this table/source (or 'base' for the split's base "
            "classes) instead of each episode's support mean."
        ),
    ] = None,
    device: DeviceOption = None,
    dtype: Annotated[str, typer.Option(help="float32, or bfloat16 / float16 on GPUs.")] = "float32",
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write accuracy vs shots with CI bands to this PNG.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Items per forward pass when embedding.")
    ] = 32,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Evaluate nearest-prototype classification: every configuration on the same episodes.

    Examples:

      protoshot evaluate table.parquet --ways 5 --shots 1,5 --episodes 2000

      protoshot evaluate banking77:test --model minilm --json

      protoshot evaluate banking77:train --test banking77:test --model minilm --protocol all-class --shots 5,10
    """
    with user_errors():
        report, grid = _evaluate(
            source, model=model, protocol=protocol, test=test, ways=ways, shots=shots,
            queries=queries, episodes=episodes, seed=seed, metrics=metrics,
            normalizations=normalizations, classes=classes, split=split,
            split_fractions=split_fractions, split_seed=split_seed, center_from=center_from,
            device=device, dtype=dtype, plot=plot, batch_size=batch_size,
            cache=cache_arg(no_cache, cache_dir),
        )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        title = f"{source} · {report['model'] or 'embeddings'} · {report['protocol']}"
        from rich.console import Console

        Console().print(grid.table(title=title))
        stderr().print("* best configuration; ± is the half-width of the 95% confidence interval")
    if plot is not None:
        stderr().print(f"plot written to {plot}")


def _evaluate(
    source: str, *, model: str | None, protocol: str, test: str | None, ways: str, shots: str,
    queries: int, episodes: int, seed: int, metrics: str, normalizations: str,
    classes: str | None, split: str | None, split_fractions: str, split_seed: int,
    center_from: str | None, device: str | None, dtype: str, plot: Path | None,
    batch_size: int, cache: Any,
) -> tuple[dict[str, Any], Any]:  # fmt: skip
    from protoshot import METRICS, NORMALIZATIONS, evaluate_grid
    from protoshot.pipeline import load_embeddings
    from protoshot.protocols import all_class_kshot
    from protoshot.reports import plot_grid, report_dict

    metric_list = split_list(metrics, "metric", METRICS)
    norm_list = split_list(normalizations, "normalization", NORMALIZATIONS)
    shot_list = split_ints(shots, "shots")
    if protocol not in ("episodic", "all-class"):
        raise ValueError(f"unknown protocol {protocol!r}; expected one of: episodic, all-class")
    if plot is not None and not plot.parent.is_dir():
        raise ValueError(f"cannot write the plot: folder {plot.parent} does not exist")
    load = dict(cache=cache, batch_size=batch_size, device=device)
    table, _ = load_embeddings(source, model, **load)
    if len(table.classes) < 2:
        raise ValueError(f"{source} has {len(table.classes)} class; evaluation needs at least 2")
    subset, center = _class_subset(
        table, classes, split, split_fractions, split_seed, center_from, model, load
    )
    context = {
        "protocol": protocol,
        "source": source,
        "model": table.model,
        "fingerprint": table.fingerprint,
        "seed": seed,
    }
    if protocol == "all-class":
        if test is None:
            raise ValueError("the all-class protocol needs --test (the split to classify)")
        test_table, _ = load_embeddings(test, model or table.model or None, **load)
        if test_table.fingerprint != table.fingerprint:
            raise ValueError(f"{test} was embedded by another model than {source}")
        grid = all_class_kshot(
            table.vectors, table.labels, test_table.vectors, test_table.labels, shots=shot_list,
            n_seeds=episodes, seed=seed, metrics=metric_list, normalizations=norm_list, center=center,
        )  # fmt: skip
    else:
        n_way: int | str = "all" if ways == "all" else _positive(ways, "ways")
        grid = evaluate_grid(
            table.vectors, table.labels, n_way=n_way, shots=shot_list, n_query=queries,  # type: ignore[arg-type]
            n_episodes=episodes, seed=seed, metrics=metric_list, normalizations=norm_list,
            classes=subset, center=center, device=device, dtype=dtype, progress=episodes >= 2000,
        )  # fmt: skip
    if plot is not None:
        plot_grid(grid, plot)
    return report_dict(grid, **context), grid


def _positive(text: str, name: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a positive integer or 'all', got {text!r}")
    return int(text)


def _class_subset(
    table: Any, classes: str | None, split: str | None, fractions: str, split_seed: int,
    center_from: str | None, model: str | None, load: dict[str, Any],
) -> tuple[list[Any] | None, Any]:  # fmt: skip
    """The classes to evaluate on and the cl2n centre, from the class and centre options."""
    import numpy as np

    from protoshot.episodes import split_classes
    from protoshot.pipeline import load_embeddings

    subset: list[Any] | None = None
    parts = None
    if classes is not None and split is not None:
        raise ValueError("give --classes or --split, not both")
    if classes is not None:
        names = (
            Path(classes[1:]).read_text().splitlines()
            if classes.startswith("@")
            else classes.split(",")
        )
        wanted = [n.strip() for n in names if n.strip()]
        kind = table.labels.dtype.kind
        subset = [int(n) for n in wanted] if kind in "iu" else wanted
    if split is not None:
        if split not in ("base", "validation", "novel"):
            raise ValueError(f"unknown split {split!r}; expected one of: base, validation, novel")
        frac = tuple(float(f) for f in fractions.split(","))
        parts = split_classes(table.classes, frac, seed=split_seed)  # type: ignore[arg-type]
        subset = parts[split].tolist()
    center = None
    if center_from == "base":
        if parts is None:
            raise ValueError("--center-from base needs --split (the base classes come from it)")
        center = table.vectors[np.isin(table.labels, parts["base"])].mean(0)
    elif center_from is not None:
        base, _ = load_embeddings(center_from, model or table.model or None, **load)
        if base.fingerprint != table.fingerprint:
            raise ValueError(
                f"{center_from} was embedded by another model than the evaluated table"
            )
        center = base.vectors.mean(0)
    return subset, center
