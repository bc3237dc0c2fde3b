"""Roofline figures declared at import for a device with no spec row and no calibrated
profile (``perfscope import ... --peak-flops 19.5T --bandwidth 1.5T``).

The figures travel with the data: every imported row carries them
(``declared_peak_flops_per_s``, ``declared_bandwidth_bytes_per_s``), so a dataset copied
to another machine keeps them. The peak is the one of the rows' own dtype and fp32 math
mode (``perfscope.dtypes.peak_dtype``: an fp32 import declared ``--fp32-math tf32`` declares
the TF32 peak). Precedence (``perfscope.devices.registry.resolve_row_devices``): a
calibrated profile, then a spec row, then these figures, then nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from perfscope.columns import columns_size, float_column
from perfscope.devicespecs import ASSUMED_GPU_LAUNCH_OVERHEAD_S, DeviceFigures
from perfscope.dtypes import peak_dtype

PEAK_COLUMN = "declared_peak_flops_per_s"
BANDWIDTH_COLUMN = "declared_bandwidth_bytes_per_s"
SOURCE_KIND = "declared"  # the features' device_source for such a device


def declared_devices(rows: Mapping[str, Any] | Any) -> dict[str, DeviceFigures]:
    """``{device_key: DeviceFigures}`` of every device whose rows declare a peak or a
    bandwidth (the first row with a figure wins for each dtype); empty when none does."""
    if PEAK_COLUMN not in rows and BANDWIDTH_COLUMN not in rows:
        return {}
    columns = {name: np.asarray(rows[name]) for name in (PEAK_COLUMN, BANDWIDTH_COLUMN) if name in rows}
    size = columns_size(columns)
    peaks = float_column(columns, PEAK_COLUMN, size)
    bandwidths = float_column(columns, BANDWIDTH_COLUMN, size)
    declaring = np.flatnonzero(~(np.isnan(peaks) & np.isnan(bandwidths)))
    if declaring.size == 0 or "device_key" not in rows:
        return {}

    def cells(name: str) -> list[Any]:
        return np.asarray(rows[name], dtype=object)[declaring].tolist() if name in rows else [None] * declaring.size

    found: dict[str, dict[str, Any]] = {}
    for key, name, dtype, mode, peak, bandwidth in zip(
            cells("device_key"), cells("device_name"), cells("dtype"), cells("fp32_math"),
            peaks[declaring].tolist(), bandwidths[declaring].tolist(), strict=True):
        device = found.setdefault(str(key), {"name": name if isinstance(name, str) else str(key), "peaks": {},
                                             "bandwidth": math.nan})
        if not math.isnan(peak) and isinstance(dtype, str):
            device["peaks"].setdefault(peak_dtype(dtype, mode if isinstance(mode, str) else None), peak)
        if math.isnan(device["bandwidth"]):
            device["bandwidth"] = bandwidth
    return {key: DeviceFigures(key=key, name=d["name"], source_kind=SOURCE_KIND, sm_count=None, l2_bytes=None,
                               mem_bandwidth_bytes_per_s=None if math.isnan(d["bandwidth"]) else d["bandwidth"],
                               launch_overhead_s=ASSUMED_GPU_LAUNCH_OVERHEAD_S, launch_overhead_source="assumed",
                               peaks=tuple(sorted(d["peaks"].items())))
            for key, d in found.items()}
