"""The measurement row: one versioned definition from which the Parquet schema derives.

``Measurement`` is the single source of truth. Its field annotations map to Arrow
types (``int`` -> int64, ``float`` -> float64, ``str`` -> string, ``bool`` -> bool,
``datetime`` -> timestamp[us, UTC], ``list[float]`` -> list<float64>); ``X | None``
marks a nullable column. Units are in the column names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = 2
"""2: data files leave out the partition columns (device_key, kernel) and may carry
``param_<name>`` columns; 1: files held every column. Both are read."""
SCHEMA_METADATA_KEY = b"perfscope.schema_version"

# Configuration columns: together they identify what was measured (see config_id).
CONFIG_COLUMNS = (
    "kernel", "implementation", "dtype", "cache_mode",
    "batch", "m", "n", "k",
    "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s",
    "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups", "layout",
    "heads", "kv_heads", "seq_q", "seq_k", "head_dim", "causal", "backend",
    "tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages",
    "params_json",
)


# timed, but while another workload shared the device (evidence in reason): kept, not learnt from
CONTENDED_STATUS = "contended"


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One measured (or refused) configuration on one device."""

    # identity
    schema_version: int = SCHEMA_VERSION
    run_id: str
    config_id: str
    measured_at: datetime
    device_key: str  # dataset partition: slug of device kind and name
    source: str = "perfscope"  # perfscope (measured here) or import:<format>:<file name>
    # configuration
    kernel: str  # family: gemm, conv, attention
    implementation: str  # e.g. torch.matmul, torch.bmm
    dtype: str  # fp32, tf32, fp16, bf16, fp8_e4m3, ...
    cache_mode: str  # warm or cold
    # how fp32 storage was multiplied: ieee (full fp32) or tf32 (tensor cores, 10-bit
    # mantissa), read from torch's switches or Triton's input_precision when measured,
    # declared at import (--fp32-math); null for other dtypes or when unknown. Not part of
    # the config id: a measurement condition, like the clocks (files without it read null)
    fp32_math: str | None = None
    batch: int | None = None
    m: int | None = None
    n: int | None = None
    k: int | None = None
    conv_n: int | None = None
    conv_c: int | None = None
    conv_h: int | None = None
    conv_w: int | None = None
    conv_k: int | None = None
    conv_r: int | None = None
    conv_s: int | None = None
    stride_h: int | None = None
    stride_w: int | None = None
    pad_h: int | None = None
    pad_w: int | None = None
    dil_h: int | None = None
    dil_w: int | None = None
    groups: int | None = None
    layout: str | None = None
    heads: int | None = None
    kv_heads: int | None = None
    seq_q: int | None = None
    seq_k: int | None = None
    head_dim: int | None = None
    causal: bool | None = None
    backend: str | None = None
    tile_m: int | None = None
    tile_n: int | None = None
    tile_k: int | None = None
    tile_group_m: int | None = None
    tile_num_warps: int | None = None
    tile_num_stages: int | None = None
    params_json: str | None = None  # anything else that defines the configuration
    # outcome
    status: str  # ok, unsupported, check_failed, error, oom, too_large, skipped, contended (see CONTENDED_STATUS)
    reason: str | None = None
    check_max_abs_err: float | None = None  # normalised: max |out - ref| / sqrt(k)
    check_tolerance: float | None = None
    # timing
    timing_method: str | None = None
    warmup_s: float | None = None
    time_median_ms: float | None = None
    time_p10_ms: float | None = None
    time_p90_ms: float | None = None
    time_iqr_ms: float | None = None
    time_mean_ms: float | None = None
    time_ci_low_ms: float | None = None  # ~95% order-statistic interval of the median
    time_ci_high_ms: float | None = None
    time_ci_rel: float | None = None  # half-width of that interval over the median
    samples_n: int | None = None
    calls_per_sample: int | None = None
    samples_ms: list[float] | None = None  # raw per-call time of each sample
    input_sets: int | None = None  # rotated input sets (cold mode uses > 1)
    stopped_by: str | None = None  # ci (target reached) or budget
    noisy: bool | None = None  # CI target missed, or others used > 5% of the CPUs while timing
    foreign_cpu_share: float | None = None  # other processes' share of the host CPUs while timing
    # work and rates
    flops: int | None = None
    min_bytes: int | None = None
    achieved_flops_per_s: float | None = None
    achieved_bytes_per_s: float | None = None
    # energy (per call)
    energy_method: str = "none"  # nvml-counter, nvml-sampled, rapl, estimate-tdp, none
    energy_is_estimate: bool = False
    energy_gross_j: float | None = None
    energy_net_j: float | None = None
    power_avg_w: float | None = None
    power_idle_w: float | None = None
    energy_window_s: float | None = None
    energy_calls: int | None = None
    energy_reason: str | None = None
    energy_quality: str | None = None  # e.g. "doubtful" for imported power of weak provenance
    # provenance
    host: str
    os: str
    cpu_model: str
    threads: int
    python_version: str
    perfscope_version: str
    torch_version: str | None = None
    cuda_version: str | None = None
    triton_version: str | None = None
    device_kind: str
    device_name: str
    device_index: int | None = None
    gpu_uuid: str | None = None
    driver_version: str | None = None
    compute_capability: str | None = None
    sm_count: int | None = None
    last_level_cache_bytes: int | None = None
    power_limit_w: float | None = None
    # roofline figures declared at import (--peak-flops, --bandwidth) for a device with no
    # spec row or calibrated profile; the peak is for the rows' own dtype and fp32 math
    declared_peak_flops_per_s: float | None = None
    declared_bandwidth_bytes_per_s: float | None = None
    clock_mhz_before: float | None = None  # SM clock on a GPU, core clock on a CPU
    clock_mhz_after: float | None = None
    mem_clock_mhz_before: float | None = None
    mem_clock_mhz_after: float | None = None
    temperature_c_before: float | None = None
    temperature_c_after: float | None = None
    throttle_reasons_before: int | None = None
    throttle_reasons_after: int | None = None
    throttled: bool | None = None


