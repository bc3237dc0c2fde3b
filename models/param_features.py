"""Features of tunable parameters and launch geometry, for any kernel family.

Every tunable parameter of a configuration is a feature: the typed ``param_<name>``
columns of the store, else the keys of ``params_json`` (strings become codes fixed at
fit time). Launch features follow where the geometry is known: threads per block (the
T1 geometry an import recorded as ``launch.threads_per_block``, else Kernel Tuner's
reserved thread-block names ``block_size_x/y/z``), blocks per launch (``launch.blocks``),
waves on the device's compute units, the tail-wave efficiency, warps (32) and
wavefronts (64) per block and how full they are, work per thread (problem elements
over launched threads) and a simple occupancy figure (resident threads per compute
unit, at most ``RESIDENT_THREADS_PER_UNIT``, with at most ``MAX_BLOCKS_PER_UNIT``
blocks, as a share of that maximum; registers and shared memory are not known here).
Device features (``device_features``): by default the vendor (from the spec row, else the
device kind) and the SIMD width it schedules in (``wave_width``: 64 on AMD CDNA/GCN, 32
on NVIDIA and AMD RDNA), NaN when unknown; optionally the spec figures as well
(``SPEC_DEVICE_FEATURES``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

LAUNCH_PREFIX = "launch."
PARAM_PREFIX = "param_"
NOT_TUNABLE = ("problem_size", "replicate")
RESIDENT_THREADS_PER_UNIT = 2048
MAX_BLOCKS_PER_UNIT = 32
LAUNCH_FEATURES = ("threads_per_block", "blocks", "waves", "wave_efficiency", "warp_efficiency",
                   "wavefront_efficiency", "work_per_thread", "occupancy")
SPEC_DEVICE_FEATURES = ("device_log10_bandwidth", "device_log10_fp32_peak", "device_compute_units")
KIND_DEVICE_FEATURES = ("device_vendor", "device_wave_width")
DEVICE_FIGURES = SPEC_DEVICE_FEATURES + KIND_DEVICE_FEATURES
"""What a model records per device key, in this order (NaN unknown)."""
DEVICE_FEATURE_SETS = {"kind": KIND_DEVICE_FEATURES, "spec": DEVICE_FIGURES, "none": ()}
VENDOR_CODES = {"cuda": 0.0, "rocm": 1.0, "xpu": 2.0}  # by device kind; other kinds are NaN
WIDE_WAVE_ARCHITECTURES = ("cdna", "gcn", "vega")  # AMD architectures that run 64-lane wavefronts


def wave_width(kind: str, architecture: str | None) -> float:
    """Lanes the device schedules together: 32 (NVIDIA warps, AMD RDNA wave32), 64 (AMD CDNA/GCN), NaN unknown."""
    if kind == "cuda":
        return 32.0
    if kind == "rocm" and architecture:
        return 64.0 if architecture.lower().startswith(WIDE_WAVE_ARCHITECTURES) else 32.0
    return math.nan


def parameters(rows: Any) -> dict[str, list[Any]]:
    """Per parameter name, its value on every row (None where a row lacks it), launch keys included.

    ``rows``: a DataFrame or a mapping of columns. ``param_<name>`` columns win over
    ``params_json`` for the same name."""
    size = len(rows) if hasattr(rows, "iloc") else len(next(iter(rows.values()))) if rows else 0
    out: dict[str, list[Any]] = {}
    texts = list(rows["params_json"]) if "params_json" in rows else [None] * size
    cache: dict[str, dict[str, Any]] = {}
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            continue
        parsed = cache.get(text)
        if parsed is None:
            try:
                value = json.loads(text)
            except ValueError:
                value = {}
            parsed = cache[text] = value if isinstance(value, dict) else {}
        for name, value in parsed.items():
            if name in NOT_TUNABLE:
                continue
            column = out.get(name)
            if column is None:
                column = out[name] = [None] * size
            column[i] = value
    columns = rows.columns if hasattr(rows, "columns") else list(rows)
    for column in columns:
        if isinstance(column, str) and column.startswith(PARAM_PREFIX):
            values = rows[column].tolist()  # Python scalars, not numpy ones
            out[column[len(PARAM_PREFIX):]] = [None if _missing(v) else v for v in values]
    return out


def tunable_names(params: Mapping[str, list[Any]]) -> list[str]:
    """The tunable parameters among ``parameters()`` (launch geometry left out), sorted."""
    return sorted(name for name in params if not name.startswith(LAUNCH_PREFIX))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def encode(values: Sequence[Any], codes: dict[str, float] | None) -> tuple[np.ndarray, dict[str, float] | None]:
    """Numbers as floats; anything else through ``codes`` (built here when None and needed; unseen -> NaN)."""
    numeric = all(_missing(v) or (isinstance(v, (int, float)) and not isinstance(v, bool)) or isinstance(v, bool)
                  for v in values)
    if numeric and codes is None:
        return np.array([np.nan if _missing(v) else float(v) for v in values], dtype=float), None
    texts = [None if _missing(v) else v if isinstance(v, str) else json.dumps(v) for v in values]
    if codes is None:
        codes = {text: float(i) for i, text in enumerate(sorted({t for t in texts if t is not None}))}
    return np.array([codes.get(t, np.nan) if t is not None else np.nan for t in texts], dtype=float), codes


def launch_features(params: Mapping[str, list[Any]], problem_elements: np.ndarray, compute_units: np.ndarray,
                    size: int) -> dict[str, np.ndarray]:
    """The ``LAUNCH_FEATURES`` columns (NaN where the geometry or the device is unknown)."""
    def column(name: str) -> np.ndarray:
        values = params.get(name)
        if values is None:
            return np.full(size, np.nan)
        return np.array([np.nan if _missing(v) or isinstance(v, str) else float(v) for v in values])

    threads = column(LAUNCH_PREFIX + "threads_per_block")
    block_dims = [column(f"block_size_{axis}") for axis in "xyz"]
    if any(np.isfinite(d).any() for d in block_dims):  # Kernel Tuner's thread-block names
        product = np.prod([np.where(np.isfinite(d), d, 1.0) for d in block_dims], axis=0)
        threads = np.where(np.isfinite(threads), threads, product)
    blocks = column(LAUNCH_PREFIX + "blocks")
    with np.errstate(divide="ignore", invalid="ignore"):
        resident = np.minimum(np.floor(RESIDENT_THREADS_PER_UNIT / threads), MAX_BLOCKS_PER_UNIT)
        waves = blocks / (compute_units * np.maximum(resident, 1.0))
        return {
            "threads_per_block": threads, "blocks": blocks, "waves": waves,
            "wave_efficiency": waves / np.ceil(waves),
            "warp_efficiency": threads / (32 * np.ceil(threads / 32)),
            "wavefront_efficiency": threads / (64 * np.ceil(threads / 64)),
            "work_per_thread": problem_elements / (threads * blocks),
            "occupancy": resident * threads / RESIDENT_THREADS_PER_UNIT,
        }


def problem_elements(rows: Any, size: int) -> np.ndarray:
    """The product of each row's ``problem_size`` in ``params_json`` (NaN when absent)."""
    texts = list(rows["params_json"]) if "params_json" in rows else [None] * size
    cache: dict[Any, float] = {}
    out = np.full(size, np.nan)
    for i, text in enumerate(texts):
        if text not in cache:
            value = np.nan
            try:
                sizes = json.loads(text).get("problem_size") if isinstance(text, str) else None
                if isinstance(sizes, list) and sizes and all(isinstance(s, (int, float)) for s in sizes):
                    value = float(np.prod(sizes))
            except (ValueError, AttributeError):
                pass
            cache[text] = value
        out[i] = cache[text]
    return out
