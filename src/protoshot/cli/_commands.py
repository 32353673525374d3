"""Registers every command module on the Typer app (import order = order in ``--help``)."""

from __future__ import annotations

from protoshot.cli import adapt, app, demo, embed, evaluate, inspect, model, score, serve, tools

for module in (demo, embed, evaluate, inspect, adapt, model, score, serve, tools):
    module.register(app)
