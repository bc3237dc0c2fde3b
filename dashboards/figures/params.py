"""Parameter spaces (tile sizes and imported tunable parameters, ``param_<name>``): a
heatmap over any two chosen parameters and a parallel-coordinates view of them all.

Rows are one implementation, shape, dtype and device (the page selects them), so "best"
only ever compares configurations of one kernel on one problem.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from perfscope.dashboards.figures.common import TEMPLATE, check_rows, message_figure, numeric
from perfscope.dashboards.units import duration, log_axis

TILE_PARAMETERS = ("tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages")
MAX_PARCOORDS_ROWS = 1_000  # lines drawn: the fastest configurations, where the choice is made


def varying_parameters(rows: pd.DataFrame) -> list[str]:
    """The tile and ``param_*`` columns with more than one numeric value in ``rows``."""
    out = []
    for column in [*TILE_PARAMETERS, *(c for c in rows.columns if str(c).startswith("param_"))]:
        if column in rows and len(np.unique(numeric(rows, column)[np.isfinite(numeric(rows, column))])) > 1:
            out.append(column)
    return out


def parameter_heatmap(rows: pd.DataFrame, x: str, y: str) -> go.Figure:
    """Best median time over (``x``, ``y``), the other parameters at their best; the best cell starred."""
    title = f"Best median time over {x} x {y}"
    problem = check_rows(rows, [x, y, "time_s"], title)
    if problem is not None:
        return problem
    others = [p for p in varying_parameters(rows) if p not in (x, y)]
    frame = pd.DataFrame({"x": numeric(rows, x), "y": numeric(rows, y), "t": numeric(rows, "time_s"),
                          **{p: numeric(rows, p) for p in others}})
    frame = frame[np.isfinite(frame[["x", "y", "t"]]).all(axis=1)].fillna({p: -1.0 for p in others})
    if frame.empty:
        return message_figure(f"{title}: no row has both parameters and a time", title)
    # the median of each configuration, then the best configuration per cell
    per_config = frame.groupby(["y", "x", *others])["t"].median()
    grid = per_config.groupby(level=["y", "x"]).min().unstack("x")
    z = grid.to_numpy(dtype=float)
    text = [[duration(v) if np.isfinite(v) else "" for v in row] for row in z]
    by, bx = np.unravel_index(np.nanargmin(z), z.shape)
    text[by][bx] = "★ " + text[by][bx]
    xs = [f"{v:g}" for v in grid.columns]
    ys = [f"{v:g}" for v in grid.index]
    axis = log_axis([np.nanmin(z), np.nanmax(z)], "s")
    fig = go.Figure(go.Heatmap(x=xs, y=ys, z=np.log10(z), text=text, texttemplate="%{text}", colorscale="Viridis_r",
                               colorbar={"title": "median time (log colour scale)",
                                         "tickvals": [np.log10(v) for v in axis.get("tickvals", [])],
                                         "ticktext": axis.get("ticktext", [])},
                               hovertemplate=f"{y} %{{y}}, {x} %{{x}}: %{{text}}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=f"{title} (best {text[by][bx][2:]} at {x}={xs[bx]}, {y}={ys[by]})",
                      xaxis={"title": x, "type": "category"}, yaxis={"title": y, "type": "category"})
    return fig


def parameter_parallel_coordinates(rows: pd.DataFrame, parameters: list[str]) -> go.Figure:
    """One line per configuration across every parameter, coloured by its median time."""
    title = "Parameter space (parallel coordinates; colour: median time)"
    if not parameters:
        return message_figure(f"{title}: no tile size or tunable parameter varies in this selection", title)
    problem = check_rows(rows, ["time_s", *parameters], title)
    if problem is not None:
        return problem
    frame = pd.DataFrame({p: numeric(rows, p) for p in parameters})
    frame["time_s"] = numeric(rows, "time_s")
    frame = frame[np.isfinite(frame["time_s"])]
    per_config = frame.fillna(-1).groupby(parameters)["time_s"].median().reset_index()
    total = len(per_config)
    if total > MAX_PARCOORDS_ROWS:
        per_config = per_config.nsmallest(MAX_PARCOORDS_ROWS, "time_s")
    log_time = np.log10(per_config["time_s"].to_numpy())
    ticks = log_axis(per_config["time_s"], "s")
    dimensions = [{"label": p.removeprefix("param_"), "values": per_config[p]} for p in parameters]
    dimensions.append({"label": "median time", "values": log_time,
                       "tickvals": [np.log10(v) for v in ticks.get("tickvals", [])],
                       "ticktext": ticks.get("ticktext", [])})
    fig = go.Figure(go.Parcoords(line={"color": log_time, "colorscale": "Viridis", "reversescale": True},
                                 dimensions=dimensions))
    shown = f"the fastest {len(per_config):,} of {total:,}" if total > len(per_config) else f"{total:,}"
    fig.update_layout(template=TEMPLATE, title=f"{title}: {shown} configurations")
    return fig
