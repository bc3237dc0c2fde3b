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
                      xaxis={"type": "log", "title": "FLOPs per call"},
                      yaxis={"type": "log", "title": "median latency (s)"})
    return add_note(fig, note)


def _peaks(rows: pd.DataFrame) -> pd.DataFrame:
    """Distinct (device_key, dtype, peak) with row counts, most common first."""
    empty = pd.DataFrame(columns=["device_key", "dtype", "peak", "rows"])
    if any(c not in rows for c in ("peak_flops_per_s", "device_key", "dtype")):
        return empty
    frame = rows[["device_key", "dtype", "peak_flops_per_s"]]
    if "time_s" in rows:  # only dtypes with measured points get a line
        frame = frame[positive(numeric(rows, "time_s"))]
    out = frame.groupby(["device_key", "dtype", "peak_flops_per_s"], observed=True, dropna=True).size()
    out = out[out > 0].reset_index(name="rows").rename(columns={"peak_flops_per_s": "peak"})
    out = out[positive(out["peak"].to_numpy(dtype=float))]
    if out.empty:
        return empty
    out["device_key"] = out["device_key"].astype(str)
    out["dtype"] = out["dtype"].astype(str)
    return out.sort_values("rows", ascending=False).reset_index(drop=True)


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
    grouped = frame.groupby(["device_key", "config_id"], observed=True, sort=False)
    med = grouped["gap"].median().dropna().sort_values(ascending=False).head(top)
    firsts = frame.drop_duplicates(["device_key", "config_id"]).set_index(["device_key", "config_id"])
    chosen = firsts.loc[med.index].reset_index()
    return pd.DataFrame({
        "configuration": config_labels(chosen),
        "device": chosen["device_key"].astype(str).to_numpy(),
        "gap": [f"{g:.3g}x" for g in med.to_numpy()],
        "time": [seconds(v) for v in numeric(chosen, "time_s")],
        "bound": [seconds(v) for v in numeric(chosen, "bound_time_s")],
        "regime": chosen["bound"].astype(str).to_numpy() if "bound" in chosen else "",
    })


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
    names = [str(v) for v in layers["layer"]]
    fig = go.Figure()
    fig.add_bar(x=names, y=bound, name="roofline bound", marker_color="#9aa5b1",
                hovertemplate="%{x}: bound %{y:.3s}s<extra></extra>")
    fig.add_bar(x=names, y=measured, name="measured (median)", marker_color="#2b6cb0",
                hovertemplate="%{x}: measured %{y:.3s}s<extra></extra>")
    totals = totals or {}
    total_names = ["Σ bounds", "Σ measured", "fused bound"]
    total_values = [totals.get("sum_bound_s", math.nan), totals.get("measured_sum_s", math.nan),
                    totals.get("fused_bound_s", math.nan)]
    fig.add_bar(x=total_names, y=total_values, name="totals", marker_color=["#9aa5b1", "#2b6cb0", "#2f855a"],
                hovertemplate="%{x}: %{y:.3s}s<extra></extra>")
    # the waterline: cumulative bound across the sequence
    cumulative = np.nancumsum(np.where(np.isfinite(bound), bound, 0.0))
    fig.add_scatter(x=names, y=cumulative, mode="lines+markers", name="cumulative bound (waterline)",
                    line={"color": "#c05621", "dash": "dash"})
    missing = [n for n, m in zip(names, measured, strict=True) if not math.isfinite(m)]
    note = (f"not measured in the selection: {', '.join(missing)} (the measured sum leaves them out)"
            if missing else None)
    fig.update_layout(template=TEMPLATE, title=title, barmode="group", margin={"b": 110},
                      yaxis={"title": "time per call (s)", "type": "log"})
    return add_note(fig, note)
