"""Import the GPPerf measurements (CUTLASS profiler sweep and a tiled SGEMM) as rows.

GPPerf (pavlyhalim/GPPerf) published three CSVs measured on one GPU:

- ``cutlass_results.csv``: one CUTLASS profiler run per row. ``blocksize1..3``,
  ``Layout`` and ``epilogue`` were passed as options the profiler does not have, so
  they are kept in ``params_json`` (they tell near-replicates apart) and never used as
  tile sizes. The real threadblock tile, stage count and operand layout are in the
  CUTLASS kernel name (``cutlass_simt_sgemm_128x128_8x2_nn_align1``: tile 128 x 128 x 8,
  2 stages, layout nn); those fill ``tile_*`` and ``layout``. The power column was read
  by nvidia-smi after the kernel ran, often at 0% utilisation (idle): energy derived
  from it is kept but marked ``energy_quality="doubtful"``.
- ``tiled_execution_times.csv``: a naive shared-memory tiled SGEMM, one launch per row
  with no warm-up; ``tiled_power_usage.csv`` holds the same runs' power averaged over
  the whole process (nvidia-smi every 100 ms), joined on (M, N, K, Tile Size) and also
  marked doubtful.

The same after-run nvidia-smi reading is the only sign of what else the GPU was doing.
It normally reads 0% utilisation and 27-29 C (the profiler had finished, and one short
profiler run does not warm the GPU). A run followed by a busy reading, or by a hot one
(above 50 C: the GPU had been under sustained load), shared the GPU with another
workload: such runs are 1.1-2x slower than the same configuration's idle-read runs (all
but 2-4 runs of 128256x2048x{1024,2048} read 100% busy at 51-82 C, and those few read
idle but hot and are as slow). Those rows keep their time but get
``status="contended"`` with the reading in ``reason``: models learn from ``ok`` rows
only, unless told to include contended ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from perfscope.errors import InvalidInputError
from perfscope.importers.common import (
    UNKNOWN,
    assemble_table,
    assign_config_ids,
    device_key_for,
    energy_from_power,
    file_time,
    finish_row,
    gemm_work,
    import_run_id,
    params_json,
    read_csv,
    require_columns,
    source_label,
    timestamp_from_seconds,
    timing_columns,
    to_float,
    to_int,
)
from perfscope.importers.declared import declared_columns
from perfscope.schema import CONTENDED_STATUS

FORMAT = "gpperf"
CUTLASS_FILE = "cutlass_results.csv"
TILED_TIMES_FILE = "tiled_execution_times.csv"
TILED_POWER_FILE = "tiled_power_usage.csv"

CUTLASS_COLUMNS = ("timestamp", "m", "n", "k", "kernel", "runtime", "power", "gpu_name")
# options the profiler ignored: they identify near-replicates, nothing more
CUTLASS_OPTION_COLUMNS: dict[str, Callable[[Any], Any]] = {
    "blocksize1": to_int, "blocksize2": to_int, "blocksize3": to_int, "stages": to_int,
    "epilogue": str, "alpha": to_float, "beta": to_float, "Layout": str}
TILED_KEYS = ("M", "N", "K", "Tile Size")
TILED_TIME = "Execution Time"
TILED_POWER = "Average Power Usage (W)"

# CUTLASS procedural kernel names: <opclass>_<op>gemm_<tile m>x<tile n>_<tile k>x<stages>_<layout>_align<n>
_CUTLASS_NAME = re.compile(r"^cutlass_(?P<opclass>[a-z0-9]+)_(?P<op>[a-z0-9]*gemm)_(?P<tm>\d+)x(?P<tn>\d+)_"
                           r"(?P<tk>\d+)x(?P<stages>\d+)_(?P<layout>[nt]{2})_align\d+$")
_OP_DTYPE = {"s": "fp32", "h": "fp16"}

CUTLASS_ENERGY_METHOD = "import:nvidia-smi-after-run"
TILED_ENERGY_METHOD = "import:nvidia-smi-100ms-process-average"
DOUBTFUL = "doubtful"
# a GPU read hotter than this after one short profiler run had been under sustained load
# (this sweep's idle-read runs: 27-29 C; RTX 4070 under load: 60-80 C)
HOT_AFTER_RUN_C = 50.0


def import_gpperf(path: str | os.PathLike[str], *, gpu_name: str | None = None,
                  peak_flops: str | float | None = None, bandwidth: str | float | None = None) -> pa.Table:
    """Rows (``perfscope.schema.arrow_schema()``) from GPPerf's CSVs.

    ``path`` is the folder holding them (every known file present is imported) or one
    of ``cutlass_results.csv`` and ``tiled_execution_times.csv`` (whose power file, when
    beside it, is joined). Files are recognised by their columns.

    ``gpu_name`` names the GPU of the tiled files, which do not record it; by default
    it is the single ``gpu_name`` of ``cutlass_results.csv`` in the same folder.

    Provenance the files do not hold is ``"unknown"`` (host, os, cpu_model,
    python_version; ``threads`` 0) and so is ``cache_mode`` (the sources do not say
    whether operands were reused or rotated). The cutlass rows' ``clock_sm``,
    ``clock_mem`` and ``temp`` are one nvidia-smi reading per run and go to the
    ``*_before`` columns. One run id per call, from the files' content. ``fp32_math`` is
    ``ieee`` for the SIMT CUTLASS and the tiled SGEMM kernels (CUDA cores). ``peak_flops``
    (fp32 FLOP/s) and ``bandwidth`` (bytes/s) declare the GPU's figures for a GPU with no
    spec row or calibrated profile (``perfscope.importers.declared``).
    """
    declared = declared_columns("fp32", peak_flops=peak_flops, bandwidth=bandwidth)
    cutlass, times, power = _locate(Path(path))
    files = [p for p in (cutlass, times, power) if p is not None]
    run_id = import_run_id(FORMAT, files, {"gpu_name": gpu_name, **declared})
    rows: list[dict[str, Any]] = []
    names: set[str] = set()
    if cutlass is not None:
        cutlass_rows = _cutlass_rows(cutlass)
        names = {r["device_name"] for r in cutlass_rows}
        rows += cutlass_rows
    if times is not None:
        if gpu_name is None:
            if len(names) != 1:
                raise InvalidInputError(f"{times.name} does not name its GPU: give its name (gpu_name)",
                                        parameter="gpu_name")
            (gpu_name,) = names
        rows += _tiled_rows(times, power, gpu_name)
    shared = {"run_id": run_id, "device_kind": "cuda", "kernel": "gemm", "cache_mode": UNKNOWN, "batch": 1,
              **declared}
    assign_config_ids(rows, shared)
    return assemble_table(rows, shared)


def _locate(path: Path) -> tuple[Path | None, Path | None, Path | None]:
    """(cutlass results, tiled times, tiled power) files to read, each possibly None."""
    if path.is_dir():
        found = [path / name for name in (CUTLASS_FILE, TILED_TIMES_FILE, TILED_POWER_FILE)]
        cutlass, times, power = (p if p.is_file() else None for p in found)
        if cutlass is None and times is None:
            raise InvalidInputError(f"{path} holds neither {CUTLASS_FILE} nor {TILED_TIMES_FILE}")
        return cutlass, times, power
    if not path.is_file():
        raise InvalidInputError(f"no GPPerf file or folder at {path}")
    header, _ = read_csv(path)
    if set(CUTLASS_COLUMNS) <= set(header):
        return path, None, None
    if set(TILED_KEYS) | {TILED_TIME} <= set(header):
        power = path.with_name(TILED_POWER_FILE)
        return None, path, power if power.is_file() else None
    if set(TILED_KEYS) | {TILED_POWER} <= set(header):
        raise InvalidInputError(f"{path.name} holds power only: import {TILED_TIMES_FILE} (its power file is "
                             "joined when it lies beside it)")
    raise InvalidInputError(f"{path.name} is not a GPPerf CSV: expected the columns of {CUTLASS_FILE} "
                         f"({', '.join(CUTLASS_COLUMNS)}) or of {TILED_TIMES_FILE}")


def parse_cutlass_kernel_name(name: str) -> dict[str, Any]:
    """Tile, stages, layout and dtype encoded in a CUTLASS kernel name ({} if not one).

    ``dtype`` is None when the name's operation (e.g. ``dgemm``) has no perfscope dtype.
    ``fp32_math`` is ``ieee`` for a SIMT fp32 kernel (CUDA cores), else unknown (None).
    """
    match = _CUTLASS_NAME.match(name)
    if not match:
        return {}
    op = match["op"][: -len("gemm")].rstrip("0123456789")  # sgemm -> s, h1688gemm -> h
    dtype = _OP_DTYPE.get(op)
    return {"tile_m": int(match["tm"]), "tile_n": int(match["tn"]), "tile_k": int(match["tk"]),
            "tile_num_stages": int(match["stages"]), "layout": match["layout"], "dtype": dtype,
            "fp32_math": "ieee" if dtype == "fp32" and match["opclass"] == "simt" else None}


def _cutlass_rows(path: Path) -> list[dict[str, Any]]:
    header, records = read_csv(path)
    require_columns(header, CUTLASS_COLUMNS, path, "CUTLASS results file")
    source = source_label(FORMAT, path)
    fallback_time = file_time(path)
    parsed_names: dict[str, dict[str, Any]] = {}
    parsed_options: dict[tuple[str | None, ...], tuple[dict[str, Any], str | None]] = {}
    rows = []
    for line, rec in enumerate(records, start=2):
        m, n, k = to_int(rec.get("m")), to_int(rec.get("n")), to_int(rec.get("k"))
        if m is None or n is None or k is None or min(m, n, k) < 1:
            raise InvalidInputError(f"{path.name} line {line}: m, n, k must be positive integers, got "
                                 f"{rec.get('m')!r}, {rec.get('n')!r}, {rec.get('k')!r}")
        kernel_name = rec["kernel"].strip()
        if kernel_name not in parsed_names:
            parsed_names[kernel_name] = parse_cutlass_kernel_name(kernel_name)
        row: dict[str, Any] = {"source": source, "implementation": f"cutlass.{kernel_name}", "dtype": "fp32",
                               "m": m, "n": n, "k": k, "device_name": rec["gpu_name"].strip() or UNKNOWN}
        row.update(parsed_names[kernel_name])
        row["device_key"] = device_key_for("cuda", row["device_name"])
        raw_options = tuple(rec.get(col) for col in CUTLASS_OPTION_COLUMNS)
        if raw_options not in parsed_options:  # few distinct combinations: parse each once
            parsed_options[raw_options] = _cutlass_options(raw_options)
        options, row["params_json"] = parsed_options[raw_options]
        stamp = to_float(rec.get("timestamp"))
        row["measured_at"] = (timestamp_from_seconds(stamp, f"{path.name} line {line}") if stamp is not None
                              else fallback_time)
        row.update(clock_mhz_before=to_float(rec.get("clock_sm")), mem_clock_mhz_before=to_float(rec.get("clock_mem")),
                   temperature_c_before=to_float(rec.get("temp")))
        if row["dtype"] is None:
            row.update(dtype=UNKNOWN, status="unsupported", reason=f"{kernel_name}: perfscope has no dtype for "
                                                                    "this CUTLASS operation",
                       energy_reason="not measured: the configuration was not timed")
            rows.append(row)
            continue
        row.update(gemm_work(1, m, n, k, row["dtype"], beta_nonzero=bool(options.get("beta"))))
        runtime_ms = to_float(rec.get("runtime"))
        if runtime_ms is None or runtime_ms <= 0:
            row.update(status="error", reason=f"no valid runtime in the CSV ({rec.get('runtime')!r}): the profiler "
                                              "run failed or was not recorded",
                       energy_reason="not measured: the configuration was not timed")
            rows.append(row)
            continue
        # the profiler reports one mean time per run: one sample of unknown call count
        row["status"] = "ok"
        busy = _busy_reading(rec)
        if busy is not None:
            row.update(status=CONTENDED_STATUS, reason=busy)
        row.update(timing_columns([runtime_ms], "import:cutlass_profiler"))
        row.update(_cutlass_energy(rec, runtime_ms))
        rows.append(finish_row(row))
    return rows


def _busy_reading(rec: dict[str, str]) -> str | None:
    """Why a run counts as contended (a busy or hot GPU read after it finished), or None."""
    util, temp = to_float(rec.get("gpu_util")), to_float(rec.get("temp"))
    busy = util is not None and util > 0
    hot = temp is not None and temp > HOT_AFTER_RUN_C
    if not (busy or hot):
        return None
    util_text = f"{util:.0f}% busy" if util is not None else "utilisation unknown"
    temp_text = f", {temp:.0f} C" if temp is not None else ""
    return (f"GPU read {util_text}{temp_text} by nvidia-smi after the profiler run had finished: another workload "
            "likely shared the GPU while it ran")


def _cutlass_options(raw: tuple[str | None, ...]) -> tuple[dict[str, Any], str | None]:
    """The ignored profiler options of a row, converted, and their params JSON."""
    options = {col: conv(value) if conv is not str else value
               for (col, conv), value in zip(CUTLASS_OPTION_COLUMNS.items(), raw, strict=False)
               if value not in (None, "")}
    if "Layout" in options:
        options["layout_option"] = options.pop("Layout")
    return options, params_json(options)


def _cutlass_energy(rec: dict[str, str], runtime_ms: float) -> dict[str, Any]:
    power_w = to_float(rec.get("power"))
    if power_w is None:
        return {"energy_reason": "no power reading in the source"}
    util = to_float(rec.get("gpu_util"))
    at = f" at {util:.0f}% GPU utilisation" if util is not None else ""
    temp = to_float(rec.get("temp"))
    # a hot GPU reading 0% had just been busy (see _busy_reading): not an idle reading
    idle = "an idle reading: " if util == 0 and not (temp is not None and temp > HOT_AFTER_RUN_C) else ""
    out = {"energy_method": CUTLASS_ENERGY_METHOD, "energy_is_estimate": False, "energy_quality": DOUBTFUL,
           "energy_reason": f"{idle}nvidia-smi power read after the kernel ran, not during it{at}; "
                            "energy = that power x runtime"}
    out.update(energy_from_power(power_w, runtime_ms))
    return out


def _tiled_rows(times_path: Path, power_path: Path | None, gpu_name: str) -> list[dict[str, Any]]:
    header, records = read_csv(times_path)
    require_columns(header, (*TILED_KEYS, TILED_TIME), times_path, "tiled SGEMM times file")
    power = _tiled_power(power_path) if power_path is not None else {}
    source = source_label(FORMAT, times_path)
    measured_at = file_time(times_path)  # the files hold no timestamps
    device_key = device_key_for("cuda", gpu_name)
    rows = []
    for line, rec in enumerate(records, start=2):
        m, n, k, tile = (to_int(rec.get(c)) for c in TILED_KEYS)
        if m is None or n is None or k is None or tile is None or min(m, n, k, tile) < 1:
            raise InvalidInputError(f"{times_path.name} line {line}: M, N, K and Tile Size must be positive integers")
        # a hand-written shared-memory SGEMM: fp32 FMAs on the CUDA cores
        row: dict[str, Any] = {"source": source, "implementation": "gpperf.tiled_sgemm", "dtype": "fp32",
                               "fp32_math": "ieee",
                               "m": m, "n": n, "k": k, "tile_m": tile, "tile_n": tile, "tile_k": tile,
                               "device_name": gpu_name, "device_key": device_key, "measured_at": measured_at}
        row.update(gemm_work(1, m, n, k, "fp32"))
        time_ms = to_float(rec.get(TILED_TIME))
        if time_ms is None or time_ms <= 0:
            row.update(status="error", reason=f"no valid execution time in the CSV ({rec.get(TILED_TIME)!r})",
                       energy_reason="not measured: the configuration was not timed")
            rows.append(row)
            continue
        row["status"] = "ok"
        row.update(timing_columns([time_ms], "import:single-launch-no-warmup", calls_per_sample=1, warmup_s=0.0))
        power_w = power.get((m, n, k, tile))
        if power_w is None:
            row["energy_reason"] = f"no power for this configuration in {TILED_POWER_FILE}"
        else:
            row.update(energy_method=TILED_ENERGY_METHOD, energy_is_estimate=False, energy_quality=DOUBTFUL,
                       energy_reason="average power of the whole process (setup and copies included) from "
                                     f"nvidia-smi polled every 100 ms ({TILED_POWER_FILE}), not of the kernel "
                                     "alone; energy = that power x the single launch's time")
            row.update(energy_from_power(power_w, time_ms))
        rows.append(finish_row(row))
    return rows


def _tiled_power(path: Path) -> dict[tuple[int, ...], float]:
    """Power (W) by (M, N, K, tile); a configuration listed more than once is left out."""
    header, records = read_csv(path)
    require_columns(header, (*TILED_KEYS, TILED_POWER), path, "tiled SGEMM power file")
    out: dict[tuple[int, ...], float] = {}
    repeated: set[tuple[int, ...]] = set()
    for rec in records:
        sizes = [to_int(rec.get(c)) for c in TILED_KEYS]
        value = to_float(rec.get(TILED_POWER))
        if value is None or any(size is None for size in sizes):
            continue
        key = tuple(size for size in sizes if size is not None)
        if key in out:
            repeated.add(key)
        out[key] = value
    for key in repeated:  # ambiguous: which reading belongs to the timed run is unknown
        del out[key]
    return out
