"""The ``protoshot`` command line: a thin layer that parses, calls the library and formats.

Each command lives in its own module and imports the heavy parts of the library only when it
runs, so ``protoshot --help`` answers fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="protoshot",
    help="Few-shot classification with prototypes over frozen foundation-model embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Entry point of the console script."""
    from protoshot.cli import _commands  # noqa: F401  (registers the commands on ``app``)

    app()
