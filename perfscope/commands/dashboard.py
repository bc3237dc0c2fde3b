"""``perfscope dashboard``: serve the Dash app (on loopback unless told otherwise)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perfscope.cli_app import app


@app.command("dashboard")
def dashboard_command(
    datasets: Annotated[list[Path] | None, typer.Argument(help="Datasets (default: the shipped sample profile).")] = None,
    model: Annotated[Path | None, typer.Option(help="A trained model bundle (perfscope train --out).")] = None,
    host: Annotated[str, typer.Option(help="Interface to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8050,
    check: Annotated[bool, typer.Option(help="Load the data and features every page uses, print a summary, "
                                              "and exit without serving.")] = False,
) -> None:
    """Roofline, waterline and efficiency gap, scaling laws, carbon, tile explorer, estimates."""
    if check:
        from perfscope.dashboards.data import DashboardData

        data = DashboardData.load(datasets or None)
        print(f"dashboard data: {len(data.rows)} rows from {', '.join(data.datasets) or 'no dataset'}")
        for _key, info in sorted(data.devices.items()):
            print(f"  {info.note}")
        for line in [*data.notes, *data.problems]:
            print(f"  note: {line}")
        return
    from perfscope.dashboards import serve

    serve(datasets or None, model, host, port)
