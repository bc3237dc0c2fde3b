"""The Typer application object, shared by the command modules (kept import-light)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Measure, model and explain the performance of GPU kernels.")
