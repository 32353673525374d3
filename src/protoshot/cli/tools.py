"""``protoshot models / info / cache``: what is installed, what a model folder holds, what the
embedding cache keeps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from protoshot.cli._common import CacheDirOption, JsonOption, plain, stderr, user_errors


def register(app: typer.Typer) -> None:
    """Add ``models``, ``info`` and ``cache`` to ``app``."""
    app.command("models")(models_command)
    app.command("info")(info_command)
    app.command("cache")(cache_command)


def models_command(as_json: JsonOption = False) -> None:
    """List the embedders (the --model specs), and the pip extra each still needs here."""
    from protoshot.embedders import describe_embedders

    rows = describe_embedders()
    if as_json:
        typer.echo(json.dumps([_model_dict(r) for r in rows]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="embedders (--model)")
    table.add_column("spec")
    table.add_column("what")
    table.add_column("installed")
    for row in rows:
        need = " ".join(f"pip install 'protoshot[{extra}]'" for extra in row.missing_extras)
        table.add_row(plain(row.spec), plain(row.about.replace("``", "")), plain(need) or "yes")
    Console().print(table)


def _model_dict(row: Any) -> dict[str, Any]:
    return {"spec": row.spec, "about": row.about, "missing_extras": list(row.missing_extras)}


def info_command(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by `protoshot fit`.")],
    as_json: JsonOption = False,
) -> None:
    """Show what MODEL_DIR holds: classes and shots, method, embedder, threshold, format.

    Reads the folder only: no embedder is loaded.
    """
    with user_errors():
        info = _folder_info(model_dir)
    if as_json:
        typer.echo(json.dumps(info))
        return
    from rich.console import Console

    out = Console(highlight=False)
    embedder = info["embedder"] or {}
    rejection = info["rejection"]
    lines = [
        f"{info['folder']}: format {info['format_version']}, {info['bytes'] / 1e6:.2f} MB",
        f"method {info['method']}, {len(info['classes'])} classes, {info['shots']} shots",
        f"embedder {embedder.get('spec', '?')} ({embedder.get('modality', '?')}, dim "
        f"{embedder.get('dim', '?')}, fingerprint {str(embedder.get('fingerprint', '?'))[:12]})",
        "rejection: none (every input gets a class)"
        if rejection is None
        else f"rejection below similarity {rejection['threshold']:.4f}: {rejection['rule']}",
    ]
    for line in lines:
        out.print(plain(line))
    counts = ", ".join(f"{c['label']} ({c['shots']})" for c in info["classes"])
    out.print(plain(f"classes (shots): {counts}"))
    latest = max((c["updated"] for c in info["classes"] if c["updated"]), default=None)
    out.print(plain(f"last updated: {latest or 'not recorded'}"))
    out.print(
        plain(
            f"journal: {info['journal_bytes'] / 1e3:.1f} kB of updates since the snapshot "
            "(`protoshot compact` folds them in)"
        )
    )


def _utc(seconds: float) -> str | None:
    """Unix seconds as an ISO 8601 UTC time (``None`` for 0: not recorded)."""
    from datetime import datetime, timezone

    if seconds <= 0:
        return None
    return datetime.fromtimestamp(float(seconds), timezone.utc).isoformat(timespec="seconds")


def _folder_info(folder: Path) -> dict[str, Any]:
    """What :func:`info_command` shows, as JSON-ready data."""
    from protoshot.estimators import load_estimator
    from protoshot.store import is_model_folder
    from protoshot.store.journal import BEGIN_BYTES

    if not is_model_folder(folder):
        raise ValueError(f"{folder} is not a model folder (no config.json)")
    version = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("format_version")
    model = load_estimator(folder)
    chosen = getattr(model, "chosen_", None)
    rejection = model.metadata_.get("rejection")
    counts = model.shot_counts_.tolist()
    return {
        "folder": str(folder),
        "format_version": version,
        "bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
        "journal_bytes": model._position.length - BEGIN_BYTES if model._position else 0,
        "method": model.method + (f": {chosen}" if chosen else ""),
        "shots": int(sum(counts)),
        "classes": [
            {"label": label, "shots": int(n), "named": bool(named), "updated": _utc(updated)}
            for label, n, named, updated in zip(
                model.classes_.tolist(), counts, model.named_, model.updated_, strict=True
            )
        ],
        "embedder": model.metadata_.get("embedder"),
        "rejection": None
        if not rejection or "rule" not in rejection
        else {k: rejection[k] for k in ("threshold", "rule")},
    }


def cache_command(
    clear: Annotated[
        str | None,
        typer.Option(
            help="Delete one model's vectors: its spec (minilm) or a fingerprint prefix "
            "(8+ characters), as listed."
        ),
    ] = None,
    cache_dir: CacheDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the embedding cache: its size and the vectors kept per model; --clear one model."""
    with user_errors():
        from protoshot.cache import EmbeddingCache

        with EmbeddingCache(cache_dir) as cache:
            deleted = cache.clear(clear) if clear is not None else None
            usage, size, path = cache.report(), cache.size_bytes(), str(cache.path)
    if as_json:
        from dataclasses import asdict

        rows = [asdict(u) for u in usage]
        typer.echo(json.dumps({"path": path, "bytes": size, "models": rows, "deleted": deleted}))
        return
    from rich.console import Console
    from rich.table import Table

    if deleted is not None:
        stderr().print(plain(f"deleted {deleted} vectors of {clear}"))
    table = Table(title=plain(f"{path}: {size / 1e6:.1f} MB on disk"))
    for name in ("spec", "fingerprint", "dim", "vectors", "MB"):
        table.add_column(name, justify="left" if name in ("spec", "fingerprint") else "right")
    for u in usage:
        table.add_row(
            plain(u.spec), u.fingerprint[:12], str(u.dim), str(u.entries), f"{u.bytes / 1e6:.1f}"
        )
    Console().print(table)
