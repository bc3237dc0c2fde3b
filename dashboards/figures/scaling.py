"""Scaling laws: time vs problem size (or batch) per group, fitted t0 + c·x^b.

Each group (device, implementation, dtype by default) with at least four distinct x
values gets a fit from ``perfscope.scaling``: the curve, a 95% prediction band carried
past the largest measured x (the extrapolation), and the relative residuals below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perfscope.dashboards.aggregate import group_codes, group_quantiles
from perfscope.dashboards.figures.common import TEMPLATE, add_note, check_rows, message_figure, numeric, seconds
from perfscope.dashboards.units import log_axis
from perfscope.errors import InvalidInputError
from perfscope.scaling import fit_power_law

X_CHOICES = {
    "flops": "FLOPs per call",
    "min_bytes": "minimum bytes per call",
    "batch_size": "batch size",
    "m": "m", "n": "n", "k": "k",
    "seq_q": "query length", "seq_k": "key length",
}
DEFAULT_GROUP_BY = ("device_key", "implementation", "dtype")
MAX_GROUPS = 8
EXTRAPOLATE = 4.0  # the band runs to this multiple of the largest measured x
MAX_DRAWN_PER_GROUP = 60  # sizes drawn per group (and in its residuals): SVG marks cost the browser


def group_points(rows: pd.DataFrame, x: str, group_by: Sequence[str]) -> pd.DataFrame:
    """Median time per (group, x): columns ``group``, ``x``, ``time_s``, ``rows``."""
    group_by = [g for g in group_by if g in rows]
    xv, tv = numeric(rows, x), numeric(rows, "time_s")
    ok = np.isfinite(xv) & (xv > 0) & np.isfinite(tv) & (tv > 0)
    if not ok.any():
        return pd.DataFrame(columns=["group", "x", "time_s", "rows"])
    idx = np.flatnonzero(ok)
    # only the group columns are copied (not every column of the selection)
    frame = pd.DataFrame({g: rows[g].array.take(idx) for g in group_by}, index=pd.RangeIndex(len(idx)))
    frame["x"] = xv[idx]
    frame["time_s"] = tv[idx]
    # medians on integer group codes (pandas' groupby median on a million rows: ~0.4 s more)
    groups, table = group_codes(frame, [*group_by, "x"])
    counts, medians = group_quantiles(groups, frame["time_s"].to_numpy(), [0.5], n_groups=len(table))
    out = pd.DataFrame({"x": table["x"].astype(float).to_numpy(), "time_s": medians[:, 0], "rows": counts})
    if group_by:  # "device impl dtype", built column by column (a row-wise join costs a second)
        label = table[group_by[0]].astype(object)
        for column in group_by[1:]:
            label = label + " " + table[column].astype(object)
        out["group"] = label.to_numpy()
    else:
        out["group"] = "all rows"
    out = out[out["rows"] > 0].sort_values(["group", "x"], kind="stable")
    return out[["group", "x", "time_s", "rows"]].reset_index(drop=True)


def fit_groups(points: pd.DataFrame) -> tuple[dict[str, object], pd.DataFrame]:
    """Fit each group; returns (fits by group, a table of parameters or why there is none)."""
    fits: dict[str, object] = {}
    records = []
    for group, part in points.groupby("group", sort=False):
        try:
            fit = fit_power_law(part["x"], part["time_s"])
        except InvalidInputError as exc:
            records.append({"group": group, "points": len(part), "t0": "", "c": "", "b": "", "residual": "",
                            "note": str(exc)})
            continue
        fits[str(group)] = fit
        se = fit.stderr
        records.append({"group": group, "points": fit.n_points,
                        "t0": f"{seconds(fit.t0)} ± {seconds(se['t0'])}",
                        "c": f"{fit.c:.3g} ± {se['c']:.2g}",
                        "b": f"{fit.b:.3f} ± {se['b']:.3f}",
                        "residual": f"{math.expm1(fit.residual_std_log):.1%} (1 s.d.)", "note": ""})
    return fits, pd.DataFrame.from_records(records, columns=["group", "points", "t0", "c", "b", "residual", "note"])


def scaling_figure(rows: pd.DataFrame, x: str = "flops", group_by: Sequence[str] = DEFAULT_GROUP_BY, *,
                   max_groups: int = MAX_GROUPS, level: float = 0.95) -> go.Figure:
    """Median time vs ``x`` per group with fitted t0 + c·x^b, its band and residuals."""
    return scaling_view(rows, x, group_by, max_groups=max_groups, level=level)[0]


def scaling_view(rows: pd.DataFrame, x: str = "flops", group_by: Sequence[str] = DEFAULT_GROUP_BY, *,
                 max_groups: int = MAX_GROUPS, level: float = 0.95) -> tuple[go.Figure, pd.DataFrame]:
    """``scaling_figure`` and the table of fitted parameters of the groups it shows (one fit each)."""
    title = f"Scaling: time vs {X_CHOICES.get(x, x)}"
    empty = pd.DataFrame(columns=["group", "points", "t0", "c", "b", "residual", "note"])
    problem = check_rows(rows, [x, "time_s"], title)
    if problem is not None:
        return problem, empty
    points = group_points(rows, x, group_by)
    if points.empty:
        hint = (" (an import without --flops/--bytes records no work per call: pick a size as x)"
                if x in ("flops", "min_bytes") else "")
        return message_figure(f"{title}: no rows with a positive {x} and a measured time{hint}", title), empty
    sizes = points.groupby("group").size().sort_values(ascending=False)
    shown = list(sizes.index[:max_groups])
    points = points[points["group"].isin(shown)]
    fits, table = fit_groups(points)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.06)
    shapes: list[dict] = []
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    thinned = 0
    for i, group in enumerate(shown):
        color = palette[i % len(palette)]
        fitted_points = points[points["group"] == group]
        part = _spread(fitted_points, MAX_DRAWN_PER_GROUP)  # the fit uses every point; fewer are drawn
        thinned += len(fitted_points) - len(part)
        fig.add_scatter(x=part["x"], y=part["time_s"], mode="markers", name=str(group), legendgroup=str(group),
                        marker={"color": color, "size": 7}, row=1, col=1,
                        customdata=part[["rows"]].to_numpy(),
                        hovertemplate=f"{group}<br>{x} %{{x:.4s}}<br>median %{{y:.3s}}s "
                                      "(%{customdata[0]} rows)<extra></extra>")
        fit = fits.get(str(group))
        if fit is None:
            continue
        grid = np.logspace(math.log10(fit.x_min), math.log10(fit.x_max * EXTRAPOLATE), 80)
        low, high = fit.band(grid, level)
        fig.add_scatter(x=np.concatenate([grid, grid[::-1]]), y=np.concatenate([high, low[::-1]]),
                        fill="toself", fillcolor=_rgba(color, 0.15), line={"width": 0}, hoverinfo="skip",
                        showlegend=False, legendgroup=str(group), row=1, col=1)
        se = fit.stderr
        fig.add_scatter(x=grid, y=fit.predict(grid), mode="lines", line={"color": color}, legendgroup=str(group),
                        showlegend=False, row=1, col=1,
                        hovertemplate=(f"fit: t0 {seconds(fit.t0)} ± {seconds(se['t0'])}, "
                                       f"b {fit.b:.3f} ± {se['b']:.3f}<br>{x} %{{x:.4s}}: %{{y:.3s}}s"
                                       "<extra></extra>"))
        shapes.append({"type": "line", "xref": "x", "yref": "y domain", "x0": fit.x_max, "x1": fit.x_max, "y0": 0,
                       "y1": 1, "line": {"color": color, "width": 1, "dash": "dot"}})
        fig.add_scatter(x=part["x"], y=fit.residuals(part["x"], part["time_s"]), mode="markers+lines",
                        marker={"color": color, "size": 6}, line={"width": 1}, legendgroup=str(group),
                        showlegend=False, row=2, col=1,
                        hovertemplate=f"{group}<br>residual %{{y:.1%}}<extra></extra>")
    shapes.append({"type": "line", "xref": "x2 domain", "yref": "y2", "x0": 0, "x1": 1, "y0": 0, "y1": 0,
                   "line": {"color": "black", "width": 1}})
    fig.layout.shapes = shapes  # set once: add_vline/add_hline with row/col cost ~50 ms each
    notes = []
    if len(sizes) > max_groups:
        notes.append(f"{len(sizes)} groups: the {max_groups} with the most sizes shown (narrow the filters)")
    unfitted = [g for g in shown if str(g) not in fits]
    if unfitted:
        notes.append(f"not fitted (fewer than 4 sizes): {', '.join(map(str, unfitted[:4]))}"
                     + (" ..." if len(unfitted) > 4 else ""))
    if thinned:
        notes.append(f"{thinned:,} of {len(points):,} sizes not drawn (at most {MAX_DRAWN_PER_GROUP} per group, "
                     "spread over x; the fits use them all)")
    notes.append(f"band: {level:.0%} prediction band; dotted line: largest measured {x} (extrapolation beyond)")
    fig.update_layout(template=TEMPLATE, title=title, margin={"b": 120}, legend_title="group")
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_xaxes(type="log", title=X_CHOICES.get(x, x), row=2, col=1)
    fig.update_yaxes(log_axis(numeric(points, "time_s"), "s", title="median time"), row=1, col=1)
    fig.update_yaxes(title="time / fit - 1", tickformat=".0%", row=2, col=1)
    return add_note(fig, "; ".join(notes)), table


def _spread(part: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most about ``limit`` of a group's points, one per equal step of log x (all when fewer)."""
    if len(part) <= limit:
        return part
    log_x = np.log10(part["x"].to_numpy(dtype=float))
    span = float(log_x.max() - log_x.min()) or 1.0
    step = np.minimum(((log_x - log_x.min()) / span * limit).astype(np.int64), limit - 1)
    _, first = np.unique(step, return_index=True)
    return part.iloc[np.sort(first)]


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


