"""Registers every command module on the Typer app (import order = order in ``--help``)."""

from __future__ import annotations
