"""Import Kernel Tuner cache files (JSON) as rows.

A cache file holds ``device_name``, ``kernel_name``, ``problem_size``,
``tune_params_keys``, ``tune_params``, ``objective`` and ``cache``: one entry per
configuration (its key is the comma-joined parameter values) with the parameter
values, ``time`` (ms, the mean over iterations), ``times`` (ms per iteration) and
whatever observers added (``nvml_power``, ``nvml_energy``, ``core_freq``, ``GFLOP/s``,
a ``timestamp`` ...). Failed configurations carry an error string in ``time``
(``InvalidConfig``, ``CompilationFailedConfig``, ``RuntimeFailedConfig``; old versions
wrote 1e20). Kernel Tuner writes the file while tuning, so an interrupted session
leaves it unterminated; it is read the way Kernel Tuner reads it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from perfscope.dtypes import dtype_info
from perfscope.errors import UserInputError
from perfscope.importers.common import (
    assemble_table,
    assign_config_ids,
    device_key_for,
    energy_from_power,
    file_time,
    finish_row,
    gemm_work,
    import_run_id,
    params_json,
    require_file,
    source_label,
    timing_columns,
    to_float,
    to_int,
)

FORMAT = "kernel-tuner"
REQUIRED_KEYS = ("device_name", "kernel_name", "tune_params_keys", "cache")
FAILURE_MARKER_MS = 1e20  # what older Kernel Tuner versions stored for a failed configuration

_ERROR_STRINGS = {
    "InvalidConfig": ("unsupported", "Kernel Tuner: InvalidConfig (the configuration breaks a restriction "
                                     "or a device limit)"),
    "CompilationFailedConfig": ("error", "Kernel Tuner: CompilationFailedConfig (the kernel did not compile)"),
    "RuntimeFailedConfig": ("error", "Kernel Tuner: RuntimeFailedConfig (the kernel failed to launch or run)"),
}

# Tunable parameter names that are unambiguously a block tile, compared case-insensitively:
# CLBlast's xgemm (MWG, NWG, KWG) and the Triton-style spellings.
_TILE_NAMES = {
    "tile_m": ("mwg", "block_m", "block_size_m", "tile_m"),
    "tile_n": ("nwg", "block_n", "block_size_n", "tile_n"),
    "tile_k": ("kwg", "block_k", "block_size_k", "tile_k"),
    "tile_group_m": ("group_m", "group_size_m"),
    "tile_num_warps": ("num_warps",),
    "tile_num_stages": ("num_stages",),
}
# Energy observers: (energy key, power key, method suffix). NVMLObserver and the
# PowerSensor observer measure; plain "energy"/"power" are user metrics (units assumed).
_ENERGY_KEYS = (("nvml_energy", "nvml_power", "nvml"), ("ps_energy", "ps_power", "powersensor"),
                ("pmt_energy", "pmt_power", "pmt"), ("energy", "power", "user-metric"))


def import_kernel_tuner(path: str | os.PathLike[str], *, kernel: str = "gemm", m: int | None = None,
                        n: int | None = None, k: int | None = None, batch: int = 1, dtype: str = "fp32",
                        device_kind: str = "cuda") -> pa.Table:
    """Rows (``perfscope.schema.arrow_schema()``) from one Kernel Tuner cache file.

    Problem size: ``m``, ``n``, ``k`` when given, else from the file's ``problem_size``
    read in Kernel Tuner's convention (x is the fastest dimension: the columns of C),
    ``[x, y]`` -> n = x, m = y (k must then be given) and ``[x, y, z]`` -> n, m, k. The
    raw ``problem_size`` is kept in ``params_json``. For a ``kernel`` other than
    ``"gemm"`` no sizes or FLOPs are filled. The file does not state the precision
    (``dtype``, default fp32) nor the device kind (``device_kind``, default cuda).

    Every tunable parameter goes to ``params_json``; unambiguous tile names fill
    ``tile_*`` (MWG/NWG/KWG, BLOCK_M/N/K, GROUP_M, num_warps, num_stages), and
    ``block_size_x/y`` times ``tile_size_x/y`` (default 1) fill ``tile_n``/``tile_m`` as
    in Kernel Tuner's matmul example (the thread block covers block x tile elements).

    Failed entries become rows with status ``unsupported`` (InvalidConfig) or ``error``
    and the reason. ``times`` become ``samples_ms`` and ``time`` the mean. Provenance
    the file does not hold is ``"unknown"``; ``measured_at`` is the entry's
    ``timestamp`` or else the file's modification time; ``cache_mode`` is ``warm``
    (Kernel Tuner reruns the kernel on the same arguments).
    """
    file = require_file(path, "Kernel Tuner cache file")
    data = _read_cache(file)
    dtype_info(dtype)
    gemm = kernel == "gemm"
    sizes = _problem_size(data.get("problem_size"), m, n, k, file) if gemm else {}
    if gemm and (not isinstance(batch, int) or batch < 1):
        raise UserInputError(f"batch must be a positive integer, got {batch!r}")
    run_id = import_run_id(FORMAT, [file], {"kernel": kernel, "m": m, "n": n, "k": k, "batch": batch,
                                            "dtype": dtype, "device_kind": device_kind})
    keys = list(data["tune_params_keys"])
    device_name = str(data["device_name"])
    fallback_time = file_time(file)
    shared: dict[str, Any] = {"run_id": run_id, "source": source_label(FORMAT, file), "kernel": kernel,
                              "implementation": f"kernel_tuner.{data['kernel_name']}", "dtype": dtype,
                              "cache_mode": "warm", "device_kind": device_kind, "device_name": device_name,
                              "device_key": device_key_for(device_kind, device_name)}
    if gemm:
        shared.update(batch=batch, **sizes)
        shared.update(gemm_work(batch, sizes["m"], sizes["n"], sizes["k"], dtype))
    rows = []
    for cache_key, entry in data["cache"].items():
        if not isinstance(entry, dict):
            raise UserInputError(f"{file.name}: cache entry {cache_key!r} is not an object")
        params = _params(cache_key, entry, keys)
        config = dict(params)
        if "problem_size" in data:
            config["problem_size"] = data["problem_size"]
        row: dict[str, Any] = {"params_json": params_json(config), "measured_at": _timestamp(entry, fallback_time)}
        row.update(_tiles(params))
        if "nvml_pwr_limit" in params and to_float(params["nvml_pwr_limit"]) is not None:
            row["power_limit_w"] = float(params["nvml_pwr_limit"])
        row.update(_state(entry))
        status, reason = _status(entry.get("time"))
        row.update(status=status, reason=reason)
        if status == "ok":
            times = [t for t in (to_float(x) for x in entry.get("times") or []) if t is not None and t > 0]
            mean_ms = float(entry["time"])
            row.update(timing_columns(times or [mean_ms], "import:kernel-tuner", mean_ms=mean_ms,
                                      calls_per_sample=1 if times else None))
            row.update(_energy(entry, row["time_median_ms"]))
            if gemm:
                row.update(flops=shared["flops"], min_bytes=shared["min_bytes"])
            finish_row(row)
        else:
            row["energy_reason"] = "not measured: the configuration was not timed"
        rows.append(row)
    assign_config_ids(rows, shared)
    return assemble_table(rows, shared)


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache as a dict; an unterminated file (tuning cut short) is closed first."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        try:  # Kernel Tuner appends '"key": {...},' per entry and closes the file at the end
            data = json.loads(text.rstrip(",") + "}\n}")
        except ValueError as exc:
            raise UserInputError(f"{path.name} is not a Kernel Tuner cache file (not JSON: {exc})") from None
    if not isinstance(data, dict) or any(key not in data for key in REQUIRED_KEYS):
        missing = [key for key in REQUIRED_KEYS if not isinstance(data, dict) or key not in data]
        raise UserInputError(f"{path.name} is not a Kernel Tuner cache file: missing {', '.join(missing)}")
    if not isinstance(data["cache"], dict):
        raise UserInputError(f"{path.name}: 'cache' is not an object")
    return data


def _problem_size(problem: Any, m: int | None, n: int | None, k: int | None, path: Path) -> dict[str, int]:
    sizes = list(problem) if isinstance(problem, (list, tuple)) else []
    derived: dict[str, Any] = {}
    if sizes and all(to_int(s) is not None for s in sizes) and len(sizes) in (2, 3):
        derived = dict(zip(("n", "m", "k"), (to_int(s) for s in sizes), strict=False))
    given = {"m": m, "n": n, "k": k}
    out = {name: given[name] if given[name] is not None else derived.get(name) for name in ("m", "n", "k")}
    missing = [name for name, value in out.items() if value is None]
    if missing:
        raise UserInputError(f"{path.name}: problem_size {problem!r} does not give {', '.join(missing)}; "
                             f"pass {', '.join('--' + x for x in missing)}")
    checked: dict[str, int] = {}
    for name, value in out.items():
        if not isinstance(value, int) or value < 1:
            raise UserInputError(f"gemm {name} must be a positive integer, got {value!r}")
        checked[name] = value
    return checked


def _params(cache_key: str, entry: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The entry's tunable parameter values (from the entry, else from its key string)."""
    if all(key in entry for key in keys):
        return {key: entry[key] for key in keys}
    values = str(cache_key).split(",")
    if len(values) != len(keys):
        return {key: entry.get(key) for key in keys}
    return {key: entry.get(key, _number(value)) for key, value in zip(keys, values, strict=True)}


