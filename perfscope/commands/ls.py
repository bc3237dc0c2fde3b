"""``perfscope ls``: summarise a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perfscope.cli_app import app
from perfscope.cli_render import Renderer


@app.command("ls")
def ls(
    dataset: Annotated[Path, typer.Argument(help="A perfscope dataset directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Summarise a dataset: rows by device, kernel and dtype."""
    from perfscope.store import ProfileStore  # loaded when the command runs (see perfscope/commands/__init__.py)
    from perfscope.summary import summarise

    store = ProfileStore(dataset)
    result = store.read(["device_key", "kernel", "dtype", "status", "time_median_ms",
                         "achieved_flops_per_s", "energy_method", "noisy", "run_id", "config_id"])
    Renderer(quiet=False, as_json=as_json).dataset_summary(dataset, summarise(result.table), result.problems)
