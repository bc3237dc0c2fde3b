"""``perfscope doctor``: can this machine collect, and with what?"""

from __future__ import annotations

from typing import Annotated

import typer

from perfscope import strict_json
from perfscope.cli_app import app
from perfscope.doctor import run_doctor


@app.command("doctor")
def doctor_command(
    device: Annotated[str, typer.Option(help="The --device collect would be given.")] = "auto",
    energy: Annotated[str, typer.Option(help="The --energy collect would be given.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check torch, CUDA, GPUs, NVML, RAPL, Triton, clocks and power limits; exit 1 when collecting cannot proceed."""
    report = run_doctor(device, energy)
    if as_json:
        print(strict_json.dumps(report.to_dict()))
    else:
        print("\n".join(report.lines()))
    if not report.can_collect:
        raise typer.Exit(1)