COLUMN_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Measurement))


def _arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """Map a field annotation to (arrow type, nullable)."""
    import pyarrow as pa  # the row definition, ids and statuses stay usable without it (perfscope estimate)

    nullable = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        (annotation,) = args
    if annotation is bool:
        return pa.bool_(), nullable
    if annotation is int:
        return pa.int64(), nullable
    if annotation is float:
        return pa.float64(), nullable
    if annotation is str:
        return pa.string(), nullable
    if annotation is datetime:
        return pa.timestamp("us", tz="UTC"), nullable
    if typing.get_origin(annotation) is list and typing.get_args(annotation) == (float,):
        return pa.list_(pa.float64()), nullable
    raise TypeError(f"no Arrow type for annotation {annotation!r}")


def arrow_schema() -> pa.Schema:
    """The Parquet/Arrow schema of ``Measurement`` rows, with the schema version as metadata."""
    import pyarrow as pa  # kept off the light estimate path, as above

    hints = typing.get_type_hints(Measurement)
    fields = []
    for f in dataclasses.fields(Measurement):
        arrow_type, nullable = _arrow_type(hints[f.name])
        fields.append(pa.field(f.name, arrow_type, nullable=nullable))
    return pa.schema(fields, metadata={SCHEMA_METADATA_KEY: str(SCHEMA_VERSION).encode()})


def config_id(config: dict[str, Any]) -> str:
    """A stable id for a configuration: hash of its non-null configuration columns.

    Only keys in ``CONFIG_COLUMNS`` count, so provenance never changes the id.
    """
    unknown = set(config) - set(CONFIG_COLUMNS)
    if unknown:
        raise ValueError(f"not configuration columns: {sorted(unknown)}")
    canonical = {k: config[k] for k in CONFIG_COLUMNS if config.get(k) is not None}
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rows_to_table(rows: list[Measurement]) -> pa.Table:
    """Arrow table of rows, validated against ``arrow_schema()``."""
    import pyarrow as pa  # kept off the light estimate path, as above

    schema = arrow_schema()
    columns = {name: [getattr(r, name) for r in rows] for name in COLUMN_NAMES}
    table = pa.Table.from_pydict(columns, schema=schema)
    for f in schema:
        if not f.nullable and table.column(f.name).null_count:
            raise ValueError(f"column {f.name!r} must not be null")
    return table
