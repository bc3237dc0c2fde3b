"""Roofline features: the ONE place every model and the dashboard derive features from.

Pure and vectorised: numpy arrays / pandas columns in, arrays out (no per-row Python
on the GEMM path). Work and traffic come from ``perfscope.features`` (DESIGN.md
section 5); this module adds the roofline and the quantisation features.

Formulas (per row; ``s`` = bytes per element of the dtype):

* ``flops``, ``min_bytes``: the row's own columns where present (collectors fill them
  from ``perfscope.features``), otherwise computed from the configuration columns by
  ``perfscope.features`` (GEMM: 2·b·m·n·k and s·b·(m·k + k·n + m·n)), found by name
  per kernel family (``gemm_*``, ``conv2d_*``, ``attention_*``) and called with the
  configuration columns; functions that only take Python ints (conv, attention) are
  called row by row, so only rows without stored work pay that. A configuration the
  function rejects (an empty conv output) gets NaN work.
* ``intensity_flops_per_byte`` I = flops / min_bytes.
* ``log10_flops``, ``log10_min_bytes``, ``log10_intensity``, ``log10_bound_time_s``:
  base-10 logarithms (NaN where the value is not positive).
* ``peak_flops_per_s``: the device's peak for the row's dtype (NaN when it has none);
  ``mem_bandwidth_bytes_per_s`` B; ``launch_overhead_s`` L (calibrated, or assumed for
  a spec-sheet device: see ``launch_overhead_source``).
* ``ridge_point_flops_per_byte`` = peak / B: the intensity where the two roofs meet;
  ``intensity_over_ridge`` = I / ridge (> 1: compute side of the ridge).
* ``compute_time_s`` = flops / peak; ``memory_time_s`` = min_bytes / B;
  ``bound_time_s`` = max(compute_time_s, memory_time_s, L), the roofline lower bound
  with the launch floor. NaN when the device has no peak for the dtype.
* ``bound``: ``launch`` when L exceeds both compute and memory time, else ``memory``
  when memory time exceeds compute time, else ``compute`` (a pandas Categorical).
* Tile and wave quantisation over the kernel's output grid (GEMM: batch x m x n;
  conv as implicit GEMM: groups x (N·P·Q) x (K/g); attention: (batch·heads) x seq_q
  x head_dim, one tile across head_dim):
  ``tiles`` = batch·ceil(m/tm)·ceil(n/tn);
  ``waves`` = ceil(tiles / (SMs · blocks_per_sm));
  ``tile_efficiency`` = m·n / (ceil(m/tm)·tm · ceil(n/tn)·tn)  (useful / padded work);
  ``wave_efficiency`` = tiles / (waves · SMs · blocks_per_sm).
  ``tm``, ``tn`` are the row's ``tile_m``/``tile_n`` when set; untiled library kernels
  (cuBLAS, torch.matmul, cuDNN) get the default 128 x 128 tile and 1 block per SM, a
  common large CUTLASS/cuBLAS tile: an approximation, since the library picks its own.
  For a calibrated CPU profile "SMs" is the number of worker threads.
* ``min_bytes_over_l2`` = min_bytes / L2 size (how far the working set exceeds the cache).
* ``roofline_attainment`` = bound_time_s / measured median time (only when the rows
  carry ``time_median_ms``): 1 means the kernel runs at its bound.
* The device's own figures, the same on every row: ``device_key``, ``device_source``
  (``spec`` or ``calibrated``), ``device_sm_count``, ``device_l2_bytes`` and
  ``device_peak_<dtype>_flops_per_s`` for fp32, tf32, fp16, bf16 and fp8.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from perfscope import features
from perfscope.devicespecs import RooflineDevice
from perfscope.dtypes import DTYPES

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported inside the functions that take frames: the array functions
# (roofline_bound, tile_wave, ridge_point, arithmetic_intensity) need only numpy, so a
# light caller (one `perfscope estimate`) does not pay pandas' import time.

DEFAULT_TILE_M = 128  # default output tile of untiled library kernels (see module doc)
DEFAULT_TILE_N = 128
DEFAULT_BLOCKS_PER_SM = 1

_CONCAT_MAX_ROWS = 50_000

REGIMES = ("launch", "memory", "compute")  # codes 0, 1, 2 of the `bound` column; -1 unknown

DEVICE_PEAK_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8_e4m3")  # fp8 formats share one peak

FEATURE_COLUMNS = (
    "flops", "min_bytes", "dtype_bytes", "intensity_flops_per_byte",
    "log10_flops", "log10_min_bytes", "log10_intensity",
    "peak_flops_per_s", "mem_bandwidth_bytes_per_s", "launch_overhead_s", "launch_overhead_source",
    "ridge_point_flops_per_byte", "intensity_over_ridge",
    "compute_time_s", "memory_time_s", "bound_time_s", "log10_bound_time_s", "bound",
    "tile_m_used", "tile_n_used", "tiles", "waves", "tile_efficiency", "wave_efficiency",
    "min_bytes_over_l2",
    "device_key", "device_source", "device_sm_count", "device_l2_bytes",
    *(f"device_peak_{d.split('_')[0]}_flops_per_s" for d in DEVICE_PEAK_DTYPES),
)
"""Columns ``feature_frame`` adds (plus ``roofline_attainment`` when times are present)."""


class RooflineBound(NamedTuple):
    """Roofline times per row (seconds) and the regime code (index into ``REGIMES``)."""

    compute_time_s: np.ndarray
    memory_time_s: np.ndarray
    bound_time_s: np.ndarray
    regime: np.ndarray  # int8: 0 launch, 1 memory, 2 compute, -1 unknown


class TileWave(NamedTuple):
    """Tile and wave quantisation per row."""

    tiles: np.ndarray
    waves: np.ndarray
    tile_efficiency: np.ndarray
    wave_efficiency: np.ndarray


def arithmetic_intensity(flops: Any, min_bytes: Any) -> np.ndarray:
    """FLOPs per byte of minimum traffic; NaN where the traffic is not positive."""
    flops = np.asarray(flops, dtype=float)
    min_bytes = np.asarray(min_bytes, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(min_bytes > 0, flops / min_bytes, np.nan)


def ridge_point(peak_flops_per_s: Any, mem_bandwidth_bytes_per_s: Any) -> np.ndarray:
    """Intensity (FLOP/byte) where the compute roof meets the memory roof: peak / bandwidth."""
    peak = np.asarray(peak_flops_per_s, dtype=float)
    bandwidth = np.asarray(mem_bandwidth_bytes_per_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bandwidth > 0, peak / bandwidth, np.nan)


def roofline_bound(flops: Any, min_bytes: Any, peak_flops_per_s: Any, mem_bandwidth_bytes_per_s: Any,
                   launch_overhead_s: Any = 0.0) -> RooflineBound:
    """Lower bound on run time: max(flops/peak, bytes/bandwidth, launch floor), with its regime.

    Launch-bound when the launch floor exceeds both the compute and the memory time;
    otherwise memory-bound when memory time exceeds compute time, else compute-bound.
    A NaN input (for example no peak for the dtype) gives a NaN bound and regime -1.
    """
    flops, min_bytes, peak, bandwidth, launch = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (flops, min_bytes, peak_flops_per_s,
                                                mem_bandwidth_bytes_per_s, launch_overhead_s)))
    with np.errstate(divide="ignore", invalid="ignore"):
        compute = np.where(peak > 0, flops / peak, np.nan)
        memory = np.where(bandwidth > 0, min_bytes / bandwidth, np.nan)
    work = np.maximum(compute, memory)  # NaN propagates
    bound = np.maximum(work, launch)
    regime = np.where(launch > work, 0, np.where(memory > compute, 1, 2)).astype(np.int8)
    regime[np.isnan(bound)] = -1
    return RooflineBound(compute, memory, bound, regime)


def regime_names(regime: Any) -> pd.Categorical:
    """The regime codes of ``roofline_bound`` as a Categorical of ``REGIMES`` (NaN for -1)."""
    import pandas as pd

    return pd.Categorical.from_codes(np.asarray(regime, dtype=np.int8), categories=list(REGIMES))


def tile_wave(m: Any, n: Any, *, sm_count: Any, batch: Any = 1, tile_m: Any = DEFAULT_TILE_M,
              tile_n: Any = DEFAULT_TILE_N, blocks_per_sm: Any = DEFAULT_BLOCKS_PER_SM) -> TileWave:
    """Tile and wave quantisation of a batch x m x n output grid cut into tile_m x tile_n tiles.

    tiles = batch·ceil(m/tm)·ceil(n/tn); waves = ceil(tiles/(SMs·blocks_per_sm));
    tile efficiency = m·n/(padded m·n); wave efficiency = tiles/(waves·SMs·blocks_per_sm).
    """
    m, n, batch, tm, tn, sms, bps = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (m, n, batch, tile_m, tile_n, sm_count, blocks_per_sm)))
    with np.errstate(divide="ignore", invalid="ignore"):
        tiles_m = np.ceil(m / tm)
        tiles_n = np.ceil(n / tn)
        tiles = batch * tiles_m * tiles_n
        slots = sms * bps
        waves = np.ceil(tiles / slots)
        tile_eff = (m * n) / (tiles_m * tm * tiles_n * tn)
        wave_eff = tiles / (waves * slots)
    return TileWave(tiles, waves, tile_eff, wave_eff)


# ---- work and traffic: dispatch on the `kernel` column -------------------------------

# Functions in perfscope.features per kernel family, looked up by name when called so
# that families added there later (conv, attention) are picked up without changes here.
_WORK_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gemm": (("gemm_flops",), ("gemm_min_bytes",)),
    "conv": (("conv2d_flops", "conv_flops"), ("conv2d_min_bytes", "conv_min_bytes")),
    "attention": (("attention_flops",), ("attention_min_bytes",)),
}
# Parameter name of a features function -> configuration column, per family (a
# parameter named like a column maps to it directly).
_PARAM_ALIASES: dict[str, dict[str, str]] = {
    "gemm": {"b": "batch"},
    "conv": {"n": "conv_n", "batch": "conv_n", "c": "conv_c", "h": "conv_h", "w": "conv_w", "k": "conv_k",
             "r": "conv_r", "s": "conv_s", "g": "groups", "stride": "stride_h", "pad": "pad_h",
             "padding": "pad_h", "dilation": "dil_h"},
    "attention": {"b": "batch", "h": "heads", "n_heads": "heads", "hkv": "kv_heads", "h_kv": "kv_heads",
                  "n_kv_heads": "kv_heads", "nq": "seq_q", "n_q": "seq_q", "nk": "seq_k", "n_k": "seq_k",
                  "d": "head_dim"},
}
_COLUMN_DEFAULTS = {"batch": 1, "groups": 1, "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0,
                    "dil_h": 1, "dil_w": 1, "causal": False}
_FILL_FROM = {"kv_heads": "heads"}  # a missing kv_heads means one KV head per query head


def work_and_traffic(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(flops, min_bytes) per row as float arrays.

    The row's own ``flops``/``min_bytes`` are kept where present; missing ones are
    computed by the ``perfscope.features`` function of the row's kernel family (NaN when
    that family has none yet).
    """
    return _work_and_traffic(rows, _Codes(rows))


