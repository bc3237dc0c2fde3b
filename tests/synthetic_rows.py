"""Synthetic profile rows shared by the model tests (not a test module)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from perfscope.devices.registry import device_spec
from perfscope.roofline import feature_columns

H100 = "NVIDIA H100 80GB HBM3"


def features_frame(rows: pd.DataFrame, device, **options) -> pd.DataFrame:
    """``rows`` with the roofline features of ``device``, framed on the rows' index (for assertions)."""
    return pd.DataFrame(feature_columns(rows, device, **options), index=rows.index)


def rows_with_energy(sizes=(256, 512, 1024, 2048), seed=0) -> pd.DataFrame:
    """Measured-looking fp16/fp32 GEMM rows on an H100, two tiles per shape: times at 60% of
    the bound with 5% lognormal noise, energy from a linear law (80 W, 1 pJ/FLOP, 0.3 nJ/byte)."""
    rng = np.random.default_rng(seed)
    records = [{"kernel": "gemm", "implementation": "triton", "dtype": dtype, "batch": 1, "m": m, "n": n, "k": k,
                "tile_m": tile, "tile_n": 64, "status": "ok", "device_key": "cuda-h100", "device_name": H100,
                "run_id": "r", "config_id": f"{dtype}-{m}-{n}-{k}-{tile}", "params_json": '{"blocksize1": 64}'}
               for (m, n, k), dtype, tile in itertools.product(itertools.product(sizes, repeat=3), ("fp16", "fp32"),
                                                               (64, 128))]
    rows = pd.DataFrame(records)
    frame = features_frame(rows, device_spec(H100))
    time_s = frame["bound_time_s"].to_numpy() / 0.6 * np.exp(0.05 * rng.standard_normal(len(rows)))
    rows["time_median_ms"] = time_s * 1e3
    rows["energy_gross_j"] = 80 * time_s + 1e-12 * frame["flops"] + 3e-10 * frame["min_bytes"]
    rows["energy_method"] = "nvml-counter"
    rows["energy_is_estimate"] = False
    return rows
