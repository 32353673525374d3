"""``protoshot embed``: samples from a source -> embeddings (cached) -> a Parquet table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from protoshot._validation import check_choice
from protoshot.cli._common import (
    BatchSizeOption,
    CacheDirOption,
    DelimiterOption,
    DeviceOption,
    DownloadOption,
    JsonOption,
    LabelColumnOption,
    NoCacheOption,
    RequiredModelOption,
    SourceArgument,
    TextColumnOption,
    cache_arg,
    plain,
    stderr,
    user_errors,
)


def register(app: typer.Typer) -> None:
    """Add the ``embed`` command to ``app``."""
    app.command("embed")(embed_command)


def embed_command(
    source: SourceArgument,
    model: RequiredModelOption,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Parquet table to write (with --engine ray: a folder of Parquet shards).",
        ),
    ],
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    delimiter: DelimiterOption = None,
    batch_size: BatchSizeOption = 32,
    device: DeviceOption = None,
    no_cache: NoCacheOption = False,
    cache_dir: CacheDirOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists.")] = False,
    download: DownloadOption = False,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process) or ray (an actor pool on a Ray cluster, needs "
            "protoshot[ray]; re-running skips the rows OUTPUT already holds)."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join (host:port, ray://host:port or auto); "
            "default a local Ray on this machine."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray actors, one model each.")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Embed SOURCE with a frozen model and write a Parquet table of vectors and labels."""
    with user_errors():
        check_choice("engine", engine, ("local", "ray"))
        common: dict[str, Any] = {
            "model": model, "output": output, "text_column": text_column,
            "label_column": label_column, "delimiter": delimiter, "batch_size": batch_size,
            "download": download, "cache": cache_arg(no_cache, cache_dir),
        }  # fmt: skip
        if engine == "ray":
            summary = _run_on_ray(source, address=address, workers=workers, **common)
        else:
            summary = _run(source, device=device, force=force, **common)
    if as_json:
        typer.echo(json.dumps(summary))
    elif engine == "ray":
        stderr().print(
            f"{summary['embedded']} rows embedded on Ray ({workers} actors), "
            f"{summary['already_done']} already in {plain(summary['output'])}: "
            f"{summary['samples']} samples, {summary['seconds']:.1f} s"
        )
    else:
        stderr().print(
            f"{summary['samples']} samples, {summary['classes']} classes, dim {summary['dim']} "
            f"with {summary['model']}: cache {summary['cache_hits']} hits / "
            f"{summary['cache_misses']} misses, {summary['seconds']:.1f} s -> "
            f"{plain(summary['output'])}"
        )


def _run_on_ray(
    source: str, *, model: str, output: Path, text_column: str | None,
    label_column: str | None, delimiter: str | None, batch_size: int, download: bool,
    address: str | None, workers: int, cache: Path | bool | None,
) -> dict[str, Any]:  # fmt: skip
    """List the items here, embed them on Ray into OUTPUT's shards; returns the summary."""
    from protoshot.data import EmbeddingTable, load_source
    from protoshot.distributed import embed_source

    start = time.perf_counter()
    if output.is_file():
        raise FileExistsError(f"{output} is a file; --engine ray writes a folder of shards")
    samples = load_source(
        source, text_column=text_column, label_column=label_column, download=download,
        delimiter=delimiter,
    )  # fmt: skip
    embedded, done = embed_source(
        samples.items, samples.labels, model, output, address=address, workers=workers,
        batch_size=batch_size, cache=cache,
    )  # fmt: skip
    table = EmbeddingTable.load(output)
    return {
        "output": str(output),
        "samples": len(table),
        "embedded": embedded,
        "already_done": done,
        "dim": table.dim,
        "classes": len(table.classes),
        "model": table.model,
        "fingerprint": table.fingerprint,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _run(
    source: str,
    *,
    model: str,
    output: Path,
    text_column: str | None,
    label_column: str | None,
    delimiter: str | None,
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
        source, text_column=text_column, label_column=label_column, download=download,
        delimiter=delimiter,
    )  # fmt: skip
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
