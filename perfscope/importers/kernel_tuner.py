"""Import Kernel Tuner output as rows: caches (``.json``, ``.json.gz``) and T4 results files.

A cache entry (one per configuration) holds the parameter values, ``time`` (ms, the mean
over iterations), ``times`` (ms per iteration) and whatever observers added
(``nvml_power``, ``nvml_energy``, ``core_freq``, ``GB/s``, a ``timestamp`` ...). Failed
configurations carry an error string in ``time`` (``InvalidConfig``,
``CompilationFailedConfig``, ``RuntimeFailedConfig``; old versions wrote 1e20). See
``kernel_tuner_read`` for the formats and ``docs/`` for the column conventions.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from perfscope.devices.registry import device_kind_for, find_device_spec
from perfscope.dtypes import check_dtype
from perfscope.errors import InvalidInputError
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
    with_param_columns,
)
from perfscope.importers.declared import declared_columns
from perfscope.importers.expressions import NumericExpression
from perfscope.importers.kernel_tuner_read import (
    TuningRecord,
    metadata_device_name,
    metadata_file_for,
    read_tuning_file,
)
from perfscope.importers.t1 import read_t1

FORMAT = "kernel-tuner"
FAILURE_MARKER_MS = 1e20  # what older Kernel Tuner versions stored for a failed configuration
LAUNCH_PREFIX = "launch."  # params_json keys of the launch geometry (not tunable parameters)
CONV_COLUMNS = ("conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s", "stride_h", "stride_w",
                "pad_h", "pad_w", "dil_h", "dil_w", "groups")

_ERROR_STRINGS = {
    "InvalidConfig": ("unsupported", ("Kernel Tuner: InvalidConfig (the configuration breaks a restriction "
                                      "or a device limit)")),
    "CompilationFailedConfig": ("error", "Kernel Tuner: CompilationFailedConfig (the kernel did not compile)"),
    "RuntimeFailedConfig": ("error", "Kernel Tuner: RuntimeFailedConfig (the kernel failed to launch or run)"),
    "CorrectnessFailed": ("check_failed", "T4: the configuration's output failed the correctness check"),
}

# Tunable parameter names that are unambiguously a GEMM block tile, compared case-insensitively:
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
_FAMILY_HINTS = (("gemm", re.compile(r"gemm|matmul", re.IGNORECASE)),)


def import_kernel_tuner(path: str | os.PathLike[str], *, kernel: str | None = None, m: int | None = None,
                        n: int | None = None, k: int | None = None, batch: int = 1, dtype: str = "fp32",
                        device_kind: str | None = None, device_name: str | None = None,
                        flops: str | None = None, bytes_moved: str | None = None,
                        conv: dict[str, int] | None = None, t1: str | os.PathLike[str] | None = None,
                        fp32_math: str | None = None, peak_flops: str | float | None = None,
                        bandwidth: str | float | None = None) -> pa.Table:
    """Rows (``perfscope.schema.arrow_schema()``) from one Kernel Tuner cache or T4 file.

    ``kernel``: the family (default: ``gemm`` when the kernel's name says gemm/matmul,
    else the kernel's own name). Problem size in Kernel Tuner's convention (x is the
    fastest dimension): for ``gemm``, ``[x, y, z]`` -> n, m, k (``m``/``n``/``k`` given
    win; a size still unknown leaves the row without GEMM sizes: FLOPs unknown unless
    ``flops`` says). ``conv``: the convolution's sizes (``conv_n`` ... ``groups``, or
    without the ``conv_`` prefix). ``flops``/``bytes_moved``: expressions over the
    tunable parameters and ``problem_size_0..2`` (``NumericExpression``) giving work
    and minimum traffic per call.

    Device: ``device_name`` fills an empty name or overrides the file's; a cache without
    one is matched by its file name against the spec table (``MI250X.json.gz``), a T4
    results file takes it from the metadata file beside it (``X-results.json`` ->
    ``X-metadata.json``). The
    vendor decides ``device_kind`` (``cuda``, ``rocm``, ...) unless given.

    Every tunable parameter becomes its own typed ``param_<name>`` column and goes to
    ``params_json``; with ``t1`` (a
    T1 kernel description) the launch geometry is added as ``launch.threads_per_block``
    and ``launch.blocks``. GEMM tile names fill ``tile_*``. Failed entries become rows
    with status ``unsupported``/``error``/``check_failed`` and the reason.

    Declared (``perfscope.importers.declared``): ``fp32_math`` (``ieee`` or ``tf32``: how the
    fp32 kernel multiplied; default unknown), ``peak_flops`` (FLOP/s of ``dtype`` under that
    math) and ``bandwidth`` (bytes/s), numbers or text with SI prefixes (``19.5T``), used
    for a device with no calibrated profile and no spec row.
    """
    file = require_file(path, "Kernel Tuner cache or T4 file")
    record = read_tuning_file(file)
    check_dtype(dtype)
    declared = declared_columns(dtype, fp32_math=fp32_math, peak_flops=peak_flops, bandwidth=bandwidth)
    geometry = read_t1(Path(t1)) if t1 is not None else None
    if record.problem_size is None and geometry is not None and geometry.problem_size:
        record.problem_size = list(geometry.problem_size)
    kernel_name = record.kernel_name or (geometry.kernel_name if geometry else None) or file.name.split(".")[0]
    family = kernel or _family(kernel_name)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise InvalidInputError(f"batch must be a positive integer, got {batch!r}")
    name, kind = _device(record, file, device_name, device_kind)
    run_id = import_run_id(FORMAT, [file] + ([Path(t1)] if t1 is not None else []),
                           {"kernel": family, "m": m, "n": n, "k": k, "batch": batch, "dtype": dtype,
                            "device_kind": kind, "device_name": name, "flops": flops, "bytes": bytes_moved,
                            "conv": conv, **declared})
    shared: dict[str, Any] = {"run_id": run_id, "source": source_label(FORMAT, file), "kernel": family,
                              "implementation": f"kernel_tuner.{kernel_name}", "dtype": dtype,
                              "cache_mode": "warm", "device_kind": kind, "device_name": name,
                              "device_key": device_key_for(kind, name), **declared}
    shared.update(_sizes(family, record.problem_size, m, n, k, batch, dtype, conv))
    problem = {f"problem_size_{i}": v for i, v in enumerate(record.problem_size or [])}
    problem.update({c: shared[c] for c in ("m", "n", "k", "batch") if shared.get(c) is not None})
    work = {column: NumericExpression(text, f"--{option}") for column, option, text in
            (("flops", "flops", flops), ("min_bytes", "bytes", bytes_moved)) if text is not None}
    fallback_time = file_time(file)
    rows, tunables = [], []
    for cache_key, entry in record.entries:
        params = _params(cache_key, entry, record.keys)
        tunables.append(params)
        config = dict(params)
        if geometry is not None:
            config.update({LAUNCH_PREFIX + key: value for key, value in geometry.launch({**problem, **params}).items()})
        if record.problem_size is not None:
            config["problem_size"] = record.problem_size
        row: dict[str, Any] = {"params_json": params_json(config), "measured_at": _timestamp(entry, fallback_time)}
        if family == "gemm":
            row.update(_tiles(params))
        for column, expression in work.items():
            row[column] = expression.count({**problem, **params})
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
            for column in ("flops", "min_bytes"):
                if column not in row and shared.get(column) is not None:
                    row[column] = shared[column]
            finish_row(row)
        else:
            row["energy_reason"] = "not measured: the configuration was not timed"
        rows.append(row)
    for column in ("flops", "min_bytes"):
        shared.pop(column, None)  # only timed rows carry work (as before: refused rows have none)
    assign_config_ids(rows, shared)
    return with_param_columns(assemble_table(rows, shared), tunables)


def _family(kernel_name: str) -> str:
    for family, pattern in _FAMILY_HINTS:
        if pattern.search(kernel_name):
            return family
    return kernel_name


def _device(record: TuningRecord, file: Path, name: str | None, kind: str | None) -> tuple[str, str]:
    """(device name, device kind): the option, else the file's name, else (T4) the metadata
    file's device query, else (cache) the file name matched against the spec table; the
    vendor decides the kind unless given."""
    chosen = (name or "").strip() or (record.device_name or "").strip()
    if not chosen and record.format == "t4":  # (not guessed from the file name: "t4.json" is no NVIDIA T4)
        metadata = metadata_file_for(file)
        chosen = (metadata_device_name(metadata) or "") if metadata is not None else ""
        listed = find_device_spec(chosen) if "[" in chosen else None  # a PCI-style name: keyed as its row names it
        chosen = listed.name if listed is not None else chosen
        if not chosen:
            beside = f"its metadata file {metadata.name} names no single GPU" if metadata is not None else \
                "no X-metadata.json lies beside its X.json or X-results.json"
            raise InvalidInputError(f"{file.name}: a T4 file does not name its device ({beside}): give its name",
                                    parameter="device_name")
    spec = find_device_spec(chosen) if chosen else None
    if not chosen:
        spec = find_device_spec(file.name.split(".")[0])
        chosen = spec.name if spec is not None else "unknown GPU"
    return chosen, kind or device_kind_for(chosen, spec)


def _sizes(family: str, problem: list[int] | None, m: int | None, n: int | None, k: int | None, batch: int,
           dtype: str, conv: dict[str, int] | None) -> dict[str, Any]:
    """Shape columns shared by every row: GEMM sizes (and work) or conv sizes."""
    if conv:
        return _conv_sizes(conv)
    if family != "gemm":
        return {}
    derived = dict(zip(("n", "m", "k"), problem or [], strict=False))
    given = {"m": m, "n": n, "k": k}
    sizes = {name: given[name] if given[name] is not None else derived.get(name) for name in ("m", "n", "k")}
    for name, value in sizes.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidInputError(f"gemm {name} must be a positive integer, got {value!r}")
    m_, n_, k_ = sizes["m"], sizes["n"], sizes["k"]
    if m_ is None or n_ is None or k_ is None:
        return {}  # e.g. a 2-element problem_size: sizes stay unknown rather than guessed
    out: dict[str, Any] = {"batch": batch, **sizes}
    out.update(gemm_work(batch, m_, n_, k_, dtype))
    return out


def _conv_sizes(conv: dict[str, int]) -> dict[str, Any]:
    out = {}
    for key, value in conv.items():
        column = key if key in CONV_COLUMNS else f"conv_{key}"
        if column not in CONV_COLUMNS:
            raise InvalidInputError(f"unknown convolution size {key!r}: use {', '.join(CONV_COLUMNS)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key.startswith("pad") else 1):
            raise InvalidInputError(f"convolution {key} must be a positive integer, got {value!r}")
        out[column] = value
    return out


def parse_sizes(text: str) -> dict[str, int]:
    """``"n=1,c=64,h=56,w=56,k=64,r=3,s=3"`` -> a dict (the ``--conv`` option)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        number = to_int(value)
        if not sep or number is None:
            raise InvalidInputError(f"bad size {part!r}: expected NAME=INTEGER, e.g. n=1,c=64,h=56,w=56,k=64,r=3,s=3")
        out[key.strip()] = number
    return out


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
        return "error", f"no valid time in the cache entry ({str(time)[:80]!r})"
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