class _Codes:
    """``kernel`` and ``dtype`` factorised once (string comparisons on 1M rows are slow)."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.size = len(rows)
        self.kernel_codes, self.kernels = self._factorize(rows, "kernel")
        self.dtype_codes, self.dtypes = self._factorize(rows, "dtype")

    def _factorize(self, rows: pd.DataFrame, name: str) -> tuple[np.ndarray, list[Any]]:
        import pandas as pd

        if name not in rows:
            return np.full(self.size, -1, dtype=np.intp), []
        codes, uniques = pd.factorize(rows[name])
        return np.asarray(codes), list(uniques)

    def is_kernel(self, kernel: str) -> np.ndarray:
        if kernel not in self.kernels:
            return np.zeros(self.size, dtype=bool)
        return self.kernel_codes == self.kernels.index(kernel)

    def per_dtype(self, mapping: dict[str, float]) -> np.ndarray:
        """``mapping[dtype]`` per row (NaN where the dtype is missing or unmapped)."""
        table = np.array([float(mapping.get(d, math.nan)) for d in self.dtypes] + [math.nan])
        return table[self.dtype_codes]  # code -1 (missing) picks the trailing NaN


def _work_and_traffic(rows: pd.DataFrame, codes: _Codes) -> tuple[np.ndarray, np.ndarray]:
    size = len(rows)
    flops = _float_column(rows, "flops", size)
    min_bytes = _float_column(rows, "min_bytes", size)
    missing = np.isnan(flops) | np.isnan(min_bytes)
    if not missing.any():
        return flops, min_bytes
    group = codes.kernel_codes * (len(codes.dtypes) + 1) + codes.dtype_codes
    for key in np.unique(group[missing]):
        kcode, dcode = divmod(int(key), len(codes.dtypes) + 1)
        if kcode < 0 or dcode < 0 or dcode >= len(codes.dtypes):
            continue  # no kernel or no dtype: nothing to compute from
        target = np.flatnonzero(missing & (group == key))
        computed = _compute_work(str(codes.kernels[kcode]), str(codes.dtypes[dcode]), rows.iloc[target])
        if computed is None:
            continue
        f, b = computed
        flops[target] = np.where(np.isnan(flops[target]), f, flops[target])
        min_bytes[target] = np.where(np.isnan(min_bytes[target]), b, min_bytes[target])
    return flops, min_bytes


def _compute_work(kernel: str, dtype: str, part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    if kernel not in _WORK_FUNCTIONS or dtype not in DTYPES:
        return None
    flops_names, bytes_names = _WORK_FUNCTIONS[kernel]
    flops_fn = _first_attr(features, flops_names)
    bytes_fn = _first_attr(features, bytes_names)
    if flops_fn is None or bytes_fn is None:
        return None
    out = []
    for fn in (flops_fn, bytes_fn):
        kwargs = _call_arguments(fn, kernel, dtype, part)
        if kwargs is None:
            return None
        out.append(_call_vectorised(fn, kwargs, len(part)))
    return out[0], out[1]


def _first_attr(module: Any, names: tuple[str, ...]) -> Callable[..., Any] | None:
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    return None


def _call_arguments(fn: Callable[..., Any], kernel: str, dtype: str, part: pd.DataFrame) -> dict[str, Any] | None:
    """Keyword arguments for ``fn`` from the configuration columns (None if one is missing)."""
    import pandas as pd

    aliases = _PARAM_ALIASES.get(kernel, {})
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name == "dtype":
            kwargs[name] = dtype
            continue
        if kernel == "attention" and name == "fused" and "backend" in part.columns:
            # torch's math backend materialises the score matrix; every other backend is fused
            kwargs[name] = part["backend"].ne("math").fillna(True).to_numpy(dtype=bool)
            continue
        column = aliases.get(name, name)  # family aliases first: conv's `n` is conv_n, not gemm's n
        if column in part.columns:
            values = part[column]
            if column == "causal":
                kwargs[name] = values.fillna(False).to_numpy(dtype=bool)
                continue
            array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            if column in _COLUMN_DEFAULTS:
                array = np.where(np.isnan(array), _COLUMN_DEFAULTS[column], array)
            if column in _FILL_FROM and _FILL_FROM[column] in part.columns:
                other = pd.to_numeric(part[_FILL_FROM[column]], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                array = np.where(np.isnan(array), other, array)
            if np.isnan(array).any():
                return None  # a required size is missing: leave these rows to the stored columns
            kwargs[name] = array.astype(np.int64)
        elif column in _COLUMN_DEFAULTS:
            kwargs[name] = np.full(len(part), _COLUMN_DEFAULTS[column])
        elif param.default is inspect.Parameter.empty:
            return None
    return kwargs


def _call_vectorised(fn: Callable[..., Any], kwargs: dict[str, Any], size: int) -> np.ndarray:
    try:
        result = np.asarray(fn(**kwargs), dtype=float)
        if result.shape == (size,):
            return result
    except (TypeError, ValueError):  # UserInputError is a ValueError
        pass  # a scalar-only function (integer checks, Python `if` on a size): call it row by row
    keys = list(kwargs)
    columns = [kwargs[k] if isinstance(kwargs[k], np.ndarray) else [kwargs[k]] * size for k in keys]
    return np.array([_call_one(fn, {k: _scalar(v) for k, v in zip(keys, values)}) for values in zip(*columns)],
                    dtype=float)


def _call_one(fn: Callable[..., Any], kwargs: dict[str, Any]) -> float:
    try:
        return float(fn(**kwargs))
    except (TypeError, ValueError):  # an impossible configuration (empty conv output, ...): no work known
        return math.nan


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---- the feature frame ---------------------------------------------------------------

def feature_frame(rows: pd.DataFrame, device: RooflineDevice, *, blocks_per_sm: int = DEFAULT_BLOCKS_PER_SM,
                  default_tile: tuple[int, int] = (DEFAULT_TILE_M, DEFAULT_TILE_N),
                  launch_overhead_s: float | None = None) -> pd.DataFrame:
    """``rows`` with the roofline features of ``FEATURE_COLUMNS`` added for ``device``.

    ``rows`` needs ``kernel`` and ``dtype`` and the configuration columns of its kernel
    family (or its own ``flops``/``min_bytes``). ``device`` is a ``DeviceSpec`` or a
    calibrated ``DeviceProfile``. ``launch_overhead_s`` overrides the device's floor.
    The input frame is not modified. See the module docstring for every formula.
    """
    import pandas as pd

    size = len(rows)
    codes = _Codes(rows)
    flops, min_bytes = _work_and_traffic(rows, codes)
    dtype_bytes = codes.per_dtype({d: info.bytes_per_element for d, info in DTYPES.items()})
    peaks = dict(device.peaks_flops_per_s)
    peak = codes.per_dtype(peaks)
    bandwidth = float(device.mem_bandwidth_bytes_per_s) if device.mem_bandwidth_bytes_per_s else math.nan
    if launch_overhead_s is None:
        launch, launch_source = float(device.launch_overhead_s), device.launch_overhead_source
    else:
        launch, launch_source = float(launch_overhead_s), "given"
    intensity = arithmetic_intensity(flops, min_bytes)
    ridge = ridge_point(peak, bandwidth)
    bound = roofline_bound(flops, min_bytes, peak, bandwidth, launch)
    grid_batch, grid_m, grid_n, tile_m, tile_n = _output_grid(rows, codes, default_tile)
    sm_count = float(device.sm_count) if device.sm_count else math.nan
    tw = tile_wave(grid_m, grid_n, sm_count=sm_count, batch=grid_batch, tile_m=tile_m, tile_n=tile_n,
                   blocks_per_sm=blocks_per_sm)
    l2 = float(device.l2_bytes) if device.l2_bytes else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        columns: dict[str, Any] = {
            "flops": flops,
            "min_bytes": min_bytes,
            "dtype_bytes": dtype_bytes,
            "intensity_flops_per_byte": intensity,
            "log10_flops": _log10(flops),
            "log10_min_bytes": _log10(min_bytes),
            "log10_intensity": _log10(intensity),
            "peak_flops_per_s": peak,
            "mem_bandwidth_bytes_per_s": np.full(size, bandwidth),
            "launch_overhead_s": np.full(size, launch),
            "launch_overhead_source": _constant_category(launch_source, size),
            "ridge_point_flops_per_byte": ridge,
            "intensity_over_ridge": intensity / ridge,
            "compute_time_s": bound.compute_time_s,
            "memory_time_s": bound.memory_time_s,
            "bound_time_s": bound.bound_time_s,
            "log10_bound_time_s": _log10(bound.bound_time_s),
            "bound": regime_names(bound.regime),
            "tile_m_used": tile_m,
            "tile_n_used": tile_n,
            "tiles": tw.tiles,
            "waves": tw.waves,
            "tile_efficiency": tw.tile_efficiency,
            "wave_efficiency": tw.wave_efficiency,
            "min_bytes_over_l2": min_bytes / l2,
            "device_key": _constant_category(device.key, size),
            "device_source": _constant_category(device.source_kind, size),
            "device_sm_count": np.full(size, sm_count),
            "device_l2_bytes": np.full(size, l2),
        }
        for d in DEVICE_PEAK_DTYPES:
            columns[f"device_peak_{d.split('_')[0]}_flops_per_s"] = np.full(size, float(peaks.get(d, math.nan)))
        if "time_median_ms" in rows:
            measured_s = pd.to_numeric(rows["time_median_ms"], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan) / 1e3
            columns["roofline_attainment"] = bound.bound_time_s / measured_s
    if size <= _CONCAT_MAX_ROWS:  # small frames: one concat beats ~40 column inserts
        added = pd.DataFrame(columns, index=rows.index)
        return pd.concat([rows.drop(columns=[c for c in columns if c in rows.columns]), added], axis=1)
    # large frames: one block per column, because building one consolidated frame would
    # copy every float column again (seconds on a 1,000,000-row dashboard)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        return rows.assign(**columns)


def _constant_category(value: str, size: int) -> pd.Categorical:
    import pandas as pd

    return pd.Categorical.from_codes(np.zeros(size, dtype=np.int8), categories=[value])


def _output_grid(rows: pd.DataFrame, codes: _Codes, default_tile: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """(batch, m, n, tile_m, tile_n) of each row's output grid (NaN for unknown kernels)."""
    size = len(rows)
    col = lambda name, default=math.nan: _float_column(rows, name, size, default)  # noqa: E731
    is_gemm, is_conv, is_attn = (codes.is_kernel(k) for k in ("gemm", "conv", "attention"))
    nan = np.full(size, np.nan)
    # GEMM: batch x m x n
    batch = np.where(is_gemm, col("batch", 1.0), nan)
    m = np.where(is_gemm, col("m"), nan)
    n = np.where(is_gemm, col("n"), nan)
    if is_conv.any():  # implicit GEMM: one (N·P·Q) x (K/g) product per group
        groups = col("groups", 1.0)
        p = np.floor((col("conv_h") + 2 * col("pad_h", 0.0) - col("dil_h", 1.0) * (col("conv_r") - 1) - 1)
                     / col("stride_h", 1.0)) + 1
        q = np.floor((col("conv_w") + 2 * col("pad_w", 0.0) - col("dil_w", 1.0) * (col("conv_s") - 1) - 1)
                     / col("stride_w", 1.0)) + 1
        batch = np.where(is_conv, groups, batch)
        m = np.where(is_conv, col("conv_n") * p * q, m)
        n = np.where(is_conv, col("conv_k") / groups, n)
    default_tile_n = np.full(size, float(default_tile[1]))
    if is_attn.any():  # one tile of query rows per (batch, head), the whole head_dim across
        batch = np.where(is_attn, col("batch", 1.0) * col("heads"), batch)
        m = np.where(is_attn, col("seq_q"), m)
        n = np.where(is_attn, col("head_dim"), n)
        default_tile_n = np.where(is_attn, col("head_dim"), default_tile_n)
    tile_m = col("tile_m")
    tile_m = np.where(np.isnan(tile_m), float(default_tile[0]), tile_m)
    tile_n = col("tile_n")
    tile_n = np.where(np.isnan(tile_n), default_tile_n, tile_n)
    return batch, m, n, tile_m, tile_n


def _float_column(rows: pd.DataFrame, name: str, size: int, default: float = math.nan) -> np.ndarray:
    """A column as float64 (None/NA -> ``default``); all ``default`` when absent. Always a copy."""
    import pandas as pd

    if name not in rows:
        return np.full(size, default, dtype=float)
    series = rows[name]
    if series.dtype.kind in "iuf":
        values = series.to_numpy(dtype=float, copy=True)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if not math.isnan(default):
        values[np.isnan(values)] = default
    return values


def _log10(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
