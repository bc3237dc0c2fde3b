"""The dashboard's data layer: rows loaded once, features added once, filtered fast.

Loading reads only the columns the pages use (Arrow -> pandas, strings as categoricals),
resolves each device to a roofline device (a calibrated profile when
``perfscope.devices.registry`` has one, else the spec table, else "no peaks") and
adds the roofline features of ``perfscope.roofline.feature_columns`` once. Filtering is a
cached index per filter combination, so a page's several callbacks share one mask and a
filter change touches only the columns a figure needs.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfscope.dashboards.filters import FILTER_COLUMNS, FILTER_NAMES, filters_key
from perfscope.errors import PerfscopeError
from perfscope.schema import COLUMN_NAMES

log = logging.getLogger(__name__)

# The columns the pages read (everything but raw samples and free-form extras).
DASHBOARD_COLUMNS: tuple[str, ...] = (
    "run_id", "config_id", "measured_at", "device_key", "source",
    "kernel", "implementation", "dtype", "cache_mode", "batch", "m", "n", "k",
    "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s",
    "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups",
    "heads", "kv_heads", "seq_q", "seq_k", "head_dim", "causal", "backend",
    "tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages",
    "status", "reason", "timing_method", "time_median_ms", "time_p10_ms", "time_p90_ms",
    "time_ci_low_ms", "time_ci_high_ms", "time_ci_rel", "noisy",
    "flops", "min_bytes", "achieved_flops_per_s",
    "energy_method", "energy_is_estimate", "energy_gross_j", "energy_net_j", "power_avg_w",
    "energy_reason", "energy_quality",
    "host", "cpu_model", "threads", "perfscope_version", "torch_version", "cuda_version", "triton_version",
    "device_kind", "device_name", "driver_version", "sm_count", "power_limit_w", "throttled",
)
assert set(DASHBOARD_COLUMNS) <= set(COLUMN_NAMES), "dashboard columns must be schema columns"

# feature columns kept after feature_columns (the others are not shown anywhere)
_FEATURES_KEPT = (
    "intensity_flops_per_byte", "peak_flops_per_s", "mem_bandwidth_bytes_per_s", "launch_overhead_s",
    "ridge_point_flops_per_byte", "compute_time_s", "memory_time_s", "bound_time_s", "bound",
    "tiles", "waves", "tile_efficiency", "wave_efficiency", "device_source", "roofline_attainment",
)
MASK_CACHE_SIZE = 32
RESULT_CACHE_SIZE = 48  # page results (figures, tables) kept per selection
RELEASE_AFTER_ROWS = 200_000
# statuses whose rows hold a measured time (the others did not run and get no features)
MEASURED_STATUSES = ("ok", "contended")
UNTILED = "untiled"


@dataclass(frozen=True)
class NoPeakDevice:
    """A device with no known peaks (no spec row, not calibrated): features without a bound."""

    key: str
    name: str
    sm_count: int | None = None
    l2_bytes: int | None = None
    mem_bandwidth_bytes_per_s: float | None = None
    launch_overhead_s: float = 0.0
    launch_overhead_source: str = "none"
    source_kind: str = "none"

    @property
    def peaks_flops_per_s(self) -> dict[str, float]:
        """Peak FLOP/s per dtype: none for a device without a profile or spec."""
        return {}


@dataclass(frozen=True)
class DeviceInfo:
    """How a dataset device was resolved for the roofline, and the ceilings to draw."""

    device_key: str
    device_name: str
    used: Any  # the RooflineDevice whose peaks the features use
    spec: Any | None
    calibrated: Any | None
    note: str


def add_gap(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``gap`` (measured time / roofline bound) and ``achieved_fraction`` (its inverse),
    as ``perfscope.models.efficiency`` defines them, to a frame that has the features.

    The dashboard's one place for the gap: it reuses the models' measured latency and
    the bound already computed at load, instead of recomputing the features per page.
    NaN where the row has no time or no bound.
    """
    from perfscope.models.efficiency import measured_latency_s

    measured = measured_latency_s(frame)
    bound = frame["bound_time_s"].to_numpy(dtype=float) if "bound_time_s" in frame else np.full(len(frame), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = np.isfinite(bound) & (bound > 0) & np.isfinite(measured)
        frame["gap"] = np.where(valid, measured / bound, np.nan)
        frame["achieved_fraction"] = np.where(valid, bound / measured, np.nan)
    return frame


def resolve_device(device_key: str, device_name: str, *, sm_count: float | None = None) -> DeviceInfo:
    """The roofline device for a dataset device: calibrated profile, else spec row, else none.

    The lookup is ``perfscope.devices.registry.resolve_row_device`` (by key, then by name);
    the spec row is kept beside a calibrated profile so pages can draw both ceilings.
    """
    from perfscope.devices.registry import find_device_spec, resolve_row_device

    found = resolve_row_device(str(device_key) if device_key else None, str(device_name) if device_name else None)
    if found is not None and found[1] == "calibrated":
        calibrated = found[0]
        spec = find_device_spec(str(device_name)) if device_name else None
        spec = spec or find_device_spec(device_key)
        return DeviceInfo(device_key, device_name, calibrated, spec, calibrated,
                          f"{device_key}: calibrated peaks (perfscope calibrate)")
    if found is not None:
        spec = found[0]
        return DeviceInfo(device_key, device_name, spec, spec, None,
                          f"{device_key}: spec-sheet peaks of {spec.device_id} (not calibrated)")
    sms = int(sm_count) if sm_count is not None and not math.isnan(sm_count) else None
    none = NoPeakDevice(key=device_key, name=device_name, sm_count=sms)
    return DeviceInfo(device_key, device_name, none, None, None,
                      f"{device_key}: no peaks (not in the spec table, not calibrated), so no roofline bound: "
                      "run `perfscope calibrate` on that machine")


def find_sample_datasets() -> list[Path]:
    """Datasets shipped under ``perfscope.data/samples`` (directories with the dataset marker)."""
    from perfscope.store import find_datasets

    try:
        root = resources.files("perfscope.data").joinpath("samples")
        base = Path(str(root))
    except (ModuleNotFoundError, TypeError):
        return []
    if not base.is_dir():
        return []
    return find_datasets(base)


@dataclass
class DashboardData:
    """All rows with their features, the filter options, and notes about how they were read."""

    rows: pd.DataFrame
    datasets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    devices: dict[str, DeviceInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._results: OrderedDict[tuple, Any] = OrderedDict()
        self.options: dict[str, list[str]] = self._filter_options()

    # -- construction ---------------------------------------------------------------
    @classmethod
    def load(cls, datasets: Iterable[str | Path] | None = None) -> DashboardData:
        """Read datasets (or the shipped sample when none) and add features.

        An unreadable dataset is reported in ``problems``, not raised, so one bad path
        does not keep the others from the dashboard.
        """
        import pyarrow as pa

        from perfscope.store import ProfileStore

        paths = [Path(p) for p in datasets] if datasets else find_sample_datasets()
        notes: list[str] = []
        if not datasets:
            notes.append("no dataset given: showing the sample profile shipped with perfscope" if paths else
                         "no data: start the dashboard with a dataset (perfscope dashboard DATASET); "
                         "collect one with `perfscope collect`")
        tables, problems, names = [], [], []
        for path in paths:
            try:
                store = ProfileStore(path)
                result = store.read([*DASHBOARD_COLUMNS, *_param_columns(store)])
            except PerfscopeError as exc:
                problems.append(f"{path}: {exc}")
                continue
            problems.extend(str(p) for p in result.problems)
            if result.table.num_rows:
                label = pa.DictionaryArray.from_arrays(pa.array(np.zeros(result.table.num_rows, dtype=np.int32)),
                                                       pa.array([str(path)]))
                tables.append(result.table.append_column("dataset", label))
            names.append(str(path))
        if tables:
            table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
            rows = table.to_pandas(strings_to_categorical=True, self_destruct=True)
        else:
            rows = pd.DataFrame({c: pd.Series(dtype=float) for c in DASHBOARD_COLUMNS})
            if paths:
                notes.append("the datasets hold no rows")
        return cls.from_rows(rows, datasets=names, problems=problems, notes=notes)

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, *, datasets: Sequence[str] = (), problems: Sequence[str] = (),
                  notes: Sequence[str] = ()) -> DashboardData:
        """Dashboard data from a frame of rows (schema columns; missing ones become null)."""
        notes = list(notes)
        rows, devices = _add_features(_prepare(rows), notes)
        data = cls(rows=rows, datasets=list(datasets), problems=list(problems), notes=notes, devices=devices)
        release_freed_memory()
        return data

    # -- filtering ----------------------------------------------------------------------
    def index(self, filters: Mapping[str, Sequence[object]] | None) -> np.ndarray:
        """Positions of the rows that pass ``filters`` (cached per filter combination)."""
        key = filters_key(filters)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        mask = np.ones(len(self.rows), dtype=bool)
        for name, values in key:
            if values:
                mask &= self._mask(name, values)
        result = np.flatnonzero(mask)
        self._cache[key] = result
        if len(self._cache) > MASK_CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def select(self, filters: Mapping[str, Sequence[object]] | None,
               columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The filtered rows, only ``columns`` (those that exist) when given."""
        idx = self.index(filters)
        frame = self.rows
        if columns is not None:
            frame = frame[[c for c in dict.fromkeys(columns) if c in frame.columns]]
        if len(idx) == len(frame):
            return frame
        return frame.iloc[idx]

    def cached(self, name: str, filters: Mapping[str, Sequence[object]] | None, compute: Any, *extra: Any) -> Any:
        """``compute()``'s result for (``name``, the filters, ``extra``), kept for the last
        ``RESULT_CACHE_SIZE`` calls: going back to a selection is instant."""
        key = (name, filters_key(filters), extra)
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        value = compute()
        if len(self.rows) >= RELEASE_AFTER_ROWS:
            release_freed_memory()  # a large selection's temporaries: back to the OS, not kept in RSS
        self._results[key] = value
        if len(self._results) > RESULT_CACHE_SIZE:
            self._results.popitem(last=False)
        return value

    def count(self, filters: Mapping[str, Sequence[object]] | None) -> int:
        """Number of rows passing ``filters``."""
        return int(len(self.index(filters)))

    def _mask(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        column = FILTER_COLUMNS[name]
        if column not in self.rows:
            return np.zeros(len(self.rows), dtype=bool)
        series = self.rows[column]
        if name == "batch":
            numbers = series.to_numpy(dtype=float)
            mask = np.zeros(len(numbers), dtype=bool)
            for value in values:
                if _is_number(value):
                    mask |= numbers == float(value)
            return mask
        if isinstance(series.dtype, pd.CategoricalDtype):
            # a lookup table over the small integer codes (np.isin sorts: 30x slower here)
            wanted = series.cat.categories.get_indexer(list(values))
            table = np.zeros(len(series.cat.categories) + 1, dtype=bool)  # the last slot: code -1 (missing)
            table[wanted[wanted >= 0]] = True
            return table[series.cat.codes.to_numpy()]
        return series.isin(list(values)).to_numpy()

    def _filter_options(self) -> dict[str, list[str]]:
        options: dict[str, list[str]] = {}
        for name in FILTER_NAMES:
            column = FILTER_COLUMNS[name]
            if column not in self.rows or not len(self.rows):
                options[name] = []
                continue
            series = self.rows[column]
            if isinstance(series.dtype, pd.CategoricalDtype):
                present = series.cat.remove_unused_categories().cat.categories
                values = [str(v) for v in present]
            else:
                values = [str(v) for v in pd.unique(series.dropna())]
            if name == "batch":
                values = [_format_number(float(v)) for v in sorted(float(v) for v in values)]
            else:
                values = sorted(values)
            options[name] = values
        return options

    def summary_line(self) -> str:
        """"12 rows from 1 dataset (cpu-amd-epyc)" for the header."""
        n = len(self.rows)
        devices = ", ".join(self.options.get("device", [])[:4]) or "no device"
        return f"{n:,} rows from {len(self.datasets)} dataset(s) ({devices})"


def _param_columns(store: Any) -> list[str]:
    """The tunable-parameter columns (``param_<name>``) of a dataset's files, from their schemas."""
    import pyarrow.parquet as pq

    from perfscope.store_files import is_param_column

    names: dict[str, None] = {}
    for path in store.files():
        try:
            names.update(dict.fromkeys(n for n in pq.read_schema(path).names if is_param_column(n)))
        except (OSError, ValueError):
            continue  # an unreadable file: read() reports it
    return list(names)


def param_columns(rows: pd.DataFrame) -> list[str]:
    """The ``param_<name>`` columns of a frame."""
    return [c for c in rows.columns if str(c).startswith("param_")]


def _prepare(rows: pd.DataFrame) -> pd.DataFrame:
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


def _compact_sizes(rows: pd.DataFrame) -> None:
    """Halve the memory of size columns that float32 holds exactly (most are empty for a
    family: a GEMM has no conv or attention sizes)."""
    for column in _SIZE_COLUMNS:
        if column not in rows or rows[column].dtype.kind not in "iuf":
            continue
        values = rows[column].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if not finite.size or (np.abs(finite).max() < _FLOAT32_EXACT and (finite == np.round(finite)).all()):
            rows[column] = values.astype(np.float32)


def release_freed_memory() -> None:
    """Give memory freed while loading back to the operating system (Arrow's pool and, on
    glibc, malloc's free lists), so the server's RSS is what the data holds, not its peak."""
    import gc

    gc.collect()
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


def _shape_column(rows: pd.DataFrame) -> pd.Categorical:
    """Readable shape per row (``figures.common.shape_labels``), built once per configuration."""
    from perfscope.dashboards.figures.common import shape_labels

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
    "head_dim", "causal", "tile_m", "tile_n", "flops", "min_bytes", "time_median_ms",
)


def _add_features(rows: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, dict[str, DeviceInfo]]:
    """Roofline features (``perfscope.roofline.feature_columns``, once per device, on the
    columns it reads) written into ``rows``, plus the gap.

    Each device's features are computed on a narrow copy of its rows and scattered back
    by position: no concatenation or reordering of the full, wide frame. Only rows with a
    measured status get features; a device whose rows cannot be featurised is reported in
    ``notes`` and drawn without them.
    """
    from perfscope.roofline import feature_columns

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
        for code, key in enumerate(keys):
            of_device = codes == code
            first = int(np.argmax(of_device))
            name, sm = names.iloc[first], sms.iloc[first]
            info = resolve_device(str(key), "" if pd.isna(name) else str(name),
                                  sm_count=None if pd.isna(sm) else float(sm))
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
    return add_gap(frame), devices


def ceilings_frame(devices: Mapping[str, DeviceInfo], dtypes: Iterable[str] | None = None) -> pd.DataFrame:
    """Roofline ceilings per (device, source, dtype): spec sheet and, when present, calibrated."""
    records = []
    wanted = set(dtypes) if dtypes is not None else None
    for key, info in devices.items():
        for source, device in (("spec", info.spec), ("calibrated", info.calibrated)):
            if device is None:
                continue
            bandwidth = device.mem_bandwidth_bytes_per_s
            for dtype, peak in device.peaks_flops_per_s.items():
                if wanted is not None and dtype not in wanted:
                    continue
                records.append({"device_key": key, "source": source, "dtype": dtype,
                                "peak_flops_per_s": float(peak),
                                "mem_bandwidth_bytes_per_s": float(bandwidth) if bandwidth else math.nan})
    return pd.DataFrame.from_records(records, columns=["device_key", "source", "dtype", "peak_flops_per_s",
                                                       "mem_bandwidth_bytes_per_s"])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def distinct(series: pd.Series) -> list[str]:
    """The distinct non-null values of a column as strings (fast on categoricals)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = np.unique(series.cat.codes.to_numpy())
        categories = series.cat.categories
        return [str(categories[c]) for c in codes if c >= 0]
    return sorted(str(v) for v in pd.unique(series.dropna()))
