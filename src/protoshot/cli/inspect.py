"""``protoshot inspect``: the geometry of an embedding space, per normalisation."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated

import typer

from protoshot.cli._common import (
    CacheDirOption,
    DelimiterOption,
    DeviceOption,
    EmbeddingColumnOption,
    JsonOption,
    LabelColumnOption,
    LabelsOption,
    ModelOption,
    NoCacheOption,
    TextColumnOption,
    cache_arg,
    plain,
    split_list,
    stderr,
    user_errors,
)


def register(app: typer.Typer) -> None:
    """Add the ``inspect`` command to ``app``."""
    app.command("inspect")(inspect_command)


def inspect_command(
    source: Annotated[
        str,
        typer.Argument(help="Embedding table (.parquet, .npz), or raw labelled data with --model."),
    ],
    model: ModelOption = None,
    normalizations: Annotated[
        str, typer.Option(help="none, l2, cl2n; comma-separated.")
    ] = "none,l2,cl2n",
    k: Annotated[int, typer.Option(min=1, help="Neighbours for the hubness measure.")] = 10,
    max_samples: Annotated[
        int, typer.Option(min=2, help="Seeded sample for the neighbour measures and the plot.")
    ] = 5000,
    plot: Annotated[
        Path | None, typer.Option(help="Write the PCA projection and the measures to this PNG.")
    ] = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    embedding_column: EmbeddingColumnOption = None,
    labels: LabelsOption = None,
    delimiter: DelimiterOption = None,
    as_json: JsonOption = False,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Measure hubness, anisotropy, class separation and prototype norms per normalisation.

    They explain the accuracy differences `protoshot evaluate` shows: e.g. CL2N removes the
    common direction (mean cosine -> 0) that makes raw embeddings hubby.

    Example: protoshot inspect banking77:test --model minilm --plot geometry.png
    """
    with user_errors():
        from protoshot import NORMALIZATIONS
        from protoshot.geometry import inspect_geometry
        from protoshot.pipeline import load_embeddings

        load = functools.partial(
            load_embeddings, cache=cache_arg(no_cache, cache_dir), device=device,
            text_column=text_column, label_column=label_column,
            embedding_column=embedding_column, labels=labels, delimiter=delimiter,
        )  # fmt: skip
        table, _ = load(source, model)
        report = inspect_geometry(
            table.vectors, table.labels, k=k, max_samples=max_samples,
            normalizations=split_list(normalizations, "normalization", NORMALIZATIONS),
        )  # fmt: skip
        if plot is not None:
            report.plot(plot, title=f"{source} · {table.model or 'embeddings'}")
    if as_json:
        typer.echo(
            json.dumps({"source": source, "model": table.model, **report.to_dict()}, indent=2)
        )
    else:
        from rich.console import Console

        Console().print(report.table(title=plain(f"{source} · {table.model or 'embeddings'}")))
    if plot is not None:
        stderr().print(f"plot written to {plain(plot)}")
