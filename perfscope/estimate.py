"""Estimates for configurations that were never measured: latency with an interval,
energy, power, carbon, the roofline bound, and the best tile.

With a trained model bundle (``perfscope train``) the forest predicts latency (and
energy, when it learnt it) with its conformal interval. Without one, the roofline
fallback says so: the bound comes from the calibrated profile when the device has one
(``perfscope calibrate``) and from the spec sheet otherwise, and latency is the bound
over an *assumed* efficiency. Every result names its method and device source.

Light path: no torch, triton or dash; pandas and numpy only (a loaded model predicts with numpy;
scikit-learn is not imported).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfscope.errors import UserInputError

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


def config_frame(kernel: str, configs: list[Mapping[str, Any]] | Any, dtype: str | None = None) -> Any:
    """A frame of configuration rows (``kernel``, ``dtype``, ``implementation`` and the
    family's shape columns) from dicts or a DataFrame; checks the columns it needs."""
    import pandas as pd

    from perfscope.dtypes import dtype_info

    if kernel not in SHAPE_COLUMNS:
        raise UserInputError(f"unknown kernel family {kernel!r}: use {', '.join(SHAPE_COLUMNS)}")
    frame = pd.DataFrame(configs).copy() if not isinstance(configs, pd.DataFrame) else configs.copy()
    frame["kernel"] = kernel
    if dtype is not None:
        frame["dtype"] = dtype
    if "dtype" not in frame:
        frame["dtype"] = "fp32"
    for name in frame["dtype"].unique():
        dtype_info(str(name))
    frame["implementation"] = frame.get("implementation", DEFAULT_IMPLEMENTATION[kernel])
    defaults = {"batch": 1, "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0, "dil_h": 1, "dil_w": 1,
                "groups": 1, "causal": False}
    for column in SHAPE_COLUMNS[kernel]:
        if column not in frame or frame[column].isna().all():
            if column == "kv_heads" and "heads" in frame:
                frame[column] = frame["heads"]
            elif column in defaults:
                frame[column] = defaults[column]
            else:
                raise UserInputError(f"a {kernel} estimate needs {column}")
        values = frame[column]
        if column != "causal" and (pd.to_numeric(values, errors="coerce").isna().any() or (values < 0).any()
                                   or (column not in ("pad_h", "pad_w") and (values < 1).any())):
            raise UserInputError(f"{column} must be a positive integer" + (" or 0" if column.startswith("pad") else ""))
    return frame


def estimate_many(kernel: str, configs: list[Mapping[str, Any]] | Any, device: str, *, dtype: str | None = None,
                  model: Any = None, region: str = DEFAULT_REGION, intensity_gco2e_per_kwh: float | None = None,
                  pue: float = 1.0) -> Any:
    """Vectorised estimates: one output row per configuration (a pandas DataFrame).

    ``model`` is a bundle path or a loaded bundle; ``device`` a device id, name or
    dataset device key (``h100-sxm``, ``NVIDIA H100 80GB HBM3``, ``cpu-amd-epyc``).
    """
    import numpy as np

    from perfscope.carbon import grid_intensity, operational_gco2e
    from perfscope.collectors.calibrate import resolve_device
    from perfscope.roofline import feature_frame

    import pandas as pd

    rows = config_frame(kernel, configs, dtype)
    spec, source = resolve_device(device)
    rows["device_key"] = getattr(spec, "device_key", None) or device
    rows["device_name"] = spec.name
    features = feature_frame(rows, spec)
    n = len(features)
    # columns gathered as arrays and framed once: setting DataFrame columns one by one
    # cost ~0.6 ms each, most of a single estimate's time
    out: dict[str, Any] = {c: features[c].to_numpy() for c in ("kernel", "dtype", *SHAPE_COLUMNS[kernel], *TILE_COLUMNS)
                           if c in features}
    out["device"] = np.full(n, spec.name, dtype=object)
    out["device_source"] = np.full(n, source, dtype=object)
    out["flops"] = features["flops"].to_numpy()
    out["min_bytes"] = features["min_bytes"].to_numpy()
    bound = features["bound_time_s"].to_numpy(dtype=float)
    out["bound_time_s"] = bound
    out["bound"] = features["bound"].astype(str).to_numpy()
    energy_j = energy_method = None
    if model is not None:
        from perfscope.models.persistence import ModelBundle, load_bundle
        from perfscope.models.training import estimate_rows

        bundle = model if isinstance(model, ModelBundle) else load_bundle(model)
        predicted = estimate_rows(bundle, rows)
        latency = predicted["latency_s"].to_numpy()
        out["latency_s"] = latency
        out["latency_low_s"] = predicted["latency_low_s"].to_numpy()
        out["latency_high_s"] = predicted["latency_high_s"].to_numpy()
        method = "model:forest (conformal 90% interval)"
        if "energy_j" in predicted:
            energy_j, energy_method = predicted["energy_j"].to_numpy(), "model"
    else:
        efficiency = 1.0 if source == "calibrated" else ASSUMED_SPEC_EFFICIENCY
        # compute-bound tiled work also pays for the padded tiles and the last partial wave
        quantisation = np.where(out["bound"] == "compute",
                                np.nan_to_num(features["tile_efficiency"].to_numpy(dtype=float), nan=1.0)
                                * np.nan_to_num(features["wave_efficiency"].to_numpy(dtype=float), nan=1.0), 1.0)
        latency = bound / (efficiency * quantisation)
        out["latency_s"] = latency
        out["latency_low_s"] = bound / ASSUMED_EFFICIENCY_RANGE[1]
        out["latency_high_s"] = bound / ASSUMED_EFFICIENCY_RANGE[0]
        method = (f"roofline fallback (no model): bound from the {source} peaks"
                  + (f" / assumed efficiency {ASSUMED_SPEC_EFFICIENCY}" if source == "spec" else "")
                  + " / tile and wave quantisation when compute-bound"
                  + f"; interval assumes {ASSUMED_EFFICIENCY_RANGE[0]:.0%}-{ASSUMED_EFFICIENCY_RANGE[1]:.0%}"
                  " of the bound")
    out["method"] = np.full(n, method, dtype=object)
    out["efficiency"] = bound / latency
    if energy_j is None:
        tdp_w = getattr(spec, "tdp_w", None)
        energy_j = latency * tdp_w if tdp_w else np.full(n, np.nan)
        energy_method = "estimate-tdp (TDP x latency: an upper-end estimate)" if tdp_w else "none (no TDP known)"
    out["energy_j"] = energy_j
    out["energy_method"] = np.full(n, energy_method, dtype=object)
    out["power_w"] = energy_j / latency
    intensity = intensity_gco2e_per_kwh
    if intensity is None:
        grid = grid_intensity(region)
        intensity, intensity_source = grid.intensity_gco2e_per_kwh, f"{grid.region} {grid.year}: {grid.source}"
    else:
        intensity_source = "given"
    out["carbon_intensity_source"] = np.full(n, intensity_source, dtype=object)
    out["carbon_intensity_gco2e_per_kwh"] = np.full(n, float(intensity))
    out["pue"] = np.full(n, float(pue))
    out["carbon_gco2e"] = operational_gco2e(energy_j, intensity, pue)
    return pd.DataFrame(out)


def estimate(kernel: str, device: str, dtype: str = "fp32", *, model: Any = None, best_tile: bool = False,
             region: str = DEFAULT_REGION, intensity_gco2e_per_kwh: float | None = None, pue: float = 1.0,
             implementation: str | None = None, **shape: Any) -> dict[str, Any]:
    """One estimate as a dict (see ``estimate_many``); ``best_tile`` adds the predicted best
    tile among ``GPU_TILE_CANDIDATES`` (or ``CPU_TILE_CANDIDATES`` on a CPU) and its gain
    over the given (or default) configuration."""
    config = dict(shape)
    if implementation is not None:
        config["implementation"] = implementation
    frame = estimate_many(kernel, [config], device, dtype=dtype, model=model, region=region,
                          intensity_gco2e_per_kwh=intensity_gco2e_per_kwh, pue=pue)
    result = {k: _plain(v) for k, v in frame.iloc[0].to_dict().items()}
    if best_tile:
        result["best_tile"] = _best_tile(kernel, device, dtype, config, model, result["latency_s"])
    return result


def _best_tile(kernel: str, device: str, dtype: str, config: dict[str, Any], model: Any,
               default_latency_s: float) -> dict[str, Any]:
    if kernel != "gemm":
        raise UserInputError("--best-tile is available for gemm")
    if model is None:
        raise UserInputError("--best-tile needs a model trained on a tile sweep (perfscope train): the roofline "
                             "alone ignores on-chip reuse and would always favour the smallest tile")
    on_cpu = device.lower().startswith("cpu")
    candidates = CPU_TILE_CANDIDATES if on_cpu else GPU_TILE_CANDIDATES
    implementation = config.get("implementation") or ("numba.tiled" if on_cpu else "triton.matmul")
    configs = [{**config, "implementation": implementation, "tile_m": tm, "tile_n": tn, "tile_k": tk}
               for tm, tn, tk in candidates]
    frame = estimate_many(kernel, configs, device, dtype=dtype, model=model)
    best = frame.loc[frame["latency_s"].idxmin()]
    return {"tile_m": int(best["tile_m"]), "tile_n": int(best["tile_n"]), "tile_k": int(best["tile_k"]),
            "implementation": implementation, "latency_s": float(best["latency_s"]),
            "gain_over_default": float(default_latency_s / best["latency_s"]), "method": best["method"]}


def _plain(value: Any) -> Any:
    """numpy scalars to Python (for JSON)."""
    if hasattr(value, "item"):
        return value.item()
    return value


__all__ = ["estimate", "estimate_many", "config_frame"]
