"""Roofline: achieved FLOP/s against arithmetic intensity, with the device's ceilings.

A ceiling is min(peak(dtype), intensity · bandwidth) per device and dtype: dashed from
the spec sheet, solid when calibrated on the machine. Points are the measured rows
(achieved FLOP/s = FLOPs / median time); beyond ``max_points`` they are log-binned.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from perfscope.dashboards.figures.common import (
    DEFAULT_MAX_POINTS,
    TEMPLATE,
    add_note,
    check_rows,
    hover,
    marker_sizes,
    message_figure,
    numeric,
    positive,
    si,
    split_by,
    thin_points,
)

HOVER = (
    ("intensity_flops_per_byte", "intensity (FLOP/B)", ".3g"),
    ("achieved_flops_per_s", "achieved (FLOP/s)", ".3s"),
    ("time_s", "median time (s)", ".3s"),
    ("bound_time_s", "roofline bound (s)", ".3s"),
    ("roofline_attainment", "bound / time", ".1%"),
)
CEILING_COLUMNS = ("device_key", "source", "dtype", "peak_flops_per_s", "mem_bandwidth_bytes_per_s")


def ceilings_from_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Ceilings implied by the rows' own feature columns (the peaks their bound used)."""
    need = ("device_key", "dtype", "peak_flops_per_s", "mem_bandwidth_bytes_per_s")
    if any(c not in rows for c in need) or rows.empty:
        return pd.DataFrame(columns=list(CEILING_COLUMNS))
    source = rows["device_source"] if "device_source" in rows else pd.Series("spec", index=rows.index)
    frame = pd.DataFrame({"device_key": rows["device_key"].astype(str), "source": source.astype(str),
                          "dtype": rows["dtype"].astype(str), "peak_flops_per_s": numeric(rows, "peak_flops_per_s"),
                          "mem_bandwidth_bytes_per_s": numeric(rows, "mem_bandwidth_bytes_per_s")})
    frame = frame[np.isfinite(frame["peak_flops_per_s"])]
    return frame.drop_duplicates(["device_key", "source", "dtype"]).reset_index(drop=True)


def roofline_figure(rows: pd.DataFrame, ceilings: pd.DataFrame | None = None, *,
                    max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    """Achieved FLOP/s vs intensity per dtype, with ceilings (from ``ceilings`` or the rows).

    Needs ``intensity_flops_per_byte`` and either ``achieved_flops_per_s`` or ``flops`` and
    ``time_median_ms``.
    """
    title = "Roofline"
    problem = check_rows(rows, ["intensity_flops_per_byte", "dtype"], title)
    if problem is not None:
        return problem
    achieved = numeric(rows, "achieved_flops_per_s")
    if not positive(achieved).any():
        if "flops" in rows and "time_median_ms" in rows:
            with np.errstate(divide="ignore", invalid="ignore"):
                achieved = numeric(rows, "flops") / (numeric(rows, "time_median_ms") / 1e3)
        else:
            return message_figure(f"{title}: the rows lack achieved_flops_per_s (or flops and time_median_ms)", title)
    frame = rows.assign(achieved_flops_per_s=achieved)
    points, note = thin_points(frame, "intensity_flops_per_byte", "achieved_flops_per_s", by="dtype",
                               max_points=max_points)
    if points.empty:
        return message_figure(f"{title}: no measured rows with a positive intensity and FLOP/s "
                              "(failed or unsupported configurations have no time)", title)
    fig = go.Figure()
    for dtype, part in split_by(points, "dtype"):
        fig.add_scatter(
            x=part["intensity_flops_per_byte"], y=part["achieved_flops_per_s"], mode="markers", name=dtype,
            marker={"size": marker_sizes(part["point_count"]), "opacity": 0.75},
            legendgroup=dtype, **hover(part, HOVER))
    xs = numeric(points, "intensity_flops_per_byte")
    x_lo, x_hi = float(np.nanmin(xs)) / 4, float(np.nanmax(xs)) * 4
    ceilings = ceilings_from_rows(rows) if ceilings is None else ceilings
    dtypes = set(points["dtype"].astype(str))
    drawn = 0
    if ceilings is not None and not ceilings.empty:
        for rec in ceilings.itertuples(index=False):
            if rec.dtype not in dtypes:
                continue
            x_lo = min(x_lo, _ridge(rec) / 4) if math.isfinite(_ridge(rec)) else x_lo
            x_hi = max(x_hi, _ridge(rec) * 4) if math.isfinite(_ridge(rec)) else x_hi
        grid = np.logspace(math.log10(x_lo), math.log10(x_hi), 200)
        for rec in ceilings.itertuples(index=False):
            if rec.dtype not in dtypes:
                continue
            bandwidth = rec.mem_bandwidth_bytes_per_s
            roof = np.minimum(rec.peak_flops_per_s, grid * bandwidth) if math.isfinite(bandwidth) \
                else np.full_like(grid, rec.peak_flops_per_s)
            fig.add_scatter(x=grid, y=roof, mode="lines", name=f"{rec.device_key} {rec.dtype} ({rec.source})",
                            line={"dash": "dash" if rec.source == "spec" else "solid", "width": 2},
                            legendgroup=rec.dtype,
                            hovertemplate=(f"{rec.device_key} {rec.dtype} {rec.source} ceiling<br>"
                                           f"peak {si(rec.peak_flops_per_s, 'FLOP/s')}, "
                                           f"bandwidth {si(bandwidth, 'B/s')}<br>ridge {_ridge(rec):.3g} FLOP/B"
                                           "<extra></extra>"))
            drawn += 1
    if not drawn:
        note = "; ".join(filter(None, [note, "no ceilings: the device has no peak for these dtypes "
                                              "(not in the spec table, not calibrated)"]))
    fig.update_layout(template=TEMPLATE, title=title,
                      xaxis={"type": "log", "title": "arithmetic intensity (FLOP / byte of minimum traffic)"},
                      yaxis={"type": "log", "title": "achieved FLOP/s"}, legend_title="dtype / ceiling",
                      margin={"b": 110})
    return add_note(fig, note)


def _ridge(rec) -> float:
    bw = rec.mem_bandwidth_bytes_per_s
    return rec.peak_flops_per_s / bw if bw and math.isfinite(bw) and bw > 0 else math.nan
