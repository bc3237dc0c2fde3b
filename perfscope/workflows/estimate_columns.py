"""Estimates as columns, the engine under ``perfscope.workflows.estimate`` and the
best-configuration search: configurations -> features -> a model or the roofline
fallback -> latency, energy, power and carbon arrays.

Light path: numpy only. Configurations become columns (``perfscope.columns``: a dict of
column name -> numpy array: ``config_columns``), features come from
``perfscope.roofline.feature_columns``, a loaded model predicts on those arrays
(``perfscope.models.prediction.bundle_predictions``), and so do the interval, energy and
carbon. pandas, scikit-learn, torch, triton and dash are not imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from perfscope.carbon import grid_intensity, operational_gco2e
from perfscope.columns import all_missing, as_columns, columns_size, float_column, repeat
from perfscope.devices.registry import normalise_device_name, resolve_device
from perfscope.dtypes import check_dtype, check_fp32_math
from perfscope.errors import InvalidInputError
from perfscope.models.persistence import ModelBundle, load_bundle
from perfscope.models.prediction import bundle_predictions
from perfscope.roofline import feature_columns

# Efficiency assumed by the roofline fallback on spec-sheet peaks: tuned library
# kernels typically reach 50-90% of peak on large problems (an assumption, labelled so).
ASSUMED_SPEC_EFFICIENCY = 0.7
ASSUMED_EFFICIENCY_RANGE = (0.3, 1.0)  # the fallback's interval: bound/1.0 .. bound/0.3
DEFAULT_REGION = "World"

SHAPE_COLUMNS = {
    "gemm": ("batch", "m", "n", "k"),
    "conv": ("conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s", "stride_h", "stride_w",
             "pad_h", "pad_w", "dil_h", "dil_w", "groups"),
    "attention": ("batch", "heads", "kv_heads", "seq_q", "seq_k", "head_dim", "causal"),
}
TILE_COLUMNS = ("tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages")
DEFAULT_IMPLEMENTATION = {"gemm": "torch.matmul", "conv": "torch.conv2d", "attention": "torch.sdpa"}
# tiles tried by --best-tile (square output tiles of a GPU GEMM, or a CPU tile edge)
GPU_TILE_CANDIDATES = tuple((tm, tn, tk) for tm in (32, 64, 128, 256) for tn in (32, 64, 128, 256)
                            for tk in (32, 64) if tm * tn <= 128 * 256)
CPU_TILE_CANDIDATES = tuple((t, t, t) for t in (1, 2, 4, 8, 16, 32, 64))


def config_columns(kernel: str, configs: list[Mapping[str, Any]] | Mapping[str, Any] | Any,
                   dtype: str | None = None) -> dict[str, np.ndarray]:
    """Configuration rows as columns (a dict of column name -> 1-D numpy array): ``kernel``,
    ``dtype``, ``implementation`` and the family's shape columns (defaults filled), plus
    every column given. ``configs``: a list of dicts, a mapping of column -> values (arrays,
    lists or scalars) or a DataFrame. Checks the columns it needs (``InvalidInputError``)."""
    if kernel not in SHAPE_COLUMNS:
        raise InvalidInputError(f"unknown kernel family {kernel!r}: use {', '.join(SHAPE_COLUMNS)}")
    columns = as_columns(configs)
    size = columns_size(columns)
    columns["kernel"] = repeat(kernel, size)
    if dtype is not None:
        columns["dtype"] = repeat(dtype, size)
    if "dtype" not in columns:
        columns["dtype"] = repeat("fp32", size)
    for name in dict.fromkeys(columns["dtype"].tolist()):
        check_dtype(str(name))
    if "implementation" not in columns:
        columns["implementation"] = repeat(DEFAULT_IMPLEMENTATION[kernel], size)
    for column in SHAPE_COLUMNS[kernel]:
        if column not in columns or all_missing(columns[column]):
            if column == "kv_heads" and "heads" in columns:
                columns[column] = columns["heads"]
            elif column in _SHAPE_DEFAULTS:
                columns[column] = np.full(size, _SHAPE_DEFAULTS[column])
            else:
                raise InvalidInputError(f"a {kernel} estimate needs {column}")
        if column != "causal":
            values = float_column(columns, column, size)
            lowest = 0 if column in ("pad_h", "pad_w") else 1
            if np.isnan(values).any() or (values < lowest).any():
                raise InvalidInputError(f"{column} must be a positive integer" + (" or 0" if lowest == 0 else ""))
    return columns


def has_sizes(kernel: str, shape: Mapping[str, Any]) -> bool:
    """Whether ``shape`` gives any of ``kernel``'s sizes (a built-in family's defaults, such as
    batch 1, do not count): an imported gemm/conv/attention sweep may have none."""
    return kernel in SHAPE_COLUMNS and any(shape.get(c) is not None for c in SHAPE_COLUMNS[kernel]
                                           if c not in _SHAPE_DEFAULTS)


_SHAPE_DEFAULTS = {"batch": 1, "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0, "dil_h": 1, "dil_w": 1,
                   "groups": 1, "causal": False}


def estimate_columns(kernel: str, configs: list[Mapping[str, Any]] | Any, device: str, *,
                     dtype: str | None = None, model: Any = None, region: str = DEFAULT_REGION,
                     intensity_gco2e_per_kwh: float | None = None, pue: float = 1.0,
                     fp32_math: str | None = None) -> dict[str, np.ndarray]:
    """``estimate_many`` as columns (a dict of column name -> array, in the frame's column
    order), without pandas: what both ``estimate_many`` and ``estimate`` compute."""
    rows = config_columns(kernel, configs, dtype)
    n = columns_size(rows)
    if fp32_math is not None:  # fp32 rows then use the TF32 peak (tf32) or the FP32 one (ieee)
        rows["fp32_math"] = repeat(check_fp32_math(fp32_math), n)
    spec, source = _estimate_device(device, model)
    rows["device_key"] = repeat(getattr(spec, "device_key", None) or (spec.key if source == "declared" else device), n)
    rows["device_name"] = repeat(spec.name, n)
    features = feature_columns(rows, spec)
    out: dict[str, Any] = {c: features[c] for c in ("kernel", "dtype", "fp32_math", *SHAPE_COLUMNS[kernel],
                                                    *TILE_COLUMNS) if c in features}
    out["device"] = repeat(spec.name, n)
    out["device_source"] = repeat(source, n)
    out["flops"] = features["flops"]
    out["min_bytes"] = features["min_bytes"]
    out["peak_used"] = features["peak_used"]  # the dtype whose peak bounds the row (tf32 for fp32 on TF32 math)
    out["peak_flops_per_s"] = np.asarray(features["peak_flops_per_s"], dtype=float)
    bound = np.asarray(features["bound_time_s"], dtype=float)
    out["bound_time_s"] = bound
    regime = features["bound"]
    out["bound"] = np.where(regime != None, regime, np.nan).astype(object)  # noqa: E711 (elementwise)
    energy_j = energy_method = None
    if model is not None:
        bundle = loaded_bundle(model)
        # the work (FLOPs, bytes) does not depend on the device, and all the features are
        # reused when the model's figures for this device are the resolved ones
        predicted = bundle_predictions(bundle, {**rows, "flops": features["flops"], "min_bytes": features["min_bytes"]},
                                       computed=(spec, features))
        latency = predicted["latency_s"]
        out["latency_s"] = latency
        out["latency_low_s"] = predicted["latency_low_s"]
        out["latency_high_s"] = predicted["latency_high_s"]
        method = "model:forest (conformal 90% interval)"
        if "energy_j" in predicted:
            energy_j, energy_method = predicted["energy_j"], "model"
    else:
        efficiency = 1.0 if source == "calibrated" else ASSUMED_SPEC_EFFICIENCY
        # compute-bound tiled work also pays for the padded tiles and the last partial wave
        quantisation = np.where(out["bound"] == "compute",
                                np.nan_to_num(np.asarray(features["tile_efficiency"], dtype=float), nan=1.0)
                                * np.nan_to_num(np.asarray(features["wave_efficiency"], dtype=float), nan=1.0), 1.0)
        latency = bound / (efficiency * quantisation)
        out["latency_s"] = latency
        out["latency_low_s"] = bound / ASSUMED_EFFICIENCY_RANGE[1]
        out["latency_high_s"] = bound / ASSUMED_EFFICIENCY_RANGE[0]
        method = (f"roofline fallback (no model): bound from the {source} peaks"
                  + (f" / assumed efficiency {ASSUMED_SPEC_EFFICIENCY}" if source == "spec" else "")
                  + " / tile and wave quantisation when compute-bound"
                  + f"; interval assumes {ASSUMED_EFFICIENCY_RANGE[0]:.0%}-{ASSUMED_EFFICIENCY_RANGE[1]:.0%}"
                  " of the bound")
    out["method"] = repeat(method, n)
    out["efficiency"] = bound / latency
    if energy_j is None:
        tdp_w = getattr(spec, "tdp_w", None)
        energy_j = latency * tdp_w if tdp_w else np.full(n, np.nan)
        energy_method = "estimate-tdp (TDP x latency: an upper-end estimate)" if tdp_w else "none (no TDP known)"
    out["energy_j"] = energy_j
    out["energy_method"] = repeat(energy_method, n)
    out["power_w"] = energy_j / latency
    intensity = intensity_gco2e_per_kwh
    if intensity is None:
        grid = grid_intensity(region)
        intensity, intensity_source = grid.intensity_gco2e_per_kwh, grid.citation
    else:
        intensity_source = "given"
    out["carbon_intensity_source"] = repeat(intensity_source, n)
    out["carbon_intensity_gco2e_per_kwh"] = np.full(n, float(intensity))
    out["pue"] = np.full(n, float(pue))
    out["carbon_gco2e"] = operational_gco2e(energy_j, intensity, pue)
    return out


def _estimate_device(device: str, model: Any) -> tuple[Any, str]:
    """``resolve_device``; failing that, with a model, the figures it was trained with for a
    device known only by the peaks its rows declared at import (``--peak-flops``)."""
    try:
        return resolve_device(device)
    except InvalidInputError:
        if model is None:
            raise
        wanted = normalise_device_name(device)
        for wrapped in loaded_bundle(model).models.values():
            fitted = getattr(wrapped, "estimator_", wrapped)
            for key, figures in getattr(fitted, "devices_", {}).items():
                if figures.source_kind == "declared" and wanted in (normalise_device_name(key),
                                                                    normalise_device_name(figures.name)):
                    return figures, "declared"
        raise


def loaded_bundle(model: Any) -> Any:
    """``model`` as a loaded bundle: a ``ModelBundle`` as it is, a path loaded (the one place
    an estimate loads a bundle)."""
    return model if isinstance(model, ModelBundle) else load_bundle(model)
