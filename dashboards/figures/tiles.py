"""Tile explorer: latency or energy across tile sizes for one shape and dtype.

Cells are tile_m x tile_n; each shows the best (lowest) median over the other tile
parameters (tile_k, warps, stages, group size). The best cell is starred and named in
full. With a model's predictions (``predicted_time_s`` column) the predicted grid sits
next to the measured one, each with its own best tile.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perfscope.dashboards.figures.common import TEMPLATE, add_note, check_rows, message_figure, numeric, seconds, si
from perfscope.dashboards.units import log_axis

VALUES = {"time": ("time_s", "median time (s)"), "energy": ("energy_gross_j", "energy per call (J)")}
OTHER_TILE_PARAMS = ("tile_k", "tile_num_warps", "tile_num_stages", "tile_group_m")


def tile_grid(rows: pd.DataFrame, value_column: str) -> tuple[pd.DataFrame, pd.Series | None]:
    """(pivot tile_m x tile_n of the best median value, the row of the best configuration)."""
    values = numeric(rows, value_column)
    ok = np.isfinite(values) & np.isfinite(numeric(rows, "tile_m")) & np.isfinite(numeric(rows, "tile_n"))
    if not ok.any():
        return pd.DataFrame(), None
    others = [c for c in OTHER_TILE_PARAMS if c in rows]
    frame = rows.iloc[np.flatnonzero(ok)][["tile_m", "tile_n", *others]].copy()
    for c in ["tile_m", "tile_n", *others]:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float).fillna(-1.0)
    frame["value"] = values[ok]
    per_config = frame.groupby(["tile_m", "tile_n", *others], sort=True)["value"].median().reset_index()
    best = per_config.loc[per_config["value"].idxmin()]
    grid = per_config.groupby(["tile_m", "tile_n"])["value"].min().unstack("tile_n")
    return grid, best


def _best_label(best: pd.Series, value_column: str) -> str:
    parts = [f"{int(best['tile_m'])}x{int(best['tile_n'])}"]
    names = {"tile_k": "k", "tile_num_warps": "warps", "tile_num_stages": "stages", "tile_group_m": "group"}
    for c, short in names.items():
        if c in best and best[c] >= 0:
            parts.append(f"{short} {int(best[c])}")
    unit = "s" if value_column.endswith("_s") else "J"
    return f"best: {', '.join(parts)} ({si(float(best['value']), unit)})"


def tile_heatmap_figure(rows: pd.DataFrame, value: str = "time") -> go.Figure:
    """Heatmap of ``value`` ("time" or "energy") over tile_m x tile_n, best tile marked;
    measured next to predicted when rows carry ``predicted_time_s`` (time only)."""
    column, label = VALUES.get(value, VALUES["time"])
    title = f"Tile explorer: {label}"
    problem = check_rows(rows, ["tile_m", "tile_n", column], title)
    if problem is not None:
        return problem
    grid, best = tile_grid(rows, column)
    if best is None and len(rows) and not np.isfinite(numeric(rows, "tile_m")).any():
        return message_figure(f"{title}: these rows have no tile sizes (an imported parameter space: its "
                              "parameters are under Parameter space below)", title)
    if best is None:
        what = "energy" if value == "energy" else "a measured time"
        return message_figure(f"{title}: no tiled rows with {what} in this selection "
                              "(pick a shape and dtype measured with several tiles)", title)
    estimated = value == "energy" and "energy_is_estimate" in rows and bool(
        rows["energy_is_estimate"].fillna(False).astype(bool).any())
    predicted = value == "time" and "predicted_time_s" in rows and np.isfinite(numeric(rows, "predicted_time_s")).any()
    panels = [("measured" + (" (estimated energy)" if estimated else ""), grid, best, column)]
    if predicted:
        pgrid, pbest = tile_grid(rows, "predicted_time_s")
        if pbest is not None:
            panels.append(("predicted (model)", pgrid, pbest, "predicted_time_s"))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.12)
    zmin = min(float(np.nanmin(p[1].to_numpy())) for p in panels)
    zmax = max(float(np.nanmax(p[1].to_numpy())) for p in panels)
    notes = []
    for i, (name, g, b, col) in enumerate(panels, start=1):
        xs = [str(int(v)) for v in g.columns]
        ys = [str(int(v)) for v in g.index]
        z = g.to_numpy(dtype=float)
        text = [[(seconds(v) if col.endswith("_s") else si(v, "J")) if math.isfinite(v) else "" for v in row]
                for row in z]
        bx, by = xs.index(str(int(b["tile_n"]))), ys.index(str(int(b["tile_m"])))
        text[by][bx] = "★ " + text[by][bx]
        fig.add_heatmap(x=xs, y=ys, z=np.log10(z), text=text, texttemplate="%{text}", colorscale="Viridis_r",
                        zmin=math.log10(zmin), zmax=math.log10(zmax), showscale=(i == len(panels)),
                        colorbar=_colorbar(zmin, zmax, "s" if col.endswith("_s") else "J",
                                           label.split(" (")[0] + " (log colour scale)"),
                        hovertemplate="tile_m %{y} x tile_n %{x}: %{text}<extra>" + name + "</extra>",
                        row=1, col=i)
        axis = "" if i == 1 else str(i)
        fig.add_shape(type="rect", xref=f"x{axis}", yref=f"y{axis}", x0=bx - 0.5, x1=bx + 0.5, y0=by - 0.5,
                      y1=by + 0.5, line={"color": "red", "width": 3})
        fig.update_xaxes(title="tile_n", type="category", row=1, col=i)
        fig.update_yaxes(title="tile_m", type="category", row=1, col=i)
        notes.append(f"{name}: {_best_label(b, col)}")
    fig.update_layout(template=TEMPLATE, title=title, margin={"b": 110})
    return add_note(fig, "; ".join(notes) + "; each cell: the best over tile_k, warps and stages")


def _colorbar(zmin: float, zmax: float, unit: str, title: str) -> dict:
    """A colour bar over log10 values whose ticks read in units (1 ms, 10 ms), not in log10."""
    axis = log_axis([zmin, zmax], unit)
    ticks = [math.log10(v) for v in axis.get("tickvals", [])]
    return {"title": title, "tickvals": ticks, "ticktext": axis.get("ticktext", [])}
