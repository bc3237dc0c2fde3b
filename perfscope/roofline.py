"""Roofline features: the ONE place every model and the dashboard derive features from.

Pure and vectorised: numpy arrays in, arrays out (no per-row Python on the GEMM path).
Work and traffic come from ``perfscope.features`` (docs/formulas.md); this module adds
the roofline and the quantisation features.

Rows are columns (``perfscope.columns``: a dict of column name -> 1-D numpy array of one
length); ``feature_columns`` returns them with the features added, without importing
pandas. Training, evaluation, estimates and the dashboard all call it.

Formulas (per row; ``s`` = bytes per element of the dtype):

* ``flops``, ``min_bytes``: the row's own columns where present (collectors fill them
  from ``perfscope.features``), otherwise computed from the configuration columns by
  ``perfscope.features``, one vectorised call per kernel family and dtype:
  gemm: ``gemm_flops(batch, m, n, k)``, ``gemm_min_bytes(batch, m, n, k, dtype)``
  (2·b·m·n·k and s·b·(m·k + k·n + m·n));
  conv: ``conv2d_flops``/``conv2d_min_bytes(conv_n, conv_c, conv_h, conv_w, conv_k, conv_r,
  conv_s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)``;
  attention: ``attention_flops(batch, heads, seq_q, seq_k, head_dim, causal)``,
  ``attention_min_bytes(batch, heads, kv_heads, seq_q, seq_k, head_dim, dtype,
  fused=backend != "math")``.
  Missing cells default to batch 1, stride 1, pad 0, dilation 1, groups 1, kv_heads =
  heads, causal False. A row with a size still missing (or not an integer), or a
  configuration the family rejects (an empty conv output), gets NaN work.
* ``intensity_flops_per_byte`` I = flops / min_bytes.
* ``log10_flops``, ``log10_min_bytes``, ``log10_intensity``, ``log10_bound_time_s``:
  base-10 logarithms (NaN where the value is not positive).
* ``peak_flops_per_s``: the device's peak for the row's dtype (NaN when it has none),
  except that an fp32 row whose ``fp32_math`` column says ``tf32`` (torch's
  ``allow_tf32``, Triton's ``input_precision="tf32"``, or ``--fp32-math tf32`` at import
  or estimate) gets the device's TF32 tensor peak where it has one; an unknown math mode
  keeps the FP32 peak. ``peak_used`` names the dtype whose peak was used (``fp32``,
  ``tf32``, ``fp16``, ...; None where the device has none);
  ``mem_bandwidth_bytes_per_s`` B; ``launch_overhead_s`` L (calibrated, or assumed for
  a spec-sheet device: see ``launch_overhead_source``).
* ``ridge_point_flops_per_byte`` = peak / B: the intensity where the two roofs meet;
  ``intensity_over_ridge`` = I / ridge (> 1: compute side of the ridge).
* ``compute_time_s`` = flops / peak; ``memory_time_s`` = min_bytes / B;
  ``bound_time_s`` = max(compute_time_s, memory_time_s, L), the roofline lower bound
  with the launch floor. NaN when the device has no peak for the dtype.
* ``bound``: ``launch`` when L exceeds both compute and memory time, else ``memory``
  when memory time exceeds compute time, else ``compute`` (an object array of names, None where unknown).
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

import math
from typing import Any, NamedTuple

import numpy as np

from perfscope.columns import as_columns
from perfscope.devicespecs import RooflineDevice
from perfscope.dtypes import DTYPES
from perfscope.work import RowColumns, Rows

# numpy only: a light caller (one `perfscope estimate`) does not pay pandas' import time.


DEFAULT_TILE_M = 128  # default output tile of untiled library kernels (see module doc)
DEFAULT_TILE_N = 128
DEFAULT_BLOCKS_PER_SM = 1

REGIMES = ("launch", "memory", "compute")  # codes 0, 1, 2 of the `bound` column; -1 unknown

DEVICE_PEAK_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8_e4m3")  # fp8 formats share one peak

FEATURE_COLUMNS = (
    "flops", "min_bytes", "dtype_bytes", "intensity_flops_per_byte",
    "log10_flops", "log10_min_bytes", "log10_intensity",
    "peak_flops_per_s", "peak_used", "mem_bandwidth_bytes_per_s", "launch_overhead_s", "launch_overhead_source",
    "ridge_point_flops_per_byte", "intensity_over_ridge",
    "compute_time_s", "memory_time_s", "bound_time_s", "log10_bound_time_s", "bound",
    "tile_m_used", "tile_n_used", "tiles", "waves", "tile_efficiency", "wave_efficiency",
    "min_bytes_over_l2",
    "device_key", "device_source", "device_sm_count", "device_l2_bytes",
    *(f"device_peak_{d.split('_')[0]}_flops_per_s" for d in DEVICE_PEAK_DTYPES),
)
"""Columns ``feature_columns`` adds (plus ``roofline_attainment`` when
times are present)."""


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


# ---- the features -----------------------------------------------------------------------

class _Coded(NamedTuple):
    """A categorical feature column before it is materialised: int8 codes into
    ``categories`` (-1: unknown), made an object array of the names at the end."""

    codes: np.ndarray
    categories: tuple[str, ...]

    def names(self) -> np.ndarray:
        return np.array([*self.categories, None], dtype=object)[self.codes]  # code -1 picks None


def _constant(value: str, size: int) -> _Coded:
    return _Coded(np.zeros(size, dtype=np.int8), (value,))


def _features(source: RowColumns, device: RooflineDevice, blocks_per_sm: int, default_tile: tuple[int, int],
              launch_overhead_s: float | None) -> dict[str, Any]:
    """The feature columns of ``FEATURE_COLUMNS`` (and ``roofline_attainment`` when the rows
    carry times) as arrays, categorical ones as ``_Coded``. Every formula is here."""
    size = source.size
    flops, min_bytes = source.work_and_traffic()
    dtype_bytes = source.per_dtype({d: info.bytes_per_element for d, info in DTYPES.items()})
    peaks = dict(device.peaks_flops_per_s)
    peak, peak_used = _row_peaks(source, peaks)
    bandwidth = float(device.mem_bandwidth_bytes_per_s) if device.mem_bandwidth_bytes_per_s else math.nan
    if launch_overhead_s is None:
        launch, launch_source = float(device.launch_overhead_s), device.launch_overhead_source
    else:
        launch, launch_source = float(launch_overhead_s), "given"
    intensity = arithmetic_intensity(flops, min_bytes)
    ridge = ridge_point(peak, bandwidth)
    bound = roofline_bound(flops, min_bytes, peak, bandwidth, launch)
    grid_batch, grid_m, grid_n, tile_m, tile_n = _output_grid(source, default_tile)
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
            "peak_used": peak_used,
            "mem_bandwidth_bytes_per_s": np.full(size, bandwidth),
            "launch_overhead_s": np.full(size, launch),
            "launch_overhead_source": _constant(launch_source, size),
            "ridge_point_flops_per_byte": ridge,
            "intensity_over_ridge": intensity / ridge,
            "compute_time_s": bound.compute_time_s,
            "memory_time_s": bound.memory_time_s,
            "bound_time_s": bound.bound_time_s,
            "log10_bound_time_s": _log10(bound.bound_time_s),
            "bound": _Coded(np.asarray(bound.regime, dtype=np.int8), REGIMES),
            "tile_m_used": tile_m,
            "tile_n_used": tile_n,
            "tiles": tw.tiles,
            "waves": tw.waves,
            "tile_efficiency": tw.tile_efficiency,
            "wave_efficiency": tw.wave_efficiency,
            "min_bytes_over_l2": min_bytes / l2,
            "device_key": _constant(device.key, size),
            "device_source": _constant(device.source_kind, size),
            "device_sm_count": np.full(size, sm_count),
            "device_l2_bytes": np.full(size, l2),
        }
        for d in DEVICE_PEAK_DTYPES:
            columns[f"device_peak_{d.split('_')[0]}_flops_per_s"] = np.full(size, float(peaks.get(d, math.nan)))
        if "time_median_ms" in source.rows:
            columns["roofline_attainment"] = bound.bound_time_s / (source.floats("time_median_ms") / 1e3)
    return columns


def feature_columns(rows: Rows, device: RooflineDevice, *, blocks_per_sm: int = DEFAULT_BLOCKS_PER_SM,
                    default_tile: tuple[int, int] = (DEFAULT_TILE_M, DEFAULT_TILE_N),
                    launch_overhead_s: float | None = None) -> dict[str, np.ndarray]:
    """The columns of ``rows`` with the roofline features of ``FEATURE_COLUMNS`` added for
    ``device``, as a new dict of column name -> array.

    ``rows`` (columns, or anything ``perfscope.columns.as_columns`` reads) needs ``kernel``
    and ``dtype`` and the configuration columns of its kernel family (or its own
    ``flops``/``min_bytes``). ``device`` is a ``DeviceSpec`` or a calibrated
    ``DeviceProfile``; ``launch_overhead_s`` overrides its floor. ``bound``,
    ``launch_overhead_source``, ``device_key`` and ``device_source`` are object arrays of
    names (``bound`` None where unknown). The input arrays are shared, not copied. See the
    module docstring for every formula.
    """
    rows = rows if isinstance(rows, dict) else as_columns(rows)
    source = RowColumns(rows)
    added = _features(source, device, blocks_per_sm, default_tile, launch_overhead_s)
    out = {name: np.asarray(values) for name, values in rows.items()}
    out.update({name: value.names() if isinstance(value, _Coded) else value for name, value in added.items()})
    return out


def _row_peaks(source: RowColumns, peaks: dict[str, float]) -> tuple[np.ndarray, _Coded]:
    """(peak FLOP/s, the dtype whose peak it is) per row: the row's dtype, or tf32 for fp32
    rows with TF32 math on a device that has a TF32 peak (``perfscope.dtypes.peak_dtype``)."""
    categories = list(source.dtypes)
    codes = source.dtype_codes.copy()
    if "fp32_math" in source.rows and "fp32" in categories and "tf32" in peaks:
        math_mode = np.asarray(source.rows["fp32_math"], dtype=object)
        on_tensor_cores = (codes == categories.index("fp32")) & (math_mode == "tf32")
        if on_tensor_cores.any():
            if "tf32" not in categories:
                categories.append("tf32")
            codes[on_tensor_cores] = categories.index("tf32")
    table = np.array([float(peaks.get(d, math.nan)) for d in categories] + [math.nan])
    peak = table[codes]  # code -1 (missing dtype) picks the trailing NaN
    codes[np.isnan(peak)] = -1
    return peak, _Coded(codes.astype(np.int8), tuple(categories))


def _output_grid(columns: RowColumns, default_tile: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """(batch, m, n, tile_m, tile_n) of each row's output grid (NaN for unknown kernels)."""
    size = columns.size
    col = columns.floats
    is_gemm, is_conv, is_attn = (columns.is_kernel(k) for k in ("gemm", "conv", "attention"))
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


def _log10(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    out = np.full(values.shape, np.nan)
    np.log10(values, out=out, where=values > 0)  # NaN where not positive
    return out
