"""The Typer application object, shared by the command modules (kept import-light)."""

from __future__ import annotations

from typing import Annotated

import typer

from perfscope.cli_logging import configure_logging

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Measure, model and explain the performance of GPU kernels.")


@app.callback()
def global_options(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="Log what perfscope does (-v steps, -vv every configuration).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Log errors only.")] = False,
) -> None:
    """Measure, model and explain the performance of GPU kernels."""
    configure_logging(verbose, quiet)