def _number(text: str) -> Any:
    integer = to_int(text)
    if integer is not None:
        return integer
    number = to_float(text)
    return text if number is None else number


def _tiles(params: dict[str, Any]) -> dict[str, int]:
    lower = {key.lower(): value for key, value in params.items()}
    out: dict[str, int] = {}
    for column, names in _TILE_NAMES.items():
        found = {to_int(lower[name]) for name in names if name in lower}
        if len(found) == 1:
            value = found.pop()
            if value is not None:
                out[column] = value
    for column, axis in (("tile_n", "x"), ("tile_m", "y")):
        block = to_int(lower.get(f"block_size_{axis}"))
        tile = to_int(lower.get(f"tile_size_{axis}", 1))
        if column not in out and block is not None and tile is not None:
            out[column] = block * tile
    return out


def _status(time: Any) -> tuple[str, str | None]:
    if isinstance(time, str):
        return _ERROR_STRINGS.get(time, ("error", f"Kernel Tuner: {time[:200]}"))
    value = to_float(time) if not isinstance(time, bool) else None
    if value is None or value <= 0:
        return "error", f"no valid time in the cache entry ({time!r})"
    if value >= FAILURE_MARKER_MS:
        return "error", f"Kernel Tuner's old failure marker (time {value:g}): compiling or launching failed"
    return "ok", None


