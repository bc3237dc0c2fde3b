"""Parameter spaces (tile sizes and imported tunable parameters, ``param_<name>``): a
heatmap over any two chosen parameters and a parallel-coordinates view of them all (SVG).

Rows are one implementation, shape, dtype and device (the page selects them), so "best"
only ever compares configurations of one kernel on one problem.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from perfscope.dashboards.figures.common import TEMPLATE, check_rows, message_figure, numeric
from perfscope.dashboards.units import duration, log_axis

TILE_PARAMETERS = ("tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages")
MAX_PARCOORDS_ROWS = 1_000  # lines drawn: the fastest configurations, where the choice is made
COLOUR_BANDS = 8  # parallel-coordinates lines coloured by time in this many bands (one SVG trace each)
MAX_EVEN_VALUES = 12  # a parameter with at most this many values: evenly spaced on its axis


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
    """One line per configuration across every parameter, coloured by its median time.

    Drawn as SVG lines (a few scatter traces, one per colour band), not plotly's WebGL
    ``parcoords``: a browser without a GPU (headless, remote desktop) spends seconds
    compiling parcoords' shaders even for three lines. Each axis is scaled to its own
    range (a parameter with few values: its values evenly spaced); time is on a log scale.
    """
    title = "Parameter space (parallel coordinates; colour: median time)"
    if not parameters:
        return message_figure(f"{title}: no tile size or tunable parameter varies in this selection", title)
    problem = check_rows(rows, ["time_s", *parameters], title)
    if problem is not None:
        return problem
    frame = pd.DataFrame({p: numeric(rows, p) for p in parameters})
    frame["time_s"] = numeric(rows, "time_s")
    frame = frame[np.isfinite(frame["time_s"]) & (frame["time_s"] > 0)]
    if frame.empty:
        return message_figure(f"{title}: no configuration has a time", title)
    per_config = frame.fillna(-1).groupby(parameters)["time_s"].median().reset_index()
    total = len(per_config)
    if total > MAX_PARCOORDS_ROWS:
        per_config = per_config.nsmallest(MAX_PARCOORDS_ROWS, "time_s")
    log_time = np.log10(per_config["time_s"].to_numpy(dtype=float))
    labels = [p.removeprefix("param_") for p in parameters] + ["median time"]
    positions, annotations = [], []
    for i, p in enumerate(parameters):
        position, ticks = _axis_positions(per_config[p].to_numpy(dtype=float))
        positions.append(position)
        annotations += [_tick(i, at, text) for at, text in ticks]
    time_axis = log_axis(per_config["time_s"], "s")
    low, high = float(log_time.min()), float(log_time.max())
    span = high - low or 1.0
    positions.append((log_time - low) / span)
    annotations += [_tick(len(parameters), (math.log10(v) - low) / span, text)
                    for v, text in zip(time_axis.get("tickvals", []), time_axis.get("ticktext", []), strict=True)
                    if low <= math.log10(v) <= high]
    matrix = np.column_stack(positions)
    described = [", ".join(f"{label} {_number(v)}" for label, v in zip(labels, values, strict=False))
                 for values in per_config[parameters].to_numpy(dtype=float)]
    times = [duration(v) for v in per_config["time_s"]]
    fig = go.Figure()
    bands = np.minimum(((log_time - low) / span * COLOUR_BANDS).astype(int), COLOUR_BANDS - 1)
    colours = sample_colorscale("Viridis_r", [(b + 0.5) / COLOUR_BANDS for b in range(COLOUR_BANDS)])
    axes = len(labels)
    for band in range(COLOUR_BANDS):
        members = np.flatnonzero(bands == band)
        if not members.size:
            continue
        xs = np.tile(np.append(np.arange(axes, dtype=float), np.nan), members.size)
        ys = np.column_stack([matrix[members], np.full(members.size, np.nan)]).ravel()
        text = np.repeat([f"{described[m]}: {times[m]}" for m in members], axes + 1)
        fig.add_scatter(x=xs, y=ys, mode="lines", text=text, hovertemplate="%{text}<extra></extra>",
                        line={"color": colours[band], "width": 1.5}, opacity=0.7, showlegend=False,
                        name=f"time band {band + 1} of {COLOUR_BANDS}")
    # the colour scale, on an invisible marker
    fig.add_scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip", name="colour scale",
                    marker={"color": [low], "cmin": low, "cmax": high, "colorscale": "Viridis_r", "showscale": True,
                            "colorbar": {"title": "median time", "tickvals": [math.log10(v) for v in
                                                                             time_axis.get("tickvals", [])],
                                         "ticktext": time_axis.get("ticktext", [])}})
    for i in range(axes):
        fig.add_shape(type="line", x0=i, x1=i, y0=0, y1=1, line={"color": "#4a5568", "width": 1})
    shown = f"the fastest {len(per_config):,} of {total:,}" if total > len(per_config) else f"{total:,}"
    fig.update_layout(template=TEMPLATE, title=f"{title}: {shown} configurations", annotations=annotations,
                      xaxis={"tickvals": list(range(axes)), "ticktext": labels, "side": "top", "showgrid": False,
                             "zeroline": False, "range": [-0.5, axes - 0.5]},
                      yaxis={"visible": False, "range": [-0.05, 1.05]})
    return fig


def _axis_positions(values: np.ndarray) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Positions in [0, 1] on one axis and its ticks (position, label): a parameter with
    few values gets them evenly spaced, otherwise a linear scale over its range."""
    distinct = np.unique(values)
    if len(distinct) <= MAX_EVEN_VALUES:
        step = 1.0 / max(1, len(distinct) - 1)
        rank = np.searchsorted(distinct, values)
        return rank * step if len(distinct) > 1 else np.full(len(values), 0.5), \
            [(i * step if len(distinct) > 1 else 0.5, _number(v)) for i, v in enumerate(distinct)]
    low, high = float(distinct[0]), float(distinct[-1])
    ticks = np.linspace(low, high, 5)
    return (values - low) / (high - low), [((t - low) / (high - low), _number(t)) for t in ticks]


def _tick(axis: int, at: float, text: str) -> dict:
    return {"x": axis, "y": at, "text": text, "showarrow": False, "xanchor": "right", "xshift": -4,
            "font": {"size": 10, "color": "#4a5568"}}


def _number(value: float) -> str:
    return "none" if value == -1 else f"{value:g}"
