"""Parameter spaces (tile sizes and imported tunable parameters, ``param_<name>``): a
heatmap over any two chosen parameters and a parallel-coordinates view of them all (SVG).

Brushing: a box dragged over one or more axes of the parallel coordinates (plotly's box
select; the figure sends its ``selections``) becomes a value range per axis
(``brush_ranges``); the configurations outside any range are greyed, and the heatmap
keeps only the rows inside (``brush_mask``). The ranges travel as text (``brush_text``,
``parse_brush``), so the page keeps them in its URL.

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
TIME_AXIS = "time_s"  # the last axis: median time (log scale)
OUTSIDE_COLOUR = "#d5dbe3"  # lines outside the brushed ranges
BRUSH_HALF_WIDTH = 0.08  # the shaded range drawn on a brushed axis, in axis units
HOVER_TRACE = "configurations"  # the marker layer that carries each line's hover text (and the colour bar)
HOVER_OUTSIDE_TRACE = "configurations outside the ranges"  # its greyed part


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
    best = f"best {text[by][bx][2:]} at {x}={xs[bx]}, {y}={ys[by]}"
    fig.update_layout(template=TEMPLATE, title=f"{title}<br><sup>{best}</sup>",
                      xaxis={"title": x, "type": "category"}, yaxis={"title": y, "type": "category"})
    return fig


def _configurations(rows: pd.DataFrame, parameters: list[str],
                    ranges: dict[str, tuple[float, float]] | None = None) -> tuple[pd.DataFrame, int]:
    """(median time per configuration, at most ``MAX_PARCOORDS_ROWS`` of them: the fastest
    inside the brushed ``ranges`` first, then the fastest outside; how many there are)."""
    frame = pd.DataFrame({p: numeric(rows, p) for p in parameters})
    frame[TIME_AXIS] = numeric(rows, "time_s")
    frame = frame[np.isfinite(frame[TIME_AXIS]) & (frame[TIME_AXIS] > 0)]
    per_config = frame.fillna(-1).groupby(parameters)[TIME_AXIS].median().reset_index()
    total = len(per_config)
    if total > MAX_PARCOORDS_ROWS:
        # a brush on slow configurations still draws them (not only grey lines)
        outside = ~brush_mask(per_config, ranges) if ranges else np.zeros(total, dtype=bool)
        order = np.lexsort((per_config[TIME_AXIS].to_numpy(), outside))[:MAX_PARCOORDS_ROWS]
        per_config = per_config.iloc[np.sort(order)].reset_index(drop=True)
    return per_config, total


def _scales(per_config: pd.DataFrame, parameters: list[str]) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """Per axis (parameters, then time): (positions, values) at which it is scaled, both
    increasing, and whether the values are on a log scale: a position between two of them
    maps to a value by interpolation (in log10 for time)."""
    out = []
    for p in parameters:
        distinct = np.unique(per_config[p].to_numpy(dtype=float))
        if len(distinct) == 1:
            out.append((np.array([0.5]), distinct, False))
        elif len(distinct) <= MAX_EVEN_VALUES:
            out.append((np.linspace(0.0, 1.0, len(distinct)), distinct, False))
        else:
            out.append((np.array([0.0, 1.0]), np.array([distinct[0], distinct[-1]]), False))
    times = per_config[TIME_AXIS].to_numpy(dtype=float)
    low, high = float(np.log10(times.min())), float(np.log10(times.max()))
    out.append((np.array([0.0, 1.0]) if high > low else np.array([0.5]),
                np.array([low, high]) if high > low else np.array([low]), True))
    return out


def parameter_parallel_coordinates(rows: pd.DataFrame, parameters: list[str],
                                   ranges: dict[str, tuple[float, float]] | None = None) -> go.Figure:
    """One line per configuration across every parameter, coloured by its median time;
    with brushed ``ranges`` (axis name -> (low, high) values; ``time_s`` for time), the
    lines outside any are grey and each range is shaded on its axis.

    Drawn as SVG lines (a few scatter traces, one per colour band), not plotly's WebGL
    ``parcoords``: a browser without a GPU (headless, remote desktop) spends seconds
    compiling parcoords' shaders even for three lines. Each axis is scaled to its own
    range (a parameter with few values: its values evenly spaced); time is on a log scale.
    Box-select (the default drag) over axes to brush them.
    """
    title = "Parameter space (parallel coordinates; colour: median time)"
    if not parameters:
        return message_figure(f"{title}: no tile size or tunable parameter varies in this selection", title)
    problem = check_rows(rows, ["time_s", *parameters], title)
    if problem is not None:
        return problem
    ranges = {k: v for k, v in (ranges or {}).items() if k in (*parameters, TIME_AXIS)}
    per_config, total = _configurations(rows, parameters, ranges)
    if per_config.empty:
        return message_figure(f"{title}: no configuration has a time", title)
    log_time = np.log10(per_config[TIME_AXIS].to_numpy(dtype=float))
    labels = [p.removeprefix("param_") for p in parameters] + ["median time"]
    positions, annotations = [], []
    for i, p in enumerate(parameters):
        position, ticks = _axis_positions(per_config[p].to_numpy(dtype=float))
        positions.append(position)
        annotations += [_tick(i, at, text) for at, text in ticks]
    time_axis = log_axis(per_config[TIME_AXIS], "s")
    low, high = float(log_time.min()), float(log_time.max())
    span = high - low or 1.0
    positions.append((log_time - low) / span if high > low else np.full(len(log_time), 0.5))
    annotations += [_tick(len(parameters), (math.log10(v) - low) / span, text)
                    for v, text in zip(time_axis.get("tickvals", []), time_axis.get("ticktext", []), strict=True)
                    if low <= math.log10(v) <= high]
    matrix = np.column_stack(positions)
    described = [", ".join(f"{label} {_number(v)}" for label, v in zip(labels, values, strict=False))
                 for values in per_config[parameters].to_numpy(dtype=float)]
    times = [duration(v) for v in per_config[TIME_AXIS]]
    inside = brush_mask(per_config, ranges)
    fig = go.Figure()
    bands = np.minimum(((log_time - low) / span * COLOUR_BANDS).astype(int), COLOUR_BANDS - 1)
    colours = sample_colorscale("Viridis_r", [(b + 0.5) / COLOUR_BANDS for b in range(COLOUR_BANDS)])
    axes = len(labels)
    groups = [(np.flatnonzero(~inside), OUTSIDE_COLOUR, "outside the brushed ranges")]
    groups += [(np.flatnonzero(inside & (bands == band)), colours[band], f"time band {band + 1} of {COLOUR_BANDS}")
               for band in range(COLOUR_BANDS)]
    for members, colour, name in groups:
        if not members.size:
            continue
        # one polyline per configuration, broken by a gap, as float32 (sent as base64: a pixel is
        # far coarser); no hover on its vertices (the hover text once per vertex was most of
        # the figure's JSON): the markers below carry it
        xs = np.tile(np.append(np.arange(axes, dtype=np.float32), np.nan), members.size)
        ys = np.column_stack([matrix[members], np.full(members.size, np.nan)]).ravel().astype(np.float32)
        fig.add_scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", line={"color": colour, "width": 1.5},
                        opacity=0.7, showlegend=False, name=name)
    # hover: one marker per configuration, where its line meets the time axis (outside the
    # ranges grey; inside coloured by time, their trace carrying the colour bar)
    hover = np.array([f"{d}: {t}" for d, t in zip(described, times, strict=True)], dtype=object)
    outside = np.flatnonzero(~inside)
    if outside.size:
        fig.add_scatter(x=np.full(outside.size, axes - 1, dtype=np.float32), y=matrix[outside, -1].astype(np.float32),
                        mode="markers", text=hover[outside], hovertemplate="%{text}<extra></extra>",
                        showlegend=False, name=HOVER_OUTSIDE_TRACE, marker={"color": OUTSIDE_COLOUR, "size": 5})
    kept = np.flatnonzero(inside)
    fig.add_scatter(x=np.full(kept.size, axes - 1, dtype=np.float32), y=matrix[kept, -1].astype(np.float32),
                    mode="markers", text=hover[kept], hovertemplate="%{text}<extra></extra>", showlegend=False,
                    name=HOVER_TRACE,
                    marker={"color": log_time[kept].astype(np.float32), "cmin": low, "cmax": high, "size": 5,
                            "colorscale": "Viridis_r", "showscale": True,
                            "colorbar": {"title": "median time", "tickvals": [math.log10(v) for v in
                                                                             time_axis.get("tickvals", [])],
                                         "ticktext": time_axis.get("ticktext", [])}})
    for i in range(axes):
        fig.add_shape(type="line", x0=i, x1=i, y0=0, y1=1, line={"color": "#4a5568", "width": 1})
    scales = _scales(per_config, parameters)
    for i, name in enumerate([*parameters, TIME_AXIS]):
        if name in ranges:
            y0, y1 = (_position(scales[i], v) for v in ranges[name])
            fig.add_shape(type="rect", x0=i - BRUSH_HALF_WIDTH, x1=i + BRUSH_HALF_WIDTH, y0=y0, y1=y1,
                          line={"color": "#2b6cb0", "width": 1}, fillcolor="rgba(43,108,176,0.18)")
    fastest = "the fastest in the brushed ranges first" if ranges else "the fastest"
    shown = (f"{len(per_config):,} of {total:,} configurations drawn, {fastest}" if total > len(per_config)
             else f"{total:,} configurations")
    brushed = (f"; {int(inside.sum()):,} in the brushed ranges (double-click clears)" if ranges
               else "; drag over axes to brush")
    fig.update_layout(template=TEMPLATE, title=f"{title}<br><sup>{shown}{brushed}</sup>",
                      annotations=annotations,
                      dragmode="select", clickmode="none", margin={"t": 130},
                      xaxis={"tickvals": list(range(axes)), "ticktext": labels, "side": "top", "showgrid": False,
                             "zeroline": False, "range": [-0.5, axes - 0.5], "fixedrange": True},
                      yaxis={"visible": False, "range": [-0.05, 1.05], "fixedrange": True})
    return fig


def _position(scale: tuple[np.ndarray, np.ndarray, bool], value: float) -> float:
    """Where ``value`` sits on an axis scaled by ``scale`` (clipped to the axis)."""
    positions, values, log = scale
    if len(values) == 1:
        return float(positions[0])
    if log:
        value = math.log10(value) if value > 0 else -math.inf
    return float(np.interp(value, values, positions))


def _value(scale: tuple[np.ndarray, np.ndarray, bool], position: float) -> float:
    """The value at ``position`` on an axis scaled by ``scale``."""
    positions, values, log = scale
    value = float(values[0]) if len(values) == 1 else float(np.interp(position, positions, values))
    return 10**value if log else value


def brush_ranges(rows: pd.DataFrame, parameters: list[str], selections: list[dict] | None,
                 drawn_with: dict[str, tuple[float, float]] | None = None) -> dict[str, tuple[float, float]]:
    """Plotly's box ``selections`` on the parallel coordinates (x0, x1, y0, y1 in axis
    units) as value ranges per axis they cover: axis name -> (low, high). A box over
    several axes brushes each; a later box over an axis replaces an earlier one.
    ``drawn_with``: the ranges the figure was drawn with (they chose its lines, so its scales)."""
    if not parameters or not selections:
        return {}
    drawn_with = {k: v for k, v in (drawn_with or {}).items() if k in (*parameters, TIME_AXIS)}
    per_config, _ = _configurations(rows, parameters, drawn_with)
    if per_config.empty:
        return {}
    scales = _scales(per_config, parameters)
    names = [*parameters, TIME_AXIS]
    out: dict[str, tuple[float, float]] = {}
    for box in selections:
        try:
            x0, x1 = sorted((float(box["x0"]), float(box["x1"])))
            y0, y1 = sorted((float(box["y0"]), float(box["y1"])))
        except (KeyError, TypeError, ValueError):
            continue
        for i, name in enumerate(names):
            if x0 <= i <= x1:
                out[name] = (_value(scales[i], max(y0, 0.0)), _value(scales[i], min(y1, 1.0)))
    return out


def brush_mask(frame: pd.DataFrame, ranges: dict[str, tuple[float, float]] | None) -> np.ndarray:
    """Rows of ``frame`` inside every range (a parameter's value, or ``time_s``); a range on
    a column the frame lacks is ignored. A little slack keeps the range's ends inside."""
    inside = np.ones(len(frame), dtype=bool)
    for name, (low, high) in (ranges or {}).items():
        column = "time_s" if name == TIME_AXIS else name
        if column not in frame:
            continue
        values = numeric(frame, column)
        slack = 1e-9 * max(abs(low), abs(high), 1e-300)
        inside &= (values >= low - slack) & (values <= high + slack)
    return inside


def brush_text(ranges: dict[str, tuple[float, float]]) -> str:
    """Ranges as URL text: "param_block_size_x=1..4;time_s=0.001..0.0025"."""
    return ";".join(f"{name}={low:.6g}..{high:.6g}" for name, (low, high) in ranges.items())


def parse_brush(text: str | None) -> dict[str, tuple[float, float]]:
    """``brush_text``'s text back as ranges; parts that do not read are left out (a bad link never breaks the page)."""
    out: dict[str, tuple[float, float]] = {}
    for part in (text or "").split(";"):
        name, _, bounds = part.partition("=")
        low, sep, high = bounds.partition("..")
        try:
            if name and sep:
                out[name.strip()] = (float(low), float(high))
        except ValueError:
            continue
    return out


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
