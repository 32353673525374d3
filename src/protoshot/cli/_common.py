"""What every command shares: one-line errors on stderr, list options, the consoles."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

# options several commands share
CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Embedding cache folder (default: $PROTOSHOT_CACHE_DIR or ~/.cache/protoshot)."
    ),
]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Embed without the cache.")]
DeviceOption = Annotated[
    str | None, typer.Option(help="cuda, mps or cpu (default: the best available).")
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Embedder spec (minilm, efficientnet-lite0, st:..., hf:...)."
    ),
]


def stderr() -> Any:
    """A rich console on stderr: progress, tables and messages never mix with --json output."""
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into a one-line message and a non-zero exit (no traceback).

    Set ``PROTOSHOT_DEBUG=1`` to see the traceback instead.
    """
    try:
        yield
    except KeyboardInterrupt:
        stderr().print("interrupted: what was embedded so far is kept in the cache")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (ValueError, TypeError, ImportError, OSError, RuntimeError, KeyError) as exc:
        if os.environ.get("PROTOSHOT_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        stderr().print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None


def cache_arg(no_cache: bool, cache_dir: Path | None) -> Path | bool | None:
    """The ``cache`` argument of the library from the two cache options."""
    return None if no_cache else (cache_dir or True)


def split_list(text: str, name: str, allowed: Sequence[str] | None = None) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``, checking names against ``allowed``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{name} is empty")
    for item in items:
        if allowed is not None and item not in allowed:
            raise ValueError(f"unknown {name} {item!r}; expected one of: {', '.join(allowed)}")
    return items


def split_ints(text: str, name: str) -> list[int]:
    """``"1,5,10"`` -> ``[1, 5, 10]``, each a positive integer."""
    out = []
    for item in split_list(text, name):
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"{name} must be positive integers separated by commas, got {item!r}")
        out.append(int(item))
    return out
