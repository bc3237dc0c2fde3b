"""Columns the dashboard adds once at load: compact dtypes, labels, roofline features, the gap.

``prepare_rows`` makes every schema column present (null when missing), turns strings
into categoricals and sizes into compact numbers, and adds the derived columns (batch
size, tile and shape labels, time in seconds); ``add_features`` adds the roofline
features of ``perfscope.roofline.feature_columns`` per device and the gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from perfscope.dashboards.figures.common import shape_labels
from perfscope.dashboards.loading import DASHBOARD_COLUMNS
from perfscope.dashboards.roofline_devices import DeviceInfo, resolve_device
from perfscope.devices.declared import declared_devices
from perfscope.errors import PerfscopeError
from perfscope.models.efficiency import measured_latency_s
from perfscope.roofline import feature_columns

# feature columns kept after feature_columns (the others are not shown anywhere)
_FEATURES_KEPT = (
    "intensity_flops_per_byte", "peak_flops_per_s", "mem_bandwidth_bytes_per_s", "launch_overhead_s",
    "ridge_point_flops_per_byte", "compute_time_s", "memory_time_s", "bound_time_s", "bound",
    "tiles", "waves", "tile_efficiency", "wave_efficiency", "device_source", "roofline_attainment",
)
# statuses whose rows hold a measured time (the others did not run and get no features)
MEASURED_STATUSES = ("ok", "contended")
UNTILED = "untiled"


def add_gap(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``gap`` (measured time / roofline bound) and ``achieved_fraction`` (its inverse),
    as ``perfscope.models.efficiency`` defines them, to a frame that has the features.

    The dashboard's one place for the gap: it reuses the models' measured latency and
    the bound already computed at load, instead of recomputing the features per page.
    NaN where the row has no time or no bound.
    """
    measured = measured_latency_s(frame)
    bound = frame["bound_time_s"].to_numpy(dtype=float) if "bound_time_s" in frame else np.full(len(frame), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = np.isfinite(bound) & (bound > 0) & np.isfinite(measured)
        frame["gap"] = np.where(valid, measured / bound, np.nan)
        frame["achieved_fraction"] = np.where(valid, bound / measured, np.nan)
    return frame


def prepare_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Schema columns present (null when missing), categoricals, numeric sizes and derived columns."""
    rows = rows.reset_index(drop=True)
    missing = [c for c in DASHBOARD_COLUMNS if c not in rows.columns]
    if missing:
        rows = pd.concat([rows, pd.DataFrame({c: np.full(len(rows), np.nan) for c in missing})], axis=1)
    for column in ("device_key", "kernel", "implementation", "dtype", "status", "cache_mode", "energy_method",
                   "source", "host", "device_name", "device_kind", "timing_method", "run_id", "config_id"):
        if not isinstance(rows[column].dtype, pd.CategoricalDtype):
            rows[column] = rows[column].astype("category")
    numeric = ("batch", "m", "n", "k", "conv_n", "conv_k", "tile_m", "tile_n", "tile_k", "flops", "min_bytes",
               "time_median_ms", "energy_gross_j", "energy_net_j", "achieved_flops_per_s", "sm_count")
    for column in numeric:
        if rows[column].dtype.kind not in "iuf":
            rows[column] = pd.to_numeric(rows[column], errors="coerce").astype(float)
    for column in ("noisy", "throttled", "energy_is_estimate"):  # flags: True, or not (None counts as not)
        if rows[column].dtype != bool:
            rows[column] = rows[column].to_numpy() == True  # noqa: E712
    _compact_sizes(rows)
    is_conv = (rows["kernel"] == "conv").to_numpy()
    rows["batch_size"] = np.where(is_conv, rows["conv_n"].to_numpy(dtype=float),
                                  rows["batch"].to_numpy(dtype=float))
    rows["tile"] = _tile_labels(rows)
    rows["shape"] = _shape_column(rows)
    rows["time_s"] = rows["time_median_ms"].to_numpy(dtype=float) / 1e3
    return rows


# configuration sizes: integers, kept as float32 when every value fits its 24-bit mantissa exactly
_SIZE_COLUMNS = ("conv_c", "conv_h", "conv_w", "conv_r", "conv_s", "stride_h", "stride_w", "pad_h", "pad_w",
                 "dil_h", "dil_w", "groups", "heads", "kv_heads", "seq_q", "seq_k", "head_dim", "tile_group_m",
                 "tile_num_warps", "tile_num_stages", "threads", "power_limit_w")
_FLOAT32_EXACT = 2.0**24


def _compact_sizes(rows: pd.DataFrame, columns: tuple[str, ...] = _SIZE_COLUMNS) -> None:
    """Halve the memory of size columns that float32 holds exactly (most are empty for a
    family: a GEMM has no conv or attention sizes)."""
    for column in columns:
        if column not in rows or rows[column].dtype.kind not in "iuf":
            continue
        values = rows[column].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if not finite.size or (np.abs(finite).max() < _FLOAT32_EXACT and (finite == np.round(finite)).all()):
            rows[column] = values.astype(np.float32)


def _shape_column(rows: pd.DataFrame) -> pd.Categorical:
    """Readable shape per row (``figures.common.shape_labels``), built once per configuration."""
    if not len(rows):
        return pd.Categorical([])
    codes, _ = pd.factorize(rows["config_id"], use_na_sentinel=True)
    labels = np.empty(len(rows), dtype=object)
    known = codes >= 0
    if known.any():
        unique_codes, first = np.unique(codes[known], return_index=True)
        positions = np.flatnonzero(known)[first]
        per_config = np.empty(int(unique_codes.max()) + 1, dtype=object)
        per_config[unique_codes] = shape_labels(rows.iloc[positions])
        labels[known] = per_config[codes[known]]
    if (~known).any():
        labels[~known] = shape_labels(rows.iloc[np.flatnonzero(~known)])
    return pd.Categorical(labels)


def _tile_labels(rows: pd.DataFrame) -> pd.Categorical:
    """"128x64x32" per row ("untiled" for library kernels), labels built for unique tiles only."""
    tiles = rows[["tile_m", "tile_n", "tile_k"]].to_numpy(dtype=float)
    if not len(tiles):
        return pd.Categorical([], categories=[UNTILED])
    # one integer key per tile (0 for a missing size), factorised by hashing: no sort of 1M rows
    parts = np.where(np.isfinite(tiles), np.clip(tiles, 0, 2**20 - 2) + 1, 0).astype(np.int64)
    key = (parts[:, 0] << 42) | (parts[:, 1] << 21) | parts[:, 2]
    codes, uniques = pd.factorize(key)
    labels = []
    for value in uniques:
        tm, tn, tk = (int(value) >> 42) - 1, ((int(value) >> 21) & (2**21 - 1)) - 1, (int(value) & (2**21 - 1)) - 1
        if tm < 0 and tn < 0:
            labels.append(UNTILED)
            continue
        text = "x".join(str(v) if v >= 0 else "?" for v in (tm, tn))
        labels.append(text + (f"x{tk}" if tk >= 0 else ""))
    categories = list(dict.fromkeys(labels))
    position = {label: i for i, label in enumerate(categories)}
    mapping = np.array([position[label] for label in labels], dtype=np.int32)
    return pd.Categorical.from_codes(mapping[codes], categories=categories)


# the columns feature_columns reads (configuration, work, time): a narrow copy per device
_FEATURE_INPUTS = (
    "kernel", "dtype", "batch", "m", "n", "k", "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s",
    "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups", "heads", "kv_heads", "seq_q", "seq_k",
    "head_dim", "causal", "tile_m", "tile_n", "flops", "min_bytes", "time_median_ms", "fp32_math",
)


def add_features(rows: pd.DataFrame, notes: list[str],
                 datasets: Sequence[str] = ()) -> tuple[pd.DataFrame, dict[str, DeviceInfo]]:
    """Roofline features (``perfscope.roofline.feature_columns``, once per device, on the
    columns it reads) written into ``rows``, plus the gap.

    Each device's features are computed on a narrow copy of its rows and scattered back
    by position: no concatenation or reordering of the full, wide frame. Only rows with a
    measured status get features; a device whose rows cannot be featurised is reported in
    ``notes`` and drawn without them. A profile one of ``datasets`` carries for a device wins
    over the viewer's own calibration (``roofline_devices.resolve_device``).
    """
    devices: dict[str, DeviceInfo] = {}
    n = len(rows)
    scattered = ("flops", "min_bytes", *(c for c in _FEATURES_KEPT if c not in ("bound", "device_source")))
    columns: dict[str, Any] = {c: np.full(n, np.nan) for c in scattered}
    bound_codes = np.full(n, -1, dtype=np.int8)
    source_codes = np.full(n, -1, dtype=np.int8)
    sources: list[str] = []
    if n:
        codes, keys = pd.factorize(rows["device_key"])
        names, sms = rows["device_name"], rows["sm_count"]
        narrow = rows[[c for c in _FEATURE_INPUTS if c in rows.columns]]
        measured = rows["status"].isin(MEASURED_STATUSES).to_numpy()
        declared = declared_devices(rows)  # figures given at import, for devices with no profile or spec row
        for code, key in enumerate(keys):
            of_device = codes == code
            first = int(np.argmax(of_device))
            name, sm = names.iloc[first], sms.iloc[first]
            info = resolve_device(str(key), "" if pd.isna(name) else str(name),
                                  sm_count=None if pd.isna(sm) else float(sm), declared=declared.get(str(key)),
                                  datasets=datasets)
            devices[str(key)] = info
            if info.used.source_kind not in sources:
                sources.append(info.used.source_kind)
            source_codes[of_device] = sources.index(info.used.source_kind)
            # rows that did not run (error, too large, ...) are listed, not featurised: their
            # sizes may be the very reason they failed (a 10^8 GEMM's FLOPs overflow int64)
            positions = np.flatnonzero(of_device & measured)
            if not len(positions):
                continue
            part = narrow if len(positions) == n else narrow.iloc[positions]
            try:
                features = feature_columns(part, info.used)
            except PerfscopeError as exc:
                notes.append(f"{key}: no roofline features ({exc})")
                continue
            for column in columns:
                if column in features:
                    columns[column][positions] = np.asarray(features[column], dtype=float)
            bound = pd.Categorical(features["bound"], categories=["launch", "memory", "compute"])
            bound_codes[positions] = bound.codes
    frame = rows.assign(**columns)
    frame["bound"] = pd.Categorical.from_codes(bound_codes, categories=["launch", "memory", "compute"])
    frame["device_source"] = pd.Categorical.from_codes(source_codes, categories=sources or ["none"])
    if n and not frame["achieved_flops_per_s"].notna().all():
        with np.errstate(divide="ignore", invalid="ignore"):
            computed = frame["flops"].to_numpy(dtype=float) / frame["time_s"].to_numpy(dtype=float)
        existing = frame["achieved_flops_per_s"].to_numpy(dtype=float)
        frame["achieved_flops_per_s"] = np.where(np.isfinite(existing), existing, computed)
    frame = add_gap(frame)
    _compact_after_features(frame)
    return frame, devices


# derived columns only shown or compared loosely (to a 2% tolerance at most): float32 is precise enough
_FLOAT32_FEATURES = ("tile_efficiency", "wave_efficiency", "waves", "tiles", "roofline_attainment",
                     "ridge_point_flops_per_byte", "compute_time_s", "memory_time_s", "launch_overhead_s",
                     "time_ci_rel", "power_avg_w")
# sizes the features were computed from (in float64): float32 when it holds every value exactly
_EXACT_SIZES = ("batch", "m", "n", "k", "conv_n", "conv_k", "tile_m", "tile_n", "tile_k", "sm_count", "batch_size")


def _compact_after_features(frame: pd.DataFrame) -> None:
    """About 90 MB less per million rows, once the features no longer need float64 inputs:
    display-only features and exactly representable sizes as float32, the causal flag as
    a nullable boolean (not Python objects)."""
    for column in _FLOAT32_FEATURES:
        if column in frame and frame[column].dtype == np.float64:
            frame[column] = frame[column].to_numpy(dtype=np.float32)
    _compact_sizes(frame, _EXACT_SIZES)
    if "causal" in frame and frame["causal"].dtype == object:
        frame["causal"] = frame["causal"].astype("boolean")
    release_replaced_columns(frame)


def release_replaced_columns(frame: pd.DataFrame) -> int:
    """Copy out the columns that are views into a wider array whose other columns were
    replaced (a float64 column set to float32, a size made numeric), so that array is freed;
    the bytes freed.

    pandas keeps columns of one dtype in one 2-D block; replacing some of them leaves the
    others as views on the whole block, which then stays in memory, replaced columns and
    all (at 1M rows: 312 MB kept for 48 MB of columns still in use).
    """
    used: dict[int, list[str]] = {}
    roots: dict[int, np.ndarray] = {}
    for column in frame.columns:
        if not isinstance(frame[column].dtype, np.dtype):
            continue  # categoricals, nullable and timezone-aware columns: 1-D arrays of their own
        array = frame[column].to_numpy()
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        if root is not array:
            roots[id(root)] = root
            used.setdefault(id(root), []).append(column)
    freed = 0
    for key, columns in used.items():
        in_use = sum(frame[c].to_numpy().nbytes for c in columns)
        if roots[key].nbytes > in_use:
            freed += roots[key].nbytes - in_use
            for column in columns:
                frame[column] = frame[column].to_numpy(copy=True)
    return freed
