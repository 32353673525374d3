"""``protoshot embed``: samples from a source -> embeddings (cached) -> a Parquet table."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

_EXIT_ERROR = 1
_EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    """Add the ``embed`` command to ``app``."""
    app.command("embed")(embed_command)


def embed_command(
    source: Annotated[
        str,
        typer.Argument(
            help="Image folder, .csv/.tsv/.jsonl/.parquet file, saved HF dataset, or a "
            "benchmark (banking77, snips, omniglot), optionally ':split'."
        ),
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Embedder spec, e.g. minilm, efficientnet-lite0.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet table to write.")],
    text_column: Annotated[
        str | None, typer.Option(help="Text column (default: detected).")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="Label column (default: detected).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Items per forward pass.")] = 32,
    device: Annotated[
        str | None, typer.Option(help="cuda, mps or cpu (default: the best available).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the cache.")] = False,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Cache folder (default: $PROTOSHOT_CACHE_DIR or ~/.cache/protoshot)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists.")] = False,
    download: Annotated[
        bool, typer.Option("--download", help="Fetch a missing benchmark from its source.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Embed SOURCE with a frozen model and write a Parquet table of vectors and labels."""
    from rich.console import Console

    err = Console(stderr=True, soft_wrap=True)  # messages stay on one line
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *_: err.print(f"[yellow]warning:[/] {message}")
        try:
            summary = _run(
                source,
                model=model,
                output=output,
                text_column=text_column,
                label_column=label_column,
                batch_size=batch_size,
                device=device,
                cache=None if no_cache else (cache_dir or True),
                force=force,
                download=download,
            )
        except KeyboardInterrupt:
            err.print("interrupted: the batches embedded so far are kept in the cache")
            raise typer.Exit(_EXIT_INTERRUPTED) from None
        except (ValueError, TypeError, ImportError, OSError, RuntimeError) as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(_EXIT_ERROR) from None
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        err.print(
            f"{summary['samples']} samples, {summary['classes']} classes, dim {summary['dim']} "
            f"with {summary['model']}: cache {summary['cache_hits']} hits / "
            f"{summary['cache_misses']} misses, {summary['seconds']:.1f} s -> {summary['output']}",
            highlight=False,
        )


def _run(
    source: str,
    *,
    model: str,
    output: Path,
    text_column: str | None,
    label_column: str | None,
    batch_size: int,
    device: str | None,
    cache: Path | bool | None,
    force: bool,
    download: bool,
) -> dict[str, Any]:
    """Load, embed, save; returns the summary."""
    from protoshot.data import load_source
    from protoshot.pipeline import embed_samples, embedder_for

    start = time.perf_counter()
    if output.exists() and not force:
        raise FileExistsError(f"{output} exists; pass --force to replace it")
    samples = load_source(
        source, text_column=text_column, label_column=label_column, download=download
    )
    embedder = embedder_for(model, device=device, cache=cache)
    table, stats = embed_samples(samples, embedder, cache=cache, batch_size=batch_size)
    table.save(output, overwrite=force)
    return {
        "output": str(output),
        "samples": len(table),
        "dim": table.dim,
        "classes": len(table.classes),
        "model": embedder.spec,
        "fingerprint": embedder.fingerprint,
        "cache_hits": stats.hits,
        "cache_misses": stats.misses,
        "skipped": len(samples.skipped),
        "seconds": round(time.perf_counter() - start, 3),
    }
