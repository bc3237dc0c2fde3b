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
from perfscope.dashboards.units import log_axis

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


# fixed palettes: a (device, dtype) keeps its colour and a device its symbol across filters
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
           "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "triangle-down", "pentagon", "hexagon",
           "star-triangle-up")
ABOVE_CEILING_TOLERANCE = 1.02  # a point more than 2% above its own ceiling is flagged


def style_map(device_keys: list[str], pairs: list[tuple[str, str]]) -> tuple[dict, dict]:
    """(colour per (device, dtype), symbol per device) from every pair in the whole dataset,
    so that a filter never changes which colour or symbol a series has."""
    colours = {pair: PALETTE[i % len(PALETTE)] for i, pair in enumerate(sorted(set(pairs)))}
    symbols = {key: SYMBOLS[i % len(SYMBOLS)] for i, key in enumerate(sorted(set(device_keys)))}
    return colours, symbols


def above_ceiling(rows: pd.DataFrame) -> np.ndarray:
    """Rows whose achieved FLOP/s exceeds the ceiling their own bound used
    (min(peak, intensity x bandwidth)) by more than ``ABOVE_CEILING_TOLERANCE``."""
    achieved = numeric(rows, "achieved_flops_per_s")
    peak = numeric(rows, "peak_flops_per_s")
    bandwidth = numeric(rows, "mem_bandwidth_bytes_per_s")
    intensity = numeric(rows, "intensity_flops_per_byte")
    with np.errstate(invalid="ignore"):
        roof = np.where(np.isfinite(bandwidth), np.minimum(peak, intensity * bandwidth), peak)
        return np.isfinite(roof) & (roof > 0) & (achieved > roof * ABOVE_CEILING_TOLERANCE)


# a ceiling's legend label when the caller names none
DEFAULT_CEILING_LABELS = {"spec": "spec sheet", "calibrated": "calibrated profile"}


