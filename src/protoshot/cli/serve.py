"""``protoshot serve``: the HTTP service over a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from protoshot.cli._common import (
    AllowDownloadOption,
    CacheDirOption,
    DeviceOption,
    NoCacheOption,
    cache_arg,
    plain,
    stderr,
    user_errors,
)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""
    app.command("serve")(serve_command)


def serve_command(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by `protoshot fit`.")],
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    max_batch: Annotated[
        int, typer.Option(min=1, help="Most items per request (more: 422).")
    ] = 256,
    max_body_mb: Annotated[
        float, typer.Option(min=0.01, help="Largest request body, in MiB (larger: 413).")
    ] = 32.0,
    max_request_chars: Annotated[
        int, typer.Option(min=1, help="Characters of text one request may hold in all (more: 413).")
    ] = 1_000_000,
    max_request_megapixels: Annotated[
        float,
        typer.Option(
            min=0.01, help="Decoded pixels one request may hold in all, in millions (more: 413)."
        ),
    ] = 100.0,
    max_in_flight: Annotated[
        int,
        typer.Option(
            min=1,
            help="Requests in progress at once; beyond, requests answer 503 with Retry-After "
            "at once (load shedding).",
        ),
    ] = 32,
    max_waiting: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Items that may wait to be embedded; beyond, requests answer 503 with "
            "Retry-After (default: 4 x --max-batch).",
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            help="Require this key for updates (repeatable; also $PROTOSHOT_API_KEYS, "
            "comma-separated); send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.",
        ),
    ] = None,
    protect_all: Annotated[
        bool,
        typer.Option("--protect-all", help="Require a key for predictions too (not the probes)."),
    ] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="An origin browsers may call the API from (repeatable; none by default)."
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="No access log (one line per request by default).")
    ] = False,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Predictions only: updates answer 403 (automatic when MODEL_DIR is not writable).",
        ),
    ] = False,
    index: Annotated[
        str | None,
        typer.Option(
            help="Answer through a prototype index for very many classes (needs protoshot[faiss]): "
            "flat (exact), ivf (approximate, fast), or auto (ivf from 20,000 classes). "
            "Probabilities are then over the retrieved candidates. Prototypes models only.",
        ),
    ] = None,
    device: DeviceOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    allow_download: AllowDownloadOption = False,
) -> None:
    """Serve MODEL_DIR over HTTP: predictions, updates, a web console (/) and API docs (/docs).

    Each update is appended to MODEL_DIR's journal and flushed to disk before it is acknowledged.
    """
    with user_errors():
        import os

        import uvicorn

        from protoshot.service import Budget, create_app

        budget = Budget(chars=max_request_chars, pixels=int(max_request_megapixels * 1e6))
        keys = [
            *(api_key or []),
            *filter(None, os.environ.get("PROTOSHOT_API_KEYS", "").split(",")),
        ]
        if protect_all and not keys:
            raise ValueError("--protect-all needs an API key (--api-key or $PROTOSHOT_API_KEYS)")
        app = create_app(
            model_dir,
            device=device,
            cache=cache_arg(no_cache, cache_dir),
            max_batch=max_batch,
            max_body_bytes=int(max_body_mb * 2**20),
            budget=budget,
            max_waiting=max_waiting,
            read_only=read_only,
            allow_download=allow_download,
            max_in_flight=max_in_flight,
            api_keys=keys,
            protect_all=protect_all,
            cors_origins=cors_origin or (),
            index=index,
        )
    if app.state.read_only:
        why = "--read-only" if read_only else f"{plain(model_dir)} is not writable"
        stderr().print(f"read-only ({why}): predictions only, updates answer 403")
    stderr().print(f"serving {plain(model_dir)} on http://{host}:{port} (console: /, docs: /docs)")
    if keys:
        scope = "every route but the probes" if protect_all else "updates"
        stderr().print(f"{len(keys)} API keys: {scope} need one")
    uvicorn.run(
        app, host=host, port=port, log_level="warning" if quiet else "info", access_log=not quiet
    )
