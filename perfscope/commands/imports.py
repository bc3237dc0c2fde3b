"""``perfscope import``: measurements made elsewhere, into a dataset, saying where from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perfscope import strict_json
from perfscope.cli_app import app

import_app = typer.Typer(no_args_is_help=True, help="Import measurements made elsewhere into a dataset.")
app.add_typer(import_app, name="import")

Out = Annotated[Path, typer.Option("--out", "-o", help="Dataset directory (created or added to).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


@import_app.command("gpperf")
def import_gpperf_command(
    path: Annotated[Path, typer.Argument(help="GPPerf's folder, or cutlass_results.csv / tiled_*.csv.")],
    out: Out = Path("profiles"),
    gpu_name: Annotated[str | None, typer.Option(help="GPU of the tiled files (default: cutlass_results').")] = None,
    as_json: AsJson = False,
) -> None:
    """Import the GPPerf study's CUTLASS and tiled-SGEMM CSVs (power flagged doubtful)."""
    from perfscope.importers import import_gpperf

    _write(import_gpperf(path, gpu_name=gpu_name), out, as_json, path)


@import_app.command("kernel-tuner")
def import_kernel_tuner_command(
    path: Annotated[Path, typer.Argument(help="A Kernel Tuner cache file (JSON).")],
    out: Out = Path("profiles"),
    kernel: Annotated[str, typer.Option(help="Kernel family of the tuned kernel.")] = "gemm",
    m: Annotated[int | None, typer.Option(help="GEMM m (default: from the file's problem_size).")] = None,
    n: Annotated[int | None, typer.Option(help="GEMM n.")] = None,
    k: Annotated[int | None, typer.Option(help="GEMM k.")] = None,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 1,
    dtype: Annotated[str, typer.Option(help="Precision of the tuned kernel.")] = "fp32",
    device_kind: Annotated[str, typer.Option(help="cuda or cpu.")] = "cuda",
    as_json: AsJson = False,
) -> None:
    """Import a Kernel Tuner cache: every tuned configuration, tile parameters kept."""
    from perfscope.importers import import_kernel_tuner

    _write(import_kernel_tuner(path, kernel=kernel, m=m, n=n, k=k, batch=batch, dtype=dtype,
                               device_kind=device_kind), out, as_json, path)


@import_app.command("csv")
def import_csv_command(
    path: Annotated[Path, typer.Argument(help="A CSV file.")],
    map_: Annotated[list[str] | None, typer.Option("--map", help="COLUMN=CSV_COLUMN, e.g. m=M (repeatable).")] = None,
    default: Annotated[list[str] | None, typer.Option(help="COLUMN=VALUE for every row, e.g. kernel=gemm.")] = None,
    out: Out = Path("profiles"),
    as_json: AsJson = False,
) -> None:
    """Import any CSV with a column mapping onto perfscope's schema."""
    from perfscope.importers import import_csv, parse_mapping

    _write(import_csv(path, parse_mapping(map_ or []), defaults=parse_mapping(default or [])), out, as_json, path)


def _write(table, out: Path, as_json: bool, path: Path) -> None:
    from collections import Counter

    from perfscope.errors import UserInputError
    from perfscope.importers import write_imported

    if table.num_rows == 0:
        raise UserInputError(f"{path} holds no rows to import (a header only?): nothing was written to {out}")
    files = write_imported(table, out)
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
