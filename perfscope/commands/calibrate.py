"""``perfscope calibrate``: measure this device's achieved peaks, bandwidth and launch floor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perfscope import strict_json
from perfscope.cli_app import app
from perfscope.devices.registry import check_dataset_for_profile, save_dataset_profile, save_profile
from perfscope.errors import InvalidInputError


@app.command("calibrate")
def calibrate_command(
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[list[str] | None,
                     typer.Option(help="Precisions to measure (default: all the device runs).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Profile file (default: the profile cache).")] = None,
    dataset: Annotated[Path | None, typer.Option(
        help="Also store the profile with this dataset (<dataset>/_devices/): its ceilings are then drawn "
             "from this machine's calibration for whoever views it.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (match the sweeps you model).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the profile as JSON.")] = False,
) -> None:
    """Measure achieved peak FLOP/s per dtype (large GEMM), bandwidth (large copy) and launch
    overhead (tiny kernel); models and estimates prefer this profile to the spec sheet."""
    from rich.console import Console  # ~80 ms; loaded only when something is drawn

    if dataset is not None:
        check_dataset_for_profile(dataset)  # before measuring: a wrong path wastes no calibration
    from perfscope.collectors.calibrate import calibrate

    err = Console(stderr=True)
    if threads is not None:
        if threads < 1:
            raise InvalidInputError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    dtypes = [d.strip() for value in dtype or [] for d in value.split(",") if d.strip()] or None
    profile = calibrate(device, dtypes=dtypes, notify=None if quiet or as_json else err.print)
    path = save_profile(profile, out)
    stored = save_dataset_profile(profile, dataset) if dataset is not None else None
    if as_json:
        print(strict_json.dumps({"profile": str(path), **({"dataset_profile": str(stored)} if stored else {}),
                                 **profile.to_json_dict()}))
        return
    for item in profile.summary():
        what = item["quantity"] + (f" {item['dtype']}" if item["dtype"] else "")
        if item["status"] != "ok":
            print(f"{what:28s} {item['status']}: {item['reason']}")
            continue
        value = item["value"]
        shown = (f"{value / 1e9:10.2f} GFLOP/s" if item["quantity"] == "peak_flops_per_s" else
                 f"{value / 1e9:10.2f} GB/s" if "bandwidth" in item["quantity"] else f"{value * 1e6:10.2f} us")
        print(f"{what:28s} {shown}   ({item['method']})")
    print(f"profile saved to {path}" + (f" and with the dataset: {stored}" if stored else ""))