def _timestamp(entry: dict[str, Any], fallback: datetime) -> datetime:
    stamp = entry.get("timestamp")
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            return fallback
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return fallback


def _state(entry: dict[str, Any]) -> dict[str, float]:
    """Clocks and temperature the NVML observer recorded (averages during the benchmark)."""
    out = {}
    for column, names in (("clock_mhz_before", ("core_freq", "pwr_core_freq")),
                          ("mem_clock_mhz_before", ("mem_freq", "pwr_mem_freq")),
                          ("temperature_c_before", ("temperature", "pwr_temperature"))):
        for name in names:
            value = to_float(entry.get(name))
            if value is not None:
                out[column] = value
                break
    return out


def _energy(entry: dict[str, Any], time_ms: float) -> dict[str, Any]:
    for energy_key, power_key, method in _ENERGY_KEYS:
        energy_j, power_w = to_float(entry.get(energy_key)), to_float(entry.get(power_key))
        if energy_j is None and power_w is None:
            continue
        out: dict[str, Any] = {"energy_method": f"import:kernel-tuner-{method}", "energy_is_estimate": False}
        if power_w is not None:
            out.update(energy_from_power(power_w, time_ms))
        if energy_j is not None:
            out["energy_gross_j"] = energy_j
        if method == "user-metric":
            out.update(energy_quality="doubtful",
                       energy_reason=f"Kernel Tuner user metrics {energy_key!r}/{power_key!r}: units assumed "
                                     "J per call and W, method unknown")
        elif method == "nvml":
            out["energy_reason"] = ("Kernel Tuner NVML observer: nvml_power is the median power over a continuous "
                                    "run of the kernel, nvml_energy that power x the kernel's time")
        else:
            out["energy_reason"] = f"Kernel Tuner {method} observer: {energy_key} per call as the observer reported it"
        return out
    return {"energy_reason": "no energy or power in the cache entry"}
