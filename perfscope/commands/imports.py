"""``perfscope import``: measurements made elsewhere, into a dataset, saying where from."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from perfscope import strict_json
from perfscope.cli_app import app
from perfscope.devices.declared import BANDWIDTH_COLUMN, PEAK_COLUMN
from perfscope.devices.registry import resolve_row_device
from perfscope.errors import InvalidInputError

import_app = typer.Typer(no_args_is_help=True, help="Import measurements made elsewhere into a dataset.")
app.add_typer(import_app, name="import")

Out = Annotated[Path, typer.Option("--out", "-o", help="Dataset directory (created or added to).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
PeakFlops = Annotated[str | None, typer.Option(
    help="Peak FLOP/s of the device for the imported dtype (and fp32 math), e.g. 19.5e12 or 19.5T; used "
         "only when the device has no calibrated profile and no spec row.")]
Bandwidth = Annotated[str | None, typer.Option(
    help="Memory bandwidth of the device in bytes/s, e.g. 1.5e12 or 1.5T; used like --peak-flops.")]


@import_app.command("gpperf")
def import_gpperf_command(
    path: Annotated[Path, typer.Argument(help="GPPerf's folder, or cutlass_results.csv / tiled_*.csv.")],
    out: Out = Path("profiles"),
    gpu_name: Annotated[str | None, typer.Option(help="GPU of the tiled files (default: cutlass_results').")] = None,
    peak_flops: PeakFlops = None,
    bandwidth: Bandwidth = None,
    as_json: AsJson = False,
) -> None:
    """Import the GPPerf study's CUTLASS and tiled-SGEMM CSVs (power flagged doubtful)."""
    from perfscope.importers import import_gpperf  # loaded when the command runs (see perfscope/commands/__init__.py)

    _write(import_gpperf(path, gpu_name=gpu_name, peak_flops=peak_flops, bandwidth=bandwidth), out, as_json, path)


@import_app.command("kernel-tuner")
def import_kernel_tuner_command(
    path: Annotated[Path, typer.Argument(help="A Kernel Tuner cache (.json or .json.gz) or T4 results file.")],
    out: Out = Path("profiles"),
    kernel: Annotated[str | None, typer.Option(
        help="Kernel family (default: gemm when the kernel's name says gemm/matmul, else the kernel's name).")] = None,
    m: Annotated[int | None, typer.Option(help="GEMM m (default: from the file's problem_size).")] = None,
    n: Annotated[int | None, typer.Option(help="GEMM n.")] = None,
    k: Annotated[int | None, typer.Option(help="GEMM k.")] = None,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 1,
    dtype: Annotated[str, typer.Option(help="Precision of the tuned kernel.")] = "fp32",
    device_name: Annotated[str | None, typer.Option(
        help="Device name: fills an empty one or overrides the file's.")] = None,
    device_kind: Annotated[str | None, typer.Option(
        help="cuda, rocm, ... (default: from the device's vendor).")] = None,
    flops: Annotated[str | None, typer.Option(
        help="FLOPs per call: an expression over the tunable parameters and problem_size_0..2.")] = None,
    bytes_moved: Annotated[str | None, typer.Option(
        "--bytes", help="Minimum bytes moved per call: an expression like --flops.")] = None,
    conv: Annotated[str | None, typer.Option(
        help="Convolution sizes, e.g. n=1,c=64,h=56,w=56,k=64,r=3,s=3,stride_h=1,pad_h=1.")] = None,
    t1: Annotated[Path | None, typer.Option(
        help="The kernel's T1 description: launch geometry (threads per block, blocks).")] = None,
    fp32_math: Annotated[str | None, typer.Option(
        help="How the fp32 kernel multiplied: ieee (CUDA cores) or tf32 (tensor cores); default unknown.")] = None,
    peak_flops: PeakFlops = None,
    bandwidth: Bandwidth = None,
    as_json: AsJson = False,
) -> None:
    """Import Kernel Tuner output: every tuned configuration, every tunable parameter kept."""
    # loaded when the command runs (see perfscope/commands/__init__.py)
    from perfscope.importers import import_kernel_tuner
    from perfscope.importers.kernel_tuner import parse_sizes

    _write(import_kernel_tuner(path, kernel=kernel, m=m, n=n, k=k, batch=batch, dtype=dtype,
                               device_kind=device_kind, device_name=device_name, flops=flops,
                               bytes_moved=bytes_moved, conv=parse_sizes(conv) if conv else None, t1=t1,
                               fp32_math=fp32_math, peak_flops=peak_flops, bandwidth=bandwidth),
           out, as_json, path)


@import_app.command("csv")
def import_csv_command(
    path: Annotated[Path, typer.Argument(help="A CSV file.")],
    map_: Annotated[list[str] | None, typer.Option("--map", help="COLUMN=CSV_COLUMN, e.g. m=M (repeatable).")] = None,
    default: Annotated[list[str] | None, typer.Option(help="COLUMN=VALUE for every row, e.g. kernel=gemm.")] = None,
    out: Out = Path("profiles"),
    as_json: AsJson = False,
) -> None:
    """Import any CSV with a column mapping onto perfscope's schema."""
    # loaded when the command runs (see perfscope/commands/__init__.py)
    from perfscope.importers import import_csv, parse_mapping

    _write(import_csv(path, parse_mapping(map_ or []), defaults=parse_mapping(default or [])), out, as_json, path)


def _write(table, out: Path, as_json: bool, path: Path) -> None:

    from perfscope.importers import write_imported  # loaded when the command runs (see perfscope/commands/__init__.py)

    if table.num_rows == 0:
        raise InvalidInputError(f"{path} holds no rows to import (a header only?): nothing was written to {out}")
    files = write_imported(table, out)
    _note_unused_declarations(table)
    runs = sorted(set(table.column("run_id").to_pylist()))
    sources = sorted(set(table.column("source").to_pylist()))
    statuses = dict(Counter(table.column("status").to_pylist()).most_common())
    summary = {"dataset": str(out), "rows": table.num_rows, "by_status": statuses, "runs": runs,
               "sources": sources, "files": [str(f) for f in files]}
    if as_json:
        print(strict_json.dumps(summary))
    else:
        counts = ", ".join(f"{n} {status}" for status, n in statuses.items())
        print(f"imported {table.num_rows} rows ({counts}) from {', '.join(sources)} into {out} "
              f"(run {', '.join(runs)})")


def _note_unused_declarations(table) -> None:
    """Say on stderr when declared peaks will not be used: the device has better figures."""
    if not any(table.column(c).null_count < table.num_rows for c in (PEAK_COLUMN, BANDWIDTH_COLUMN)):
        return
    devices = dict(zip(table.column("device_key").to_pylist(), table.column("device_name").to_pylist(), strict=True))
    for key, name in devices.items():
        found = resolve_row_device(key, name)
        if found is not None:
            what = "calibrated profile" if found[1] == "calibrated" else "spec row"
            print(f"note: {name} has a {what} ({found[0].key}): its figures are used, the declared "
                  "--peak-flops/--bandwidth are stored but only used for a device without one", file=sys.stderr)
