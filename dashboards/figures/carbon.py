"""Carbon cost: energy per call -> kWh and gCO2e for a workload, compared across configurations.

Energy per call is the median over a configuration's rows (gross by default: the device
draws its idle power while it works too; net subtracts the idle draw). Workload energy
= energy per call x calls; gCO2e from ``perfscope.carbon`` with a grid intensity and PUE,
plus the device's embodied carbon over the busy time when asked. Estimated energy
(``energy_is_estimate``: TDP x utilisation, no meter) is labelled, hatched, never mixed
silently with measured energy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from perfscope.carbon import carbon_cost
from perfscope.dashboards.figures.common import (
    TEMPLATE,
    add_note,
    check_rows,
    message_figure,
    numeric,
    shape_labels,
    si,
)

COMPARE_BY = {"dtype": "dtype", "tile": "tile", "device_key": "device", "implementation": "implementation"}
ENERGY_COLUMNS = {"gross": "energy_gross_j", "net": "energy_net_j"}
MAX_SHAPES = 10


def energy_per_config(rows: pd.DataFrame, energy: str = "gross") -> pd.DataFrame:
    """Per (device, configuration): median energy (J) and time (s) per call, row count,
    whether any of its energy is estimated, and its labels. Rows without energy are left
    out (``attrs["rows_without_energy"]`` counts them)."""
    column = ENERGY_COLUMNS.get(energy, energy)
    need = (column, "device_key", "config_id", "time_s")
    columns = ["device_key", "config_id", "kernel", "implementation", "dtype", "tile", "shape", "energy_j",
               "time_s", "rows", "estimated"]
    if rows is None or rows.empty or any(c not in rows for c in need):
        frame = pd.DataFrame(columns=columns)
        frame.attrs["rows_without_energy"] = 0 if rows is None else len(rows)
        frame.attrs["rows_with_gross_energy"] = 0 if rows is None or rows.empty else _gross_rows(rows)
        return frame
    energy_j = numeric(rows, column)
    derived_net = np.zeros(len(rows), dtype=bool)
    if column == "energy_net_j" and "power_idle_w" in rows and "energy_gross_j" in rows:
        # idle power known but no stored net (imports): net = gross - idle power x time per call
        derived = numeric(rows, "energy_gross_j") - numeric(rows, "power_idle_w") * numeric(rows, "time_s")
        derived_net = ~np.isfinite(energy_j) & np.isfinite(derived)
        energy_j = np.where(derived_net, derived, energy_j)
    ok = np.isfinite(energy_j) & (energy_j > 0)
    subset = rows.iloc[np.flatnonzero(ok)]
    keys = ["device_key", "config_id"]
    estimated = (subset["energy_is_estimate"].to_numpy() == True) if "energy_is_estimate" in subset \
        else np.zeros(len(subset), dtype=bool)  # noqa: E712
    if "energy_quality" in subset:  # power read after the run (imports): doubtful, never "measured"
        estimated = estimated | (subset["energy_quality"].astype(str) == "doubtful").to_numpy()
    work = pd.DataFrame({"device_key": subset["device_key"], "config_id": subset["config_id"],
                         "energy_j": energy_j[ok], "time_s": numeric(subset, "time_s"), "estimated": estimated})
    agg = work.groupby(keys, observed=True, sort=False).agg(
        energy_j=("energy_j", "median"), time_s=("time_s", "median"), rows=("energy_j", "size"),
        estimated=("estimated", "max")).reset_index()
    firsts = subset.drop_duplicates(keys)
    firsts = firsts.set_index(keys).loc[pd.MultiIndex.from_frame(agg[keys])].reset_index()
    frame = pd.DataFrame({
        "device_key": agg["device_key"].astype(str).to_numpy(), "config_id": agg["config_id"].astype(str).to_numpy(),
        "kernel": firsts["kernel"].astype(str).to_numpy() if "kernel" in firsts else "",
        "implementation": firsts["implementation"].astype(str).to_numpy() if "implementation" in firsts else "",
        "dtype": firsts["dtype"].astype(str).to_numpy() if "dtype" in firsts else "",
        "tile": firsts["tile"].astype(str).to_numpy() if "tile" in firsts else "untiled",
        "shape": shape_labels(firsts),
        "energy_j": agg["energy_j"].to_numpy(dtype=float), "time_s": agg["time_s"].to_numpy(dtype=float),
        "rows": agg["rows"].to_numpy(), "estimated": agg["estimated"].astype(bool).to_numpy(),
    })
    frame.attrs["rows_without_energy"] = int((~ok).sum())
    frame.attrs["rows_net_derived"] = int((derived_net & ok).sum())
    frame.attrs["rows_with_gross_energy"] = _gross_rows(rows) if column != "energy_gross_j" else int(ok.sum())
    return frame


def _gross_rows(rows: pd.DataFrame) -> int:
    gross = numeric(rows, "energy_gross_j")
    return int((np.isfinite(gross) & (gross > 0)).sum())


def carbon_frame(rows: pd.DataFrame | None, *, intensity_gco2e_per_kwh: float, pue: float = 1.0, calls: float = 1e6,
                 energy: str = "gross", embodied_kgco2e: float | None = None, lifetime_years: float | None = None,
                 utilisation: float = 1.0, per_config: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per configuration: median energy and time per call, and kWh / gCO2e for ``calls`` calls.

    ``per_config``: ``energy_per_config(rows, energy)`` when already computed (the page
    caches it: intensity, PUE and workload only rescale it). Raises ``InvalidInputError``
    for a bad intensity, PUE or embodied-carbon input.
    """
    base = per_config if per_config is not None else energy_per_config(rows, energy)
    cost = carbon_cost(base["energy_j"].to_numpy(dtype=float) * calls, intensity_gco2e_per_kwh, pue=pue,
                       busy_time_s=base["time_s"].to_numpy(dtype=float) * calls, embodied_kgco2e=embodied_kgco2e,
                       lifetime_years=lifetime_years, utilisation=utilisation)
    frame = base.assign(energy_kwh=np.asarray(cost.energy_kwh, dtype=float).reshape(-1),
                        operational_gco2e=np.asarray(cost.operational_gco2e, dtype=float).reshape(-1),
                        embodied_gco2e=np.asarray(cost.embodied_gco2e, dtype=float).reshape(-1),
                        total_gco2e=np.asarray(cost.total_gco2e, dtype=float).reshape(-1))
    frame.attrs.update(base.attrs)
    frame.attrs["calls"] = calls
    return frame


