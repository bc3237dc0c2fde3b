"""Helpers shared by the figure functions: message figures, checks, labels, thinning.

Every figure function returns a figure, never raises on data: an empty frame or a
missing column gives ``message_figure`` with the reason in an annotation.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perfscope.dashboards.units import quantity

# A light template (plotly_white's look without its per-trace defaults: assigning the
# named template costs ~30 ms per figure, this one well under 1 ms).
TEMPLATE = go.layout.Template(layout={
    "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"color": "#2a3f5f"},
    "colorway": ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880",
                 "#FF97FF", "#FECB52"],
    "xaxis": {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "automargin": True},
    "yaxis": {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "automargin": True},
    "hovermode": "closest", "title": {"x": 0.05},
})
DEFAULT_MAX_POINTS = 1_500  # marks per scatter: beyond, rows are binned (SVG draws ~0.3 ms a mark)
MESSAGE_META = "perfscope-message"  # layout.meta marker: tests and pages can tell a message figure


def message_figure(text: str, title: str | None = None) -> go.Figure:
    """An empty figure that says ``text`` in the middle (axes hidden)."""
    fig = go.Figure()
    fig.update_layout(
        template=TEMPLATE, title=title, meta=MESSAGE_META,
        xaxis={"visible": False}, yaxis={"visible": False},
        annotations=[{"text": wrap(text, 70), "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                      "showarrow": False, "font": {"size": 15}, "align": "center"}],
    )
    return fig


def wrap(text: str, width: int = 90) -> str:
    """``text`` broken into lines of at most ``width`` characters (plotly's <br>)."""
    return "<br>".join(textwrap.wrap(text, width)) or text


def placeholder_figure(text: str = "loading...") -> dict:
    """A plain-dict figure for a graph's initial state (no plotly objects built)."""
    return {"data": [], "layout": {"xaxis": {"visible": False}, "yaxis": {"visible": False},
                                   "annotations": [{"text": text, "xref": "paper", "yref": "paper", "x": 0.5,
                                                    "y": 0.5, "showarrow": False}]}}


def warm_up() -> None:
    """Build and serialise one small figure of each kind used, so that plotly's lazy
    imports and validators load at startup rather than on the first page served."""
    fig = make_subplots(rows=2, cols=2)
    fig.add_scatter(x=[1, 2], y=[1, 2], hovertext=np.array(["a", "b"], dtype=object), row=1, col=1)
    fig.add_bar(x=["a"], y=[1], marker={"pattern": {"shape": "/"}}, error_x={"array": [0.1]}, row=1, col=2)
    fig.add_heatmap(z=[[1.0]], text=[["a"]], texttemplate="%{text}", row=2, col=1)
    fig.add_hline(y=1, row=2, col=2)
    fig.add_vline(x=1, row=2, col=2)
    fig.add_shape(type="rect", x0=0, x1=1, y0=0, y1=1)
    fig.update_layout(template=TEMPLATE, barmode="group", legend_title="x", margin={"b": 1}, meta="x")
    fig.update_xaxes(type="log", title="x")
    add_note(fig, "x")
    fig.to_json()
    message_figure("x").to_json()


def is_message(fig: go.Figure) -> bool:
    """True when ``fig`` is a ``message_figure``."""
    return fig.layout.meta == MESSAGE_META


def message_text(fig: go.Figure) -> str:
    """The message of a ``message_figure`` (empty string otherwise)."""
    if not is_message(fig) or not fig.layout.annotations:
        return ""
    return str(fig.layout.annotations[0].text).replace("<br>", " ")


def check_rows(rows: pd.DataFrame | None, required: Iterable[str], what: str) -> go.Figure | None:
    """A message figure when ``rows`` is empty or lacks a required column, else None."""
    if rows is None or not isinstance(rows, pd.DataFrame):
        return message_figure(f"{what}: no rows", what)
    missing = [c for c in required if c not in rows.columns]
    if missing:
        return message_figure(f"{what}: the rows lack column(s) {', '.join(missing)}", what)
    if rows.empty:
        return message_figure(f"{what}: no rows match the filters", what)
    return None


def numeric(rows: pd.DataFrame, column: str) -> np.ndarray:
    """A column as float64 (NaN for missing or non-numeric values; all NaN if absent)."""
    if column not in rows:
        return np.full(len(rows), np.nan)
    series = rows[column]
    if series.dtype.kind in "iuf":
        return series.to_numpy(dtype=float)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def positive(values: np.ndarray) -> np.ndarray:
    """Mask of finite positive values (what a log axis can show)."""
    return np.isfinite(values) & (values > 0)


def _int_text(values: np.ndarray) -> np.ndarray:
    out = np.full(values.shape, "?", dtype=object)
    ok = np.isfinite(values)
    out[ok] = [str(int(v)) if float(v).is_integer() else f"{v:g}" for v in values[ok]]
    return out


def shape_labels(rows: pd.DataFrame) -> np.ndarray:
    """Readable shape per row: GEMM "4x256x256x256" (batch first when > 1), conv
    "n32 c64 56x56 k64 3x3", attention "b1 h16/16 q2048 k2048 d64 causal"; else the config id."""
    n = len(rows)
    if "shape" in rows:  # precomputed by the dashboard's data layer
        return rows["shape"].astype(str).to_numpy(dtype=object)
    out = np.full(n, "", dtype=object)
    if n == 0:
        return out
    kernel = rows["kernel"].astype(str).to_numpy() if "kernel" in rows else np.full(n, "")
    col = lambda name: _int_text(numeric(rows, name))  # noqa: E731
    gemm = kernel == "gemm"
    if gemm.any():
        b, m, nn, k = col("batch"), col("m"), col("n"), col("k")
        for i in np.flatnonzero(gemm):
            prefix = f"{b[i]}x" if b[i] not in ("1", "?") else ""
            out[i] = f"{prefix}{m[i]}x{nn[i]}x{k[i]}"
    conv = kernel == "conv"
    if conv.any():
        cn, cc, ch, cw, ck, cr, cs = (col(c) for c in ("conv_n", "conv_c", "conv_h", "conv_w", "conv_k",
                                                       "conv_r", "conv_s"))
        stride, pad, groups = col("stride_h"), col("pad_h"), col("groups")
        for i in np.flatnonzero(conv):
            label = f"n{cn[i]} c{cc[i]} {ch[i]}x{cw[i]} k{ck[i]} {cr[i]}x{cs[i]}"
            if stride[i] not in ("1", "?"):
                label += f" s{stride[i]}"
            if pad[i] not in ("0", "?"):
                label += f" p{pad[i]}"
            if groups[i] not in ("1", "?"):
                label += f" g{groups[i]}"
            out[i] = label
    attn = kernel == "attention"
    if attn.any():
        b, h, hk, q, kk, d = (col(c) for c in ("batch", "heads", "kv_heads", "seq_q", "seq_k", "head_dim"))
        causal = rows["causal"].to_numpy() if "causal" in rows else np.full(n, None)
        for i in np.flatnonzero(attn):
            out[i] = f"b{b[i]} h{h[i]}/{hk[i]} q{q[i]} k{kk[i]} d{d[i]}" + (" causal" if causal[i] is True else "")
    rest = out == ""
    if rest.any():
        ids = rows["config_id"].astype(str).to_numpy() if "config_id" in rows else np.full(n, "?")
        out[rest] = ids[rest]
    return out


def config_labels(rows: pd.DataFrame) -> np.ndarray:
    """"torch.matmul bf16 4x256x256x256 [128x128x32]" per row (tile only when tiled)."""
    n = len(rows)
    if n == 0:
        return np.empty(0, dtype=object)

    def text(column: str, default: str = "") -> np.ndarray:
        if column not in rows:
            return np.full(n, default, dtype=object)
        return rows[column].astype(str).to_numpy(dtype=object)

    tile = text("tile", "untiled")
    suffix = np.where(np.isin(tile, ["untiled", "nan", ""]), "", " [" + tile + "]")
    return text("implementation") + " " + text("dtype") + " " + shape_labels(rows) + suffix


def split_by(frame: pd.DataFrame, column: str) -> list[tuple[str, pd.DataFrame]]:
    """(value as text, rows) per distinct value of ``column``, sorted by value; missing
    values as "n/a". (Cheaper than groupby on a derived key for a few groups.)"""
    if frame.empty:
        return []
    codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
    out = []
    for code, value in enumerate(uniques):
        out.append((str(value), frame.iloc[np.flatnonzero(codes == code)]))
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        out.append(("n/a", frame.iloc[missing]))
    return sorted(out, key=lambda item: item[0])


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """Engineering notation with an SI prefix (``units.quantity``): 1.5e12 FLOP/s reads "1.5 TFLOP/s"."""
    return quantity(value, unit, digits)


def seconds(value: float) -> str:
    """A duration in s/ms/µs/ns."""
    return quantity(value, "s")


def thin_points(rows: pd.DataFrame, x: str, y: str, *, by: str | None = None,
                max_points: int = DEFAULT_MAX_POINTS, sums: Sequence[str] = ()) -> tuple[pd.DataFrame, str | None]:
    """At most about ``max_points`` points for a log-log scatter, aggregated server-side.

    Up to ``max_points`` rows are returned as they are (``point_count`` 1). Beyond, rows
    are binned on a log grid per ``by`` group; each bin becomes one point at the geometric
    mean of its x and y, carrying its first row's other columns and ``point_count``; each
    column of ``sums`` is summed over the bin (a count of flagged rows, say).
    Returns the frame and a note saying how many rows went into how many points.
    """
    xv, yv = numeric(rows, x), numeric(rows, y)
    ok = positive(xv) & positive(yv)
    if ok.all():
        frame, xv, yv = rows, xv, yv
    else:
        frame, xv, yv = rows.iloc[np.flatnonzero(ok)], xv[ok], yv[ok]
    n = len(frame)
    if n <= max_points:
        return frame.assign(point_count=1), None
    if by is not None and by in frame:
        group_codes, _ = pd.factorize(frame[by], use_na_sentinel=False)
        groups = int(group_codes.max()) + 1
    else:
        group_codes, groups = np.zeros(n, dtype=np.int64), 1
    bins = max(8, int(math.sqrt(max_points / max(1, groups))))
    lx, ly = np.log10(xv), np.log10(yv)
    ix = _bin(lx, bins)
    iy = _bin(ly, bins)
    key = (group_codes.astype(np.int64) * bins + ix) * bins + iy
    inverse, uniq = pd.factorize(key)  # hashing, no sort
    counts = np.bincount(inverse, minlength=len(uniq))
    first = np.empty(len(uniq), dtype=np.int64)
    first[inverse[::-1]] = np.arange(n - 1, -1, -1)  # the last write wins: each bin's first row
    mean_lx = np.bincount(inverse, weights=lx, minlength=len(uniq)) / counts
    mean_ly = np.bincount(inverse, weights=ly, minlength=len(uniq)) / counts
    out = frame.iloc[first].copy()
    out[x] = 10 ** mean_lx
    out[y] = 10 ** mean_ly
    out["point_count"] = counts
    for column in sums:
        if column in frame:
            out[column] = np.bincount(inverse, weights=numeric(frame, column), minlength=len(uniq))
    note = f"{n:,} rows shown as {len(out):,} points (log-binned geometric means; size = rows per point)"
    return out, note


def _bin(values: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.int64)
    return np.clip(((values - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)


def marker_sizes(counts: Sequence[int] | np.ndarray) -> np.ndarray | float:
    """Marker sizes that grow with the log of the rows a point stands for (7 for single rows)."""
    counts = np.asarray(counts, dtype=float)
    if counts.size == 0 or np.all(counts <= 1):
        return 7.0
    return 6.0 + 3.0 * np.log10(np.maximum(counts, 1.0))


def add_note(fig: go.Figure, note: str | None) -> go.Figure:
    """A small note under the plot area (thinning, assumptions)."""
    if note:
        fig.add_annotation(text=wrap(note, 110), xref="paper", yref="paper", x=0, y=-0.16, showarrow=False,
                           font={"size": 11, "color": "#555"}, xanchor="left", yanchor="top", align="left")
    return fig


def hover(rows: pd.DataFrame, items: Sequence[tuple[str, str, str]] = ()) -> dict[str, Any]:
    """Hover keyword arguments for a scatter trace: the configuration and device as
    ``text`` (strings), each ``(column, label, d3 format)`` item and the rows a binned
    point stands for as numeric ``customdata``, formatted in the browser. (A numeric
    customdata keeps plotly's validation and JSON encoding fast: no object arrays.)"""
    n = len(rows)
    device = rows["device_key"].astype(str).to_numpy(dtype=object) if "device_key" in rows else np.full(n, "?")
    counts = numeric(rows, "point_count") if "point_count" in rows else np.ones(n)
    present = [(c, label, fmt) for c, label, fmt in items if c in rows]
    data = np.empty((n, 1 + len(present)), dtype=float)
    data[:, 0] = counts
    for j, (column, _, _) in enumerate(present, start=1):
        data[:, j] = numeric(rows, column)
    template = "<b>%{text}</b>"
    for j, (_, label, fmt) in enumerate(present, start=1):
        template += f"<br>{label}: %{{customdata[{j}]:{fmt}}}"
    template += "<br>rows: %{customdata[0]:,}<extra></extra>"
    labels = config_labels(rows)
    if (counts > 1).any():  # a binned point stands for many rows: its label is only an example
        labels = np.where(counts > 1, [f"{int(c):,} rows binned, e.g. " for c in counts], "") + labels
    text = labels + "<br>device: " + device
    return {"text": text, "customdata": data, "hovertemplate": template}
