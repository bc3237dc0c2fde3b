"""Efficiency gap: how far measured kernels run from their roofline bound (docs/formulas.md).

The base layer of the models: it resolves each row's device, computes the roofline
features with ``perfscope.roofline.feature_frame`` (the one features module) and reads
the measured targets. Pure functions over profile rows (a pandas DataFrame with the
perfscope schema columns); the dashboard calls ``efficiency_gap`` and
``efficiency_summary`` directly.

Definitions (per row, ``bound_time_s`` = max(FLOPs/peak, bytes/bandwidth, launch floor)):

* ``gap`` = measured time / ``bound_time_s`` (>= 1 when the bound holds; Lavin's
  efficiency gap is its logarithm: the vertical distance to the peak line on log axes);
* ``achieved_fraction`` = ``bound_time_s`` / measured time = 1 / gap (1: at the roof).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from perfscope.devices.registry import resolve_row_devices
from perfscope.devicespecs import RooflineDevice
from perfscope.errors import UserInputError
from perfscope.schema import CONTENDED_STATUS

TIME_COLUMN = "time_median_ms"
ENERGY_COLUMN = "energy_gross_j"
SUMMARY_BY = ("device_key", "kernel", "dtype", "bound")
"""Default grouping of ``efficiency_summary``."""


# ---- devices --------------------------------------------------------------------------

# ---- features and targets -------------------------------------------------------------

def roofline_features(rows: pd.DataFrame, devices: Mapping[str, RooflineDevice] | None = None) -> pd.DataFrame:
    """``rows`` with ``perfscope.roofline.feature_frame`` columns, each row on its own device.

    ``devices`` maps device keys to devices (missing keys are resolved by
    ``perfscope.devices.registry.resolve_row_devices``). Rows keep their order and index.
    """
    from perfscope.roofline import feature_frame

    if len(rows) == 0:
        return feature_frame(rows, _NO_DEVICE)
    if "device_key" not in rows:
        raise UserInputError("rows have no device_key column: pass perfscope profile rows")
    resolved = resolve_row_devices(rows["device_key"].astype(str).tolist(),
                                   rows["device_name"].tolist() if "device_name" in rows else None, devices)
    keys = rows["device_key"].astype(str).to_numpy()
    unique = pd.unique(keys)
    if len(unique) == 1:
        return feature_frame(rows, resolved[unique[0]])
    positions = [np.flatnonzero(keys == key) for key in unique]
    parts = [feature_frame(rows.iloc[where], resolved[key]) for key, where in zip(unique, positions, strict=True)]
    for part in parts:  # categoricals of one constant differ per device: plain strings to concatenate
        for column in ("bound", "device_key", "device_source", "launch_overhead_source"):
            part[column] = part[column].astype(object)
    frame = pd.concat(parts).iloc[np.argsort(np.concatenate(positions), kind="stable")]
    frame["bound"] = pd.Categorical(frame["bound"], categories=["launch", "memory", "compute"])
    return frame


def measured_latency_s(rows: pd.DataFrame) -> np.ndarray:
    """Measured median time per call in seconds (NaN where missing or not positive)."""
    if TIME_COLUMN not in rows:
        return np.full(len(rows), np.nan)
    values = pd.to_numeric(rows[TIME_COLUMN], errors="coerce").to_numpy(dtype=float, na_value=np.nan) / 1e3
    return np.where(values > 0, values, np.nan)


def usable_energy_mask(rows: pd.DataFrame, include_doubtful: bool = False) -> np.ndarray:
    """Rows whose energy is a measurement fit to learn from.

    Measured (``energy_is_estimate`` False: a TDP estimate is never mixed with measured
    energy), positive ``energy_gross_j``, and ``energy_quality`` not ``"doubtful"``
    unless ``include_doubtful``.
    """
    if ENERGY_COLUMN not in rows:
        return np.zeros(len(rows), dtype=bool)
    energy = pd.to_numeric(rows[ENERGY_COLUMN], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    mask = energy > 0
    if "energy_is_estimate" in rows:
        mask &= ~rows["energy_is_estimate"].fillna(False).astype(bool).to_numpy()
    if "energy_method" in rows:
        mask &= (rows["energy_method"].fillna("none").astype(str) != "none").to_numpy()
    if not include_doubtful and "energy_quality" in rows:
        mask &= (rows["energy_quality"].fillna("").astype(str) != "doubtful").to_numpy()
    return mask


def measured_energy_j(rows: pd.DataFrame, include_doubtful: bool = False) -> np.ndarray:
    """Gross energy per call (J) where ``usable_energy_mask`` holds, NaN elsewhere."""
    if ENERGY_COLUMN not in rows:
        return np.full(len(rows), np.nan)
    energy = pd.to_numeric(rows[ENERGY_COLUMN], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(usable_energy_mask(rows, include_doubtful), energy, np.nan)


def ok_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``status == "ok"`` and a positive measured time (what models learn from)."""
    mask = np.isfinite(measured_latency_s(rows))
    if "status" in rows:
        mask &= (rows["status"].astype(str) == "ok").to_numpy()
    return rows[mask]


