"""What every command shares: one-line errors on stderr, list options, the consoles."""

from __future__ import annotations

import os
import warnings
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
TextColumnOption = Annotated[str | None, typer.Option(help="Text column (default: detected).")]
LabelColumnOption = Annotated[str | None, typer.Option(help="Label column (default: detected).")]
EmbeddingColumnOption = Annotated[
    str | None,
    typer.Option(
        help="Embedding tables: the Parquet column or .npz array of vectors (default: "
        "'embedding', or detected in .npz)."
    ),
]
LabelsOption = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        help="Labels of an .npy of vectors: an .npy, or a text file with one label per line.",
    ),
]
DelimiterOption = Annotated[
    str | None,
    typer.Option(help="CSV delimiter: one character or 'tab' (default: detected from the header)."),
]
BatchSizeOption = Annotated[int, typer.Option(min=1, help="Items per forward pass.")]
AllowDownloadOption = Annotated[
    bool,
    typer.Option(
        "--allow-download",
        help="Let the model folder's embedder be fetched from a model hub (a folder never "
        "makes protoshot download anything by itself).",
    ),
]
DownloadOption = Annotated[
    bool, typer.Option("--download", help="Fetch a missing benchmark from its public source.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
SourceArgument = Annotated[
    str,
    typer.Argument(
        help="Labelled data: image folder (a sub-folder per class), CSV/TSV/JSONL/Parquet file, "
        "saved HF dataset, or a benchmark (banking77, snips, omniglot), optionally ':split'; "
        "for fit also an embedding table of the same model (`protoshot embed` output)."
    ),
]
RequiredModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Embedder spec (minilm, efficientnet-lite0, st:..., hf:...)."
    ),
]
AdapterOption = Annotated[
    Path | None,
    typer.Option(
        help="An adapter folder from `protoshot adapt`: --model's vectors, then the adapter "
        "(the same as --model adapter:FOLDER; --model may be left out)."
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Embedder spec (minilm, efficientnet-lite0, st:..., hf:...)."
    ),
]


def stderr() -> Any:
    """A rich console on stderr: messages never mix with --json output, and never wrap."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Library warnings as one ``warning:`` line each; errors as one ``error:`` line and exit 1.

    No traceback: set ``PROTOSHOT_DEBUG=1`` to see it instead.
    """
    err = stderr()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *_: err.print(
                f"[yellow]warning:[/] {plain(message)}"
            )
            yield
    except KeyboardInterrupt:
        err.print("interrupted: what was embedded so far is kept in the cache")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (ValueError, TypeError, ImportError, OSError, RuntimeError, KeyError) as exc:
        if os.environ.get("PROTOSHOT_DEBUG"):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err.print(f"[red]error:[/] {plain(message)}")
        raise typer.Exit(EXIT_ERROR) from None


def _same_vectors(model: str) -> set[str]:
    """Specs that give ``model``'s vectors or its lower part's (runtime options, which never
    change a vector, left out)."""
    from protoshot.embedders import lower_part
    from protoshot.embedders._registry import format_spec, parse_spec

    key, rest, options = parse_spec(model)
    for runtime_only in ("runtime", "batch_size", "device", "onnx_dir"):
        options.pop(runtime_only, None)
    plain = format_spec(f"{key}:{rest}" if rest else key, **options)
    try:
        return {model, plain, lower_part(plain)}
    except ValueError:
        return {model, plain}


def with_adapter(model: str | None, adapter: Path | None) -> str | None:
    """The embedder spec for ``--model`` and ``--adapter``: ``adapter:FOLDER`` over its base.

    Raises
    ------
    ValueError
        If ``--model`` is not the model the adapter was trained over.
    """
    if adapter is None:
        return model
    from protoshot.embedders._registry import adapter_base_spec

    base = adapter_base_spec(str(adapter))
    if not base:
        raise ValueError(f"{adapter} is not a readable adapter folder (no adapter.json)")
    if model and base not in _same_vectors(model):
        raise ValueError(f"{adapter} was trained over {base!r}, not --model {model!r}")
    return f"adapter:{Path(adapter).expanduser().resolve()}"


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


def plain(value: object) -> str:
    """User text (inputs, labels, paths, messages quoting them) safe to print with rich: its
    square brackets are shown, never read as markup."""
    from rich.markup import escape

    return escape(str(value))


def split_ints(text: str, name: str, *, smallest: int = 1) -> list[int]:
    """``"1,5,10"`` -> ``[1, 5, 10]``, each an integer of at least ``smallest``."""
    out = []
    kind = "positive integers" if smallest == 1 else f"integers >= {smallest}"
    for item in split_list(text, name):
        if not item.isdigit() or int(item) < smallest:
            raise ValueError(f"{name} must be {kind} separated by commas, got {item!r}")
        out.append(int(item))
    return out
