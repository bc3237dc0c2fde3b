"""``perfscope dashboard``: serve the Dash app (on loopback unless told otherwise)."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from perfscope.cli_app import app
from perfscope.cli_render import Renderer
from perfscope.errors import InvalidInputError


@app.command("dashboard")
def dashboard_command(
    datasets: Annotated[list[Path] | None,
                        typer.Argument(help="Datasets (default: the shipped sample profile).")] = None,
    model: Annotated[Path | None, typer.Option(help="A trained model bundle (perfscope train --out).")] = None,
    host: Annotated[str, typer.Option(help="Interface to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8050,
    check: Annotated[bool, typer.Option(help="Load the data and features every page uses, print a summary, "
                                              "and exit without serving.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 2) if any data file had to be skipped.")] = False,
) -> None:
    """Roofline, waterline and efficiency gap, scaling laws, carbon, tile explorer, estimates."""
    _check_port(port)
    missing = [str(d) for d in datasets or [] if not d.exists()]
    if missing:
        raise InvalidInputError(f"no such dataset: {', '.join(missing)}")
    if not check:
        _check_exposure(host, port)
    # loaded when the command runs (see perfscope/commands/__init__.py)
    from perfscope.dashboards.data import DashboardData

    data = DashboardData.load(datasets or None)
    Renderer(quiet=False, as_json=False).skipped_files(data.problems, strict=strict)  # as ls warns
    if check:
        print(f"dashboard data: {len(data.rows)} rows from {', '.join(data.datasets) or 'no dataset'}")
        for _key, info in sorted(data.devices.items()):
            print(f"  {info.note}")
        for line in data.notes:
            print(f"  note: {line}")
        return
    from perfscope.dashboards.app import create_app

    try:
        create_app(model_path=model, data=data).run(host=host, port=port, debug=False)
    except OSError as exc:  # the port was taken between the check and the bind
        raise InvalidInputError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise InvalidInputError(f"--port must be between 1 and 65535, got {port}")


def _check_exposure(host: str, port: int) -> None:
    """Warn when serving beyond this machine; fail in one line when the port is taken."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(f"perfscope: warning: serving on {host}: the dashboard has no authentication; anyone who can reach "
              f"this address can read the data and download it", file=sys.stderr)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInputError(f"--host {host}: cannot resolve it ({exc.strerror or exc})") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise InvalidInputError(f"cannot serve on {host}:{port}: {exc.strerror or exc} "
                                 f"(choose another --port)") from None