def carbon_figure(frame: pd.DataFrame, by: str = "dtype", *, workload: str = "per 1M calls",
                  max_shapes: int = MAX_SHAPES) -> go.Figure:
    """Grouped bars of gCO2e per shape, one bar per value of ``by`` (dtype, tile, device,
    implementation); estimated energy hatched and named "(estimated energy)"."""
    title = f"Carbon {workload}"
    problem = check_rows(frame, ["shape", "total_gco2e", "estimated", by], title)
    if problem is not None:
        without = frame.attrs.get("rows_without_energy", 0) if isinstance(frame, pd.DataFrame) else 0
        gross_rows = frame.attrs.get("rows_with_gross_energy", 0) if isinstance(frame, pd.DataFrame) else 0
        if isinstance(frame, pd.DataFrame) and frame.empty and without and gross_rows:
            return message_figure(f"{title}: no net-of-idle energy in the {without:,} selected rows, though "
                                  f"{gross_rows:,} have gross energy: net needs the device's idle power, which "
                                  "the meter records only when it measured idle before the run; use gross",
                                  title)
        if isinstance(frame, pd.DataFrame) and frame.empty and without:
            return message_figure(f"{title}: none of the {without:,} selected rows has energy "
                                  "(no meter on that machine; collect with --energy estimate-tdp --tdp-w W "
                                  "for a labelled estimate)", title)
        return problem
    shapes = frame.groupby("shape").size().sort_values(ascending=False)
    kept = list(shapes.index[:max_shapes])
    part = frame[frame["shape"].isin(kept)]
    fig = go.Figure()
    for (value, estimated), group in part.groupby([part[by].astype(str), "estimated"], sort=True):
        agg = group.groupby("shape", sort=False).agg(total=("total_gco2e", "median"), kwh=("energy_kwh", "median"),
                                                     energy=("energy_j", "median"), n=("rows", "sum"))
        name = f"{value} (estimated energy)" if estimated else str(value)  # estimated or doubtful
        fig.add_bar(x=agg.index, y=agg["total"], name=name,
                    marker={"pattern": {"shape": "/" if estimated else ""}},
                    customdata=np.column_stack([agg["kwh"], agg["energy"], agg["n"]]),
                    hovertemplate=(f"{by} {value}{' (estimated energy)' if estimated else ''}<br>%{{x}}<br>"
                                   "%{y:.4s} gCO2e " + workload + "<br>%{customdata[0]:.4s} kWh; "
                                   "%{customdata[1]:.4s} J per call (%{customdata[2]} rows)<extra></extra>"))
    notes = []
    if len(shapes) > max_shapes:
        notes.append(f"{len(shapes)} shapes: the {max_shapes} with the most configurations shown")
    if part["estimated"].any():
        notes.append("hatched: estimated energy (TDP x utilisation, no meter) or doubtful energy (power read "
                     "after the run, from an import), never counted as measured")
    if frame.attrs.get("rows_without_energy"):
        notes.append(f"{frame.attrs['rows_without_energy']:,} selected rows without energy left out")
    fig.update_layout(template=TEMPLATE, title=title, barmode="group", margin={"b": 130},
                      yaxis={"title": f"gCO2e {workload}", "type": "log"}, xaxis_title="shape",
                      legend_title=COMPARE_BY.get(by, by))
    return add_note(fig, "; ".join(notes))


def carbon_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Totals over the selection per (device, dtype, estimated): median energy per call and
    the workload's kWh and gCO2e (median configuration)."""
    if frame is None or frame.empty:
        return pd.DataFrame(columns=["device", "dtype", "energy", "energy per call", "kWh", "gCO2e", "configs"])
    out = frame.groupby(["device_key", "dtype", "estimated"], sort=True).agg(
        energy_j=("energy_j", "median"), kwh=("energy_kwh", "median"), g=("total_gco2e", "median"),
        configs=("config_id", "size")).reset_index()
    return pd.DataFrame({
        "device": out["device_key"], "dtype": out["dtype"],
        "energy": np.where(out["estimated"], "estimated (TDP) or doubtful", "measured"),
        "energy per call": [si(v, "J") for v in out["energy_j"]],
        "kWh": [f"{v:.4g}" for v in out["kwh"]],
        "gCO2e": [f"{v:.4g}" if math.isfinite(v) else "n/a" for v in out["g"]],
        "configs": out["configs"],
    })
