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
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from protoshot import __version__

        typer.echo(f"protoshot {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Few-shot classification with prototypes over frozen foundation-model embeddings."""


def main() -> None:
    """Entry point of the console script."""
    from protoshot.cli import _commands  # noqa: F401  (registers the commands on ``app``)

    app()
