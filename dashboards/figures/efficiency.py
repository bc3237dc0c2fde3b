"""Efficiency gap and waterline (Lavin, "On the Efficiency of Convolutional Neural Networks").

latency = FLOPs / (efficiency · peak): on log-log axes of latency against FLOPs every
efficiency is a diagonal of slope 1, the peak line (efficiency 1) the lowest; a kernel's
vertical distance above it is its gap. The gap per configuration is measured time over
the roofline bound (which also counts memory traffic and the launch floor).
"""

from __future__ import annotations

import math

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
    hover,
    marker_sizes,
    message_figure,
    numeric,
    positive,
    seconds,
    si,
    split_by,
    thin_points,
)
from perfscope.dashboards.units import duration, linear_ticks, log_axis

ISO_EFFICIENCIES = (0.5, 0.25, 0.1, 0.01)
GAP_HOVER = (
    ("flops", "FLOPs", ".3s"),
    ("time_s", "median time (s)", ".3s"),
    ("bound_time_s", "roofline bound (s)", ".3s"),
    ("gap", "gap (time / bound)", ".3g"),
)


def latency_flops_figure(rows: pd.DataFrame, *, efficiencies: tuple[float, ...] = ISO_EFFICIENCIES,
                         max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    """Measured latency vs FLOPs (log-log), peak line per (device, dtype) and iso-efficiency
    diagonals for the peak of the most common (device, dtype)."""
    title = "Latency vs work"
    problem = check_rows(rows, ["flops", "time_s", "dtype"], title)
    if problem is not None:
        return problem
    points, note = thin_points(rows, "flops", "time_s", by="dtype", max_points=max_points)
    if points.empty:
        return message_figure(f"{title}: no rows with positive FLOPs and a measured time", title)
    fig = go.Figure()
    for dtype, part in split_by(points, "dtype"):
        fig.add_scatter(x=part["flops"], y=part["time_s"], mode="markers", name=dtype,
                        marker={"size": marker_sizes(part["point_count"]), "opacity": 0.75},
                        **hover(part, GAP_HOVER))
    flops = numeric(points, "flops")
    grid = np.logspace(math.log10(np.nanmin(flops)) - 0.3, math.log10(np.nanmax(flops)) + 0.3, 50)
    peaks = _peaks(rows)
    if peaks.empty:
        no_peak = ("no peak for these rows' device and dtype: no peak line or iso-efficiency diagonals "
                   "(calibrate the device or use a spec-table GPU)")
        note = "; ".join(filter(None, [note, no_peak]))
    else:
        for i, rec in enumerate(peaks.itertuples(index=False)):
            fig.add_scatter(x=grid, y=grid / rec.peak, mode="lines", name=f"peak {rec.device_key} {rec.dtype}",
                            line={"width": 2, "color": "black" if i == 0 else None},
                            hovertemplate=f"peak {si(rec.peak, 'FLOP/s')}: latency = FLOPs / peak<extra></extra>")
        main = peaks.iloc[0]
        peak, dtype, device = float(main["peak"]), str(main["dtype"]), str(main["device_key"])
        for eff in efficiencies:
            fig.add_scatter(x=grid, y=grid / (eff * peak), mode="lines", name=f"{eff:.0%} of {dtype} peak",
                            line={"dash": "dot", "width": 1, "color": "#888"},
                            hovertemplate=f"{eff:.0%} of {device} {dtype} peak<extra></extra>")
    fig.update_layout(template=TEMPLATE, title=title, margin={"b": 110},
                      xaxis=log_axis(grid, "FLOP", title="work per call"),
                      yaxis=log_axis(numeric(points, "time_s"), "s", title="median latency"))
    return add_note(fig, note)


def _peaks(rows: pd.DataFrame) -> pd.DataFrame:
    """Distinct (device_key, dtype, peak) with row counts, most common first."""
    empty = pd.DataFrame(columns=["device_key", "dtype", "peak", "rows"])
    if any(c not in rows for c in ("peak_flops_per_s", "device_key", "dtype")):
        return empty
    keys = ["device_key", "dtype", "peak_flops_per_s"]
    frame = rows[keys]
    if "time_s" in rows:  # only dtypes with measured points get a line
        frame = frame[positive(numeric(rows, "time_s"))]
    groups, out = group_codes(frame, keys)  # on codes: pandas' groupby on a float key costs ~0.3 s at 1M rows
    out["rows"] = np.bincount(groups, minlength=len(out))
    out = out[(out[keys] != "").all(axis=1)]  # no missing key
    out = out.rename(columns={"peak_flops_per_s": "peak"}).assign(peak=lambda f: f["peak"].astype(float))
    out = out[positive(out["peak"].to_numpy(dtype=float))]
    if out.empty:
        return empty
    return out.sort_values(["rows", "device_key", "dtype"], ascending=[False, True, True]).reset_index(drop=True)


def gap_figure(rows: pd.DataFrame, *, max_points: int = DEFAULT_MAX_POINTS) -> go.Figure:
    """The efficiency gap (measured time / roofline bound) of each configuration vs its FLOPs."""
    title = "Efficiency gap per configuration"
    problem = check_rows(rows, ["gap", "flops", "dtype"], title)
    if problem is not None:
        return problem
    gap = numeric(rows, "gap")
    if not positive(gap).any():
        return message_figure(f"{title}: no roofline bound for these rows (the device has no peak for "
                              "their dtype: calibrate it, or pick a spec-table GPU)", title)
    points, note = thin_points(rows, "flops", "gap", by="dtype", max_points=max_points)
    fig = go.Figure()
    for dtype, part in split_by(points, "dtype"):
        fig.add_scatter(x=part["flops"], y=part["gap"], mode="markers", name=dtype,
                        marker={"size": marker_sizes(part["point_count"]), "opacity": 0.75},
                        **hover(part, GAP_HOVER))
    fig.add_hline(y=1.0, line={"color": "black", "width": 1}, annotation_text="at the bound",
                  annotation_position="bottom right")
    finite = gap[positive(gap)]
    summary = f"median gap {np.median(finite):.3g}x over {finite.size:,} rows"
    fig.update_layout(template=TEMPLATE, title=f"{title} ({summary})", margin={"b": 110},
                      xaxis={"type": "log", "title": "FLOPs per call"},
                      yaxis={"type": "log", "title": "measured time / roofline bound"})
    return add_note(fig, note)


def gap_table(rows: pd.DataFrame, top: int = 15) -> pd.DataFrame:
    """The ``top`` configurations furthest from their bound (median over repeated rows)."""
    need = ("gap", "config_id")
    if rows is None or rows.empty or any(c not in rows for c in need):
        return pd.DataFrame(columns=["configuration", "device", "gap", "time", "bound", "regime"])
    frame = rows[positive(numeric(rows, "gap"))]
    if frame.empty:
        return pd.DataFrame(columns=["configuration", "device", "gap", "time", "bound", "regime"])
    groups, _ = group_codes(frame, ["device_key", "config_id"], labels=False)
    gaps = numeric(frame, "gap")
    # only groups whose largest gap reaches the top-th largest smallest gap can hold a top
    # median (a median lies between its group's extremes): medians of those groups only
    extremes = pd.Series(gaps).groupby(groups, sort=False).agg(["min", "max"])
    if len(extremes) > top:
        threshold = np.partition(extremes["min"].to_numpy(), -top)[-top]
        keep = extremes.index[extremes["max"].to_numpy() >= threshold].to_numpy()
        rows_kept = np.isin(groups, keep)
    else:
        rows_kept = np.ones(len(groups), dtype=bool)
    sub_groups, sub_index = pd.factorize(groups[rows_kept])
    _, medians = group_quantiles(sub_groups.astype(np.int64), gaps[rows_kept], [0.5])
    ranked = np.argsort(-np.nan_to_num(medians[:, 0], nan=-np.inf), kind="stable")[:top]
    ranked = ranked[np.isfinite(medians[ranked, 0])]
    positions = np.flatnonzero(rows_kept)
    first = np.full(len(sub_index), -1, dtype=np.int64)
    first[sub_groups[::-1]] = positions[::-1]  # each group's first row
    chosen = frame.iloc[first[ranked]]
    med = pd.Series(medians[ranked, 0])
    return pd.DataFrame({
        "configuration": config_labels(chosen),
        "device": chosen["device_key"].astype(str).to_numpy(),
        "gap": [f"{g:.3g}x" for g in med.to_numpy()],
        "time": [seconds(v) for v in numeric(chosen, "time_s")],
        "bound": [seconds(v) for v in numeric(chosen, "bound_time_s")],
        "regime": chosen["bound"].astype(str).to_numpy() if "bound" in chosen else "",
    })


MAX_LABEL_CHARS = 28


def short_labels(names: list[str], limit: int = MAX_LABEL_CHARS) -> list[str]:
    """Axis labels of at most ``limit`` characters, still distinct (the full name goes in the hover)."""
    out: list[str] = []
    for name in names:
        label = name if len(name) <= limit else name[:limit - 1] + "…"
        while label in out:  # a repeated label would merge two bars
            label += "\u200b"
        out.append(label)
    return out


def waterline_figure(layers: pd.DataFrame, totals: dict[str, float] | None = None,
                     title: str = "Waterline") -> go.Figure:
    """Per layer: roofline bound and measured time; then the sum of bounds, the measured sum
    and the bound if the layers were fused (intermediate traffic removed).

    ``layers`` has ``layer``, ``bound_time_s`` and ``time_s`` (NaN: not measured);
    ``totals`` has ``sum_bound_s``, ``measured_sum_s``, ``fused_bound_s`` (see
    ``perfscope.dashboards.waterline``).
    """
    problem = check_rows(layers, ["layer", "bound_time_s", "time_s"], title)
    if problem is not None:
        return problem
    bound = numeric(layers, "bound_time_s")
    measured = numeric(layers, "time_s")
    if not np.isfinite(bound).any() and not np.isfinite(measured).any():
        return message_figure(f"{title}: no bound (no peak for this device and dtype) and no measured layer", title)
    full_names = [str(v) for v in layers["layer"]]
    names = short_labels(full_names)
    fig = go.Figure()
    fig.add_bar(x=names, y=bound, name="roofline bound", marker_color="#9aa5b1", customdata=full_names,
                text=[duration(v) if math.isfinite(v) else "" for v in bound], textposition="outside",
                hovertemplate="%{customdata}: bound %{text}<extra></extra>")
    fig.add_bar(x=names, y=measured, name="measured (median)", marker_color="#2b6cb0", customdata=full_names,
                text=[duration(v) if math.isfinite(v) else "" for v in measured], textposition="outside",
                hovertemplate="%{customdata}: measured %{text}<extra></extra>")
    totals = totals or {}
    total_names = ["Σ bounds", "Σ measured", "fused bound"]
    total_values = [totals.get("sum_bound_s", math.nan), totals.get("measured_sum_s", math.nan),
                    totals.get("fused_bound_s", math.nan)]
    fig.add_bar(x=total_names, y=total_values, name="totals", marker_color=["#9aa5b1", "#2b6cb0", "#2f855a"],
                text=[duration(v) if math.isfinite(v) else "" for v in total_values], textposition="outside",
                hovertemplate="%{x}: %{text}<extra></extra>")
    # the waterline: cumulative bound across the sequence
    cumulative = np.nancumsum(np.where(np.isfinite(bound), bound, 0.0))
    fig.add_scatter(x=names, y=cumulative, mode="lines+markers", name="cumulative bound (waterline)",
                    line={"color": "#c05621", "dash": "dash"})
    missing = [n for n, m in zip(full_names, measured, strict=True) if not math.isfinite(m)]
    note = (f"not measured in the selection: {', '.join(missing)} (the measured sum leaves them out)"
            if missing else None)
    heights = [v for v in [*bound, *measured, *total_values, *cumulative] if math.isfinite(v)]
    # a linear axis: a bar twice as long is twice the time
    fig.update_layout(template=TEMPLATE, title=title, barmode="group", margin={"b": 110},
                      xaxis={"tickangle": -30, "automargin": True},
                      yaxis={"title": "time per call (linear)", "type": "linear", **linear_ticks(heights, "s")})
    return add_note(fig, note)