def admit_contended(rows: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``contended`` rows (timed while another workload shared the device, see
    ``perfscope.importers.gpperf``) relabelled ``ok``: for figures over every timed row."""
    if "status" not in rows or not (rows["status"].astype(str) == CONTENDED_STATUS).any():
        return rows
    out = rows.copy()
    out.loc[out["status"].astype(str) == CONTENDED_STATUS, "status"] = "ok"
    return out


def count_contended(rows: pd.DataFrame) -> int:
    """Rows timed while another workload shared the device (left out of training by default)."""
    return int((rows["status"].astype(str) == CONTENDED_STATUS).sum()) if "status" in rows else 0


# ---- the gap --------------------------------------------------------------------------

def efficiency_gap(rows: pd.DataFrame, devices: Mapping[str, RooflineDevice] | None = None) -> pd.DataFrame:
    """Roofline features plus ``measured_time_s``, ``gap`` and ``achieved_fraction`` per row.

    Only ``ok`` rows with a time and a finite bound are kept (a device without a peak
    for the row's dtype has no bound). See the module docstring for the definitions.
    """
    frame = roofline_features(ok_rows(rows), devices)
    measured = measured_latency_s(frame)
    bound = frame["bound_time_s"].to_numpy(dtype=float)
    keep = np.isfinite(bound) & (bound > 0)
    frame = frame[keep].copy()
    frame["measured_time_s"] = measured[keep]
    frame["gap"] = measured[keep] / bound[keep]
    frame["achieved_fraction"] = bound[keep] / measured[keep]
    return frame


def efficiency_summary(rows: pd.DataFrame, by: Sequence[str] = SUMMARY_BY,
                       devices: Mapping[str, RooflineDevice] | None = None) -> pd.DataFrame:
    """Achieved fraction of the roofline bound per group: n, median, p10, p90 (and median gap).

    ``rows`` are profile rows, or the output of ``efficiency_gap`` (used as is when it
    already has ``achieved_fraction``). One output row per non-empty group of ``by``.
    """
    gap = rows if "achieved_fraction" in rows else efficiency_gap(rows, devices)
    by = list(by)
    unknown = [c for c in by if c not in gap]
    if unknown:
        raise UserInputError(f"cannot group by {unknown}: not columns of the rows")
    columns = ["n_rows", "fraction_median", "fraction_p10", "fraction_p90", "gap_median"]
    if len(gap) == 0:
        return pd.DataFrame(columns=[*by, *columns])
    keys = gap[by].astype(object).where(gap[by].notna(), "")
    group_keys = [keys[c] for c in by]
    grouped = gap["achieved_fraction"].groupby(group_keys, sort=True, observed=True)
    out = pd.DataFrame({
        "n_rows": grouped.size(),
        "fraction_median": grouped.median(),
        "fraction_p10": grouped.quantile(0.1),
        "fraction_p90": grouped.quantile(0.9),
        "gap_median": (1.0 / gap["achieved_fraction"]).groupby(group_keys, sort=True, observed=True).median(),
    })
    return out.reset_index()


class _NoDevice:
    """Stand-in device for an empty frame (feature_frame still needs one)."""

    key = "none"
    name = "none"
    source_kind = "spec"
    sm_count = None
    l2_bytes = None
    mem_bandwidth_bytes_per_s = None
    launch_overhead_s = math.nan
    launch_overhead_source = "assumed"
    peaks_flops_per_s: dict[str, float] = {}


_NO_DEVICE = _NoDevice()