def roofline_figure(rows: pd.DataFrame, ceilings: pd.DataFrame | None = None, *,
                    max_points: int = DEFAULT_MAX_POINTS, colours: dict | None = None,
                    symbols: dict | None = None, sources: dict[str, str] | None = None,
                    labels: dict[str, str] | None = None) -> go.Figure:
    """Achieved FLOP/s vs intensity per (device, dtype), with ceilings (from ``ceilings`` or the rows).

    Points and ceilings of one (device, dtype) share a colour (``colours``, else from these
    rows), each device has a symbol; each ceiling marks its ridge point; a point above its
    ceiling is outlined red and counted in the note, which names the ceiling's source
    (``sources``: "device:source" -> "spec sheet row h100-sxm", "the dataset's own profile,
    calibrated 2026-01-02, FILE", ...). The legend names each ceiling's source too
    (``labels``: "device:source" -> "spec sheet", "your calibration 2026-01-02, FILE NAME").
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
    # the series key as integer codes (labels only for the thinned points: astype(str) on a
    # million categorical rows costs a second)
    device_codes, device_values = pd.factorize(rows["device_key"] if "device_key" in rows
                                               else pd.Series("?", index=rows.index))
    dtype_codes, dtype_values = pd.factorize(rows["dtype"])
    frame = rows.assign(achieved_flops_per_s=achieved,
                        series_code=device_codes.astype(np.int64) * (len(dtype_values) + 1) + dtype_codes)
    frame = frame.assign(above_ceiling=above_ceiling(frame).astype(float))
    points, note = thin_points(frame, "intensity_flops_per_byte", "achieved_flops_per_s", by="series_code",
                               max_points=max_points, sums=("above_ceiling",))
    if points.empty:
        return message_figure(f"{title}: no measured rows with a positive intensity and FLOP/s "
                              "(failed or unsupported configurations have no time)", title)
    code = points["series_code"].to_numpy(dtype=np.int64)
    point_devices = np.array([str(v) for v in device_values] + ["?"], dtype=object)[code // (len(dtype_values) + 1)]
    point_dtypes = np.array([str(v) for v in dtype_values] + ["?"], dtype=object)[code % (len(dtype_values) + 1)]
    points = points.assign(series=point_devices + " " + point_dtypes)
    pairs = list(zip(point_devices, point_dtypes, strict=True))
    if colours is None or symbols is None:
        own_colours, own_symbols = style_map([p[0] for p in pairs], pairs)
        colours, symbols = colours or own_colours, symbols or own_symbols
    fig = go.Figure()
    for series, part in split_by(points, "series"):
        key, _, dtype = series.partition(" ")
        fig.add_scatter(
            x=part["intensity_flops_per_byte"], y=part["achieved_flops_per_s"], mode="markers", name=series,
            marker={"size": marker_sizes(part["point_count"]), "opacity": 0.8,
                    "color": colours.get((key, dtype), "#444"),
                    "symbol": symbols.get(key, "circle")},
            legendgroup=series, **hover(part, HOVER))
    flagged = points[numeric(points, "above_ceiling") > 0]
    if len(flagged):
        fig.add_scatter(x=flagged["intensity_flops_per_byte"], y=flagged["achieved_flops_per_s"], mode="markers",
                        name="above its ceiling",
                        marker={"symbol": "circle-open", "size": 14, "color": "#c00000", "line": {"width": 2}},
                        customdata=numeric(flagged, "above_ceiling"),
                        hovertemplate="%{customdata:,} row(s) above their own ceiling<extra></extra>")
    xs = numeric(points, "intensity_flops_per_byte")
    x_lo, x_hi = float(np.nanmin(xs)) / 4, float(np.nanmax(xs)) * 4
    ceilings = ceilings_from_rows(rows) if ceilings is None else ceilings
    shown = set(points["series"].astype(str))
    drawn = 0
    if ceilings is not None and not ceilings.empty:
        for rec in ceilings.itertuples(index=False):
            if f"{rec.device_key} {rec.dtype}" not in shown:
                continue
            x_lo = min(x_lo, _ridge(rec) / 4) if math.isfinite(_ridge(rec)) else x_lo
            x_hi = max(x_hi, _ridge(rec) * 4) if math.isfinite(_ridge(rec)) else x_hi
        grid = np.logspace(math.log10(x_lo), math.log10(x_hi), 200)
        for rec in ceilings.itertuples(index=False):
            series = f"{rec.device_key} {rec.dtype}"
            if series not in shown:
                continue
            colour = colours.get((rec.device_key, rec.dtype), "#444")
            bandwidth = rec.mem_bandwidth_bytes_per_s
            roof = np.minimum(rec.peak_flops_per_s, grid * bandwidth) if math.isfinite(bandwidth) \
                else np.full_like(grid, rec.peak_flops_per_s)
            origin = (sources or {}).get(f"{rec.device_key}:{rec.source}", rec.source)
            label = (labels or {}).get(f"{rec.device_key}:{rec.source}", DEFAULT_CEILING_LABELS.get(rec.source,
                                                                                                 rec.source))
            fig.add_scatter(x=grid, y=roof, mode="lines", name=f"{series} ({label})",
                            line={"dash": "dash" if rec.source == "spec" else "solid", "width": 2, "color": colour},
                            legendgroup=series,
                            hovertemplate=(f"{series} {rec.source} ceiling ({origin})<br>"
                                           f"peak {si(rec.peak_flops_per_s, 'FLOP/s')}, "
                                           f"bandwidth {si(bandwidth, 'B/s')}<br>ridge {_ridge(rec):.3g} FLOP/B"
                                           "<extra></extra>"))
            ridge = _ridge(rec)
            if math.isfinite(ridge):
                fig.add_scatter(x=[ridge], y=[rec.peak_flops_per_s], mode="markers", showlegend=False,
                                legendgroup=series, name=f"{series} ridge ({rec.source})",
                                marker={"symbol": "diamond-open", "size": 11, "color": colour, "line": {"width": 2}},
                                hovertemplate=(f"ridge point of {series} ({rec.source}): {ridge:.3g} FLOP/B, "
                                               f"{si(rec.peak_flops_per_s, 'FLOP/s')}<extra></extra>"))
            drawn += 1
    if not drawn:
        note = "; ".join(filter(None, [note, "no ceilings: the device has no peak for these dtypes "
                                              "(not in the spec table, not calibrated)"]))
    over = int(numeric(points, "above_ceiling").sum())
    if over:
        # the short legend labels where given (the hover and the page's notes give the full paths)
        named = "; ".join(f"{k.replace(':', ' ')}: {v}" for k, v in (labels or sources or {}).items()) \
            or "the peaks the bound used"
        note = "; ".join(filter(None, [note, f"{over:,} row(s) above their own ceiling (outlined red): that ceiling "
                                              f"is too low for them (ceilings from {named})"]))
    ys = numeric(points, "achieved_flops_per_s")
    peaks = numeric(ceilings, "peak_flops_per_s") if ceilings is not None and not ceilings.empty else np.array([])
    fig.update_layout(template=TEMPLATE, title=title,
                      xaxis=log_axis([x_lo, x_hi], "FLOP/B",
                                     title="arithmetic intensity (FLOP per byte of minimum traffic)"),
                      yaxis=log_axis([*ys, *peaks], "FLOP/s", title="achieved FLOP/s"),
                      legend_title="device dtype / ceiling (source)", margin={"b": 110})
    return add_note(fig, note)
def _ridge(rec) -> float:
    bw = rec.mem_bandwidth_bytes_per_s
    return rec.peak_flops_per_s / bw if bw and math.isfinite(bw) and bw > 0 else math.nan
