"""Efficiency gap: how far measured kernels run from their roofline bound (docs/formulas.md).

The base layer of the models: it reads the measured targets of profile rows
(``measured_latency_s``, ``measured_energy_j``, ``ok_mask``: numpy, on columns or on a
DataFrame's columns alike) and, for the dashboard and reports, the gap tables
(``efficiency_gap``, ``efficiency_summary``: DataFrames, built from the column features of
``perfscope.models.roofline_model.roofline_columns``).

Definitions (per row, ``bound_time_s`` = max(FLOPs/peak, bytes/bandwidth, launch floor)):

* ``gap`` = measured time / ``bound_time_s`` (>= 1 when the bound holds; Lavin's
  efficiency gap is its logarithm: the vertical distance to the peak line on log axes);
* ``achieved_fraction`` = ``bound_time_s`` / measured time = 1 / gap (1: at the roof).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.columns import as_columns, columns_size, float_column
from perfscope.devices.declared import declared_devices
from perfscope.devices.registry import resolve_row_devices
from perfscope.devicespecs import NO_DEVICE, DeviceFigures, RooflineDevice
from perfscope.errors import InvalidInputError
from perfscope.roofline import feature_columns
from perfscope.schema import CONTENDED_STATUS

if TYPE_CHECKING:
    import pandas as pd

# pandas (and perfscope.schema, which loads pyarrow) are imported by the functions that
# take or return DataFrames only: the models import the measured-target readers and the
# column features on the light path of a loaded model.

TIME_COLUMN = "time_median_ms"
ENERGY_COLUMN = "energy_gross_j"
SUMMARY_BY = ("device_key", "kernel", "dtype", "bound")
"""Default grouping of ``efficiency_summary``."""


# ---- devices --------------------------------------------------------------------------

# ---- features: each row on its own device

Computed = tuple[RooflineDevice, Mapping[str, Any]]
"""``(device, feature_columns(rows, device))``: features a caller has already computed for the rows."""


def roofline_columns(rows: Mapping[str, Any], devices: Mapping[str, RooflineDevice] | None = None, *,
                     computed: Computed | None = None) -> dict[str, np.ndarray]:
    """``perfscope.roofline.feature_columns`` of each row on its own device (``device_key``,
    then ``device_name``, resolved by ``perfscope.devices.registry.resolve_row_devices``;
    ``devices`` by key first, figures the rows declare at import last).

    ``computed``: ``(device, feature_columns(rows, device))`` when the caller has them (an
    estimate computes them for its output): returned as they are when every row resolves
    to a device with the same figures (``DeviceFigures``), since features depend on the
    rows and those figures only.
    """
    size = columns_size(rows)
    if size == 0:
        return feature_columns(rows, NO_DEVICE)
    if "device_key" not in rows:
        raise InvalidInputError("rows have no device_key column: pass perfscope profile rows")
    keys = np.asarray(rows["device_key"]).astype(str)
    names = np.asarray(rows["device_name"], dtype=object) if "device_name" in rows else np.empty(size, dtype=object)
    unique = list(dict.fromkeys(keys.tolist()))  # in order of appearance (np.unique would sort 1M strings)
    first = [int(np.argmax(keys == key)) for key in unique] if len(unique) > 1 else [0]
    resolved = resolve_row_devices(unique, names[first].tolist(), devices, declared=declared_devices(rows))
    if len(unique) == 1:
        device = resolved[unique[0]]
        if computed is not None and DeviceFigures.of(computed[0]) == DeviceFigures.of(device):
            return dict(computed[1])
        return feature_columns(rows, device)
    positions = [np.flatnonzero(keys == key) for key in unique]
    parts = [feature_columns({c: np.asarray(v)[where] for c, v in rows.items()}, resolved[key])
             for key, where in zip(unique, positions, strict=True)]
    order = np.argsort(np.concatenate(positions), kind="stable")
    return {column: np.concatenate([part[column] for part in parts])[order] for column in parts[0]}


# ---- measured targets (columns, or a DataFrame: only ``name in rows`` and ``rows[name]`` are used)

def _size(rows: Any) -> int:
    return columns_size(rows) if isinstance(rows, Mapping) else len(rows)


def _numbers(rows: Any, name: str) -> np.ndarray:
    return float_column({name: np.asarray(rows[name])} if name in rows else {}, name, _size(rows))


def _texts(rows: Any, name: str, missing: str) -> np.ndarray:
    return np.array([missing if v is None or (isinstance(v, float) and v != v) else str(v)
                     for v in np.asarray(rows[name], dtype=object).tolist()], dtype=object)


def measured_latency_s(rows: Any) -> np.ndarray:
    """Measured median time per call in seconds (NaN where missing or not positive)."""
    values = _numbers(rows, TIME_COLUMN) / 1e3
    return np.where(values > 0, values, np.nan)


def usable_energy_mask(rows: Any, include_doubtful: bool = False) -> np.ndarray:
    """Rows whose energy is a measurement fit to learn from.

    Measured (``energy_is_estimate`` False: a TDP estimate is never mixed with measured
    energy), positive ``energy_gross_j``, and ``energy_quality`` not ``"doubtful"``
    unless ``include_doubtful``.
    """
    mask = _numbers(rows, ENERGY_COLUMN) > 0
    if "energy_is_estimate" in rows:
        mask &= _texts(rows, "energy_is_estimate", "False") != "True"
    if "energy_method" in rows:
        mask &= _texts(rows, "energy_method", "none") != "none"
    if not include_doubtful and "energy_quality" in rows:
        mask &= _texts(rows, "energy_quality", "") != "doubtful"
    return mask


def measured_energy_j(rows: Any, include_doubtful: bool = False) -> np.ndarray:
    """Gross energy per call (J) where ``usable_energy_mask`` holds, NaN elsewhere."""
    return np.where(usable_energy_mask(rows, include_doubtful), _numbers(rows, ENERGY_COLUMN), np.nan)


def ok_mask(rows: Any) -> np.ndarray:
    """Rows with ``status == "ok"`` and a positive measured time (what models learn from)."""
    mask = np.isfinite(measured_latency_s(rows))
    if "status" in rows:
        mask &= _texts(rows, "status", "") == "ok"
    return mask


def ok_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``ok_mask`` rows of a DataFrame."""
    return rows[ok_mask(rows)]


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
    import pandas as pd  # kept off the light estimate path

    columns = as_columns(rows)
    features = roofline_columns({name: values[ok_mask(columns)] for name, values in columns.items()}, devices)
    measured = measured_latency_s(features)
    bound = np.asarray(features["bound_time_s"], dtype=float)
    keep = np.isfinite(bound) & (bound > 0)
    frame = pd.DataFrame({name: np.asarray(values)[keep] for name, values in features.items()})
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
    import pandas as pd  # kept off the light estimate path

    gap = rows if "achieved_fraction" in rows else efficiency_gap(rows, devices)
    by = list(by)
    unknown = [c for c in by if c not in gap]
    if unknown:
        raise InvalidInputError(f"cannot group by {unknown}: not columns of the rows")
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
