"""Time against energy per configuration, with the Pareto front (as Zeus and the
ML.ENERGY leaderboard show it): no configuration on the front is beaten on both time and
energy by another. One point per (device, configuration): the medians of its rows.
Colour per dtype, symbol per power limit when the data records one; energy that is
estimated (TDP x time) or doubtful (read after the run) is drawn hollow and said so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from perfscope.dashboards.aggregate import group_codes, group_quantiles
from perfscope.dashboards.figures.common import (
    DEFAULT_MAX_POINTS,
    TEMPLATE,
    add_note,
    check_rows,
    config_labels,
    message_figure,
    numeric,
    split_by,
)
from perfscope.dashboards.units import duration, log_axis, quantity

ENERGY_COLUMNS = {"gross": "energy_gross_j", "net": "energy_net_j"}


def pareto_mask(time_s: np.ndarray, energy_j: np.ndarray) -> np.ndarray:
    """True for the points no other point beats on both time and energy (lower is better)."""
    ok = np.isfinite(time_s) & np.isfinite(energy_j)
    mask = np.zeros(len(time_s), dtype=bool)
    idx = np.flatnonzero(ok)
    if not idx.size:
        return mask
    order = idx[np.lexsort((energy_j[idx], time_s[idx]))]  # by time, then energy
    energies = energy_j[order]
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(energies)[:-1]])
    mask[order[energies < best_before]] = True
    return mask


def configuration_medians(rows: pd.DataFrame, energy: str = "gross") -> pd.DataFrame:
    """One row per (device, configuration) with a time and an energy: their medians, the
    first row's other columns, and ``doubtful_energy`` (any row estimated or doubtful)."""
    column = ENERGY_COLUMNS.get(energy, "energy_gross_j")
    time_s, energy_j = numeric(rows, "time_s"), numeric(rows, column)
    usable = np.isfinite(time_s) & (time_s > 0) & np.isfinite(energy_j) & (energy_j > 0)
    if not usable.any():
        return pd.DataFrame()
    part = rows.iloc[np.flatnonzero(usable)]
    groups, _ = group_codes(part, ["device_key", "config_id"])
    counts, time_median = group_quantiles(groups, time_s[usable], [0.5])
    _, energy_median = group_quantiles(groups, energy_j[usable], [0.5], n_groups=len(counts))
    first = np.full(len(counts), -1, dtype=np.int64)
    first[groups[::-1]] = np.arange(len(groups) - 1, -1, -1)
    out = part.iloc[first].copy()
    out["time_s"], out["energy_j"], out["rows"] = time_median[:, 0], energy_median[:, 0], counts
    flagged = np.zeros(len(part))
    if "energy_is_estimate" in part:
        flagged += part["energy_is_estimate"].to_numpy() == True  # noqa: E712
    if "energy_quality" in part:
        flagged += part["energy_quality"].astype(str).str.contains("doubt").to_numpy()
    out["doubtful_energy"] = np.bincount(groups, weights=flagged, minlength=len(counts)) > 0
    return out.reset_index(drop=True)


def pareto_figure(rows: pd.DataFrame, energy: str = "gross", *,
                  max_points: int = DEFAULT_MAX_POINTS) -> tuple[go.Figure, pd.DataFrame]:
    """The time-energy scatter with its Pareto front, and the front as a table."""
    title = "Time vs energy per configuration"
    problem = check_rows(rows, ["time_s", "device_key", "config_id"], title)
    if problem is not None:
        return problem, pd.DataFrame()
    configs = configuration_medians(rows, energy)
    if configs.empty:
        why = ("no row has net energy: net of idle needs the idle power, which the meter records only when "
               "it measured idle before the run" if energy == "net" else "no row has both a time and an energy")
        return message_figure(f"{title}: {why}", title), pd.DataFrame()
    t, e = configs["time_s"].to_numpy(), configs["energy_j"].to_numpy()
    front = pareto_mask(t, e)
    configs["on_front"] = front
    shown = configs
    note = None
    if len(configs) > max_points:  # the front always, then an even sample of the rest
        rest = np.flatnonzero(~front)
        step = -(-len(rest) // max_points)  # ceil: at most max_points of the rest
        keep = np.sort(np.concatenate([np.flatnonzero(front), rest[::step]]))
        shown = configs.iloc[keep]
        note = f"{len(configs):,} configurations: the front and an even sample of {len(shown):,} shown"
    power = numeric(shown, "power_limit_w") if "power_limit_w" in shown else np.full(len(shown), np.nan)
    shown = shown.assign(power_label=np.where(np.isfinite(power), [f"{p:g} W limit" for p in power],
                                              "power limit not recorded"))
    symbols = ("circle", "square", "diamond", "triangle-up", "cross", "x")
    fig = go.Figure()
    for i, (limit, by_limit) in enumerate(split_by(shown, "power_label")):
        for dtype, part in split_by(by_limit, "dtype"):
            doubtful = part["doubtful_energy"].to_numpy(dtype=bool)
            for hollow, sub in ((False, part[~doubtful]), (True, part[doubtful])):
                if sub.empty:
                    continue
                name = f"{dtype}, {limit}" + (" (estimated/doubtful energy)" if hollow else "")
                fig.add_scatter(x=sub["time_s"], y=sub["energy_j"], mode="markers", name=name,
                                marker={"symbol": symbols[i % len(symbols)] + ("-open" if hollow else ""),
                                        "size": 8, "opacity": 0.75},
                                text=config_labels(sub) + "<br>device: " + sub["device_key"].astype(str).to_numpy(),
                                customdata=np.column_stack([sub["rows"].to_numpy(dtype=float)]),
                                hovertemplate="<b>%{text}</b><br>time %{x:.3s}s, energy %{y:.3s}J"
                                              "<br>median of %{customdata[0]} row(s)<extra></extra>")
    frontier = configs[front].sort_values("time_s")
    fig.add_scatter(x=frontier["time_s"], y=frontier["energy_j"], mode="lines+markers", name="Pareto front",
                    line={"shape": "hv", "color": "black", "width": 2},
                    marker={"size": 11, "symbol": "star", "color": "#d69e2e", "line": {"color": "black", "width": 1}},
                    text=config_labels(frontier), hovertemplate="<b>front</b>: %{text}<extra></extra>")
    label = "net of idle" if energy == "net" else "gross (including idle power)"
    fig.update_layout(template=TEMPLATE, title=f"{title}: {int(front.sum())} on the Pareto front",
                      xaxis=log_axis(t, "s", title="time per call (median)"),
                      yaxis=log_axis(e, "J", title=f"energy per call, {label}"), margin={"b": 110})
    table = pd.DataFrame({
        "configuration": config_labels(frontier), "device": frontier["device_key"].astype(str).to_numpy(),
        "time": [duration(v) for v in frontier["time_s"]], "energy": [quantity(v, "J") for v in frontier["energy_j"]],
        "energy kind": np.where(frontier["doubtful_energy"], "estimated or doubtful", "measured"),
        "rows": frontier["rows"].to_numpy()})
    return add_note(fig, note), table
