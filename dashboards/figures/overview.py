"""Overview: what the dataset holds, where it came from, and its data-quality flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from perfscope.dashboards.aggregate import group_codes
from perfscope.dashboards.figures.common import TEMPLATE, check_rows, message_figure

QUALITY_FLAGS = ("noisy", "throttled", "estimated energy", "doubtful energy", "non-ok status")
PROVENANCE_COLUMNS = (
    ("dataset", "dataset"), ("source", "row source"), ("host", "host"), ("device_name", "device"), ("cpu_model", "CPU"),
    ("driver_version", "driver"), ("cuda_version", "CUDA"), ("torch_version", "torch"),
    ("triton_version", "triton"), ("perfscope_version", "perfscope"), ("timing_method", "timing method"),
    ("energy_method", "energy method"), ("cache_mode", "cache mode"),
)


def value_counts(series: pd.Series) -> pd.Series:
    """Rows per non-null value, most common first, zero counts left out (on a categorical:
    one ``bincount`` of its codes, not pandas' value_counts over every category)."""
    if not isinstance(series.dtype, pd.CategoricalDtype):
        counts = series.value_counts()
        return counts[counts > 0]
    codes = series.cat.codes.to_numpy()
    counts = np.bincount(codes[codes >= 0], minlength=len(series.cat.categories))
    present = np.flatnonzero(counts)
    order = present[np.argsort(-counts[present], kind="stable")]
    return pd.Series(counts[order], index=series.cat.categories[order])


def quality_flags(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows per data-quality flag: flag, rows, share (of all rows), what it means."""
    n = len(rows)

    def truthy(column: str) -> int:
        if column not in rows:
            return 0
        values = rows[column]
        if values.dtype == bool:
            return int(values.sum())
        return int((values.to_numpy() == True).sum())  # noqa: E712 (object columns: True, False or None)

    doubtful = int((rows["energy_quality"] == "doubtful").sum()) if "energy_quality" in rows else 0
    non_ok = int((rows["status"] != "ok").sum()) if "status" in rows else 0
    records = [
        ("noisy", truthy("noisy"), "the median's interval did not reach its target"),
        ("throttled", truthy("throttled"), "the GPU reported throttle reasons during the run"),
        ("estimated energy", truthy("energy_is_estimate"), "energy from TDP x utilisation, not a meter"),
        ("doubtful energy", doubtful, "imported power of weak provenance"),
        ("non-ok status", non_ok, "unsupported, failed check, error, out of memory or skipped"),
    ]
    frame = pd.DataFrame(records, columns=["flag", "rows", "meaning"])
    frame["share"] = frame["rows"] / n if n else np.nan
    return frame[["flag", "rows", "share", "meaning"]]


def status_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows per status (and the most common reason for each non-ok status)."""
    if "status" not in rows or rows.empty:
        return pd.DataFrame(columns=["status", "rows", "example reason"])
    status = rows["status"]
    counts = status.value_counts(dropna=False)
    counts = counts[counts > 0]
    reasons = {}
    if "reason" in rows:
        for value in counts.index:
            if value == "ok" or pd.isna(value):
                continue
            r = rows.loc[(status == value).to_numpy(), "reason"].dropna()
            reasons[value] = str(r.value_counts().index[0]) if len(r) else ""
    return pd.DataFrame({"status": [str(s) for s in counts.index], "rows": counts.to_numpy(),
                         "example reason": [reasons.get(s, "") for s in counts.index]})


UNMEASURED_COLUMNS = ("status", "reason", "device_key", "kernel", "implementation", "dtype", "shape", "tile",
                      "run_id", "config_id")


def unmeasured_rows(rows: pd.DataFrame, measured: tuple[str, ...] = ("ok", "contended"),
                    limit: int = 500) -> pd.DataFrame:
    """The rows that did not run (error, too large, unsupported, ...): first ``limit`` of them.

    These rows have no time and get no roofline features; the overview lists them so a
    failed configuration is seen rather than silently missing from the charts.
    """
    if "status" not in rows or rows.empty:
        return pd.DataFrame(columns=list(UNMEASURED_COLUMNS))
    failed = rows.loc[~rows["status"].isin(measured).to_numpy()]
    return failed[[c for c in UNMEASURED_COLUMNS if c in failed.columns]].head(limit).astype(str)


def dataset_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """What the rows hold: counts of rows, configurations, runs, devices, kernels, dtypes, dates."""
    def nunique(column: str) -> int:
        return len(value_counts(rows[column])) if column in rows else 0

    def values(column: str, limit: int = 8) -> str:
        if column not in rows or rows.empty:
            return ""
        counts = value_counts(rows[column])
        shown = ", ".join(f"{v} ({c:,})" for v, c in counts.head(limit).items())
        return shown + (f", ... (+{len(counts) - limit})" if len(counts) > limit else "")

    items = [("rows", f"{len(rows):,}"), ("configurations", f"{nunique('config_id'):,}"),
             ("runs", f"{nunique('run_id'):,}"), ("devices", values("device_key")),
             ("kernel families", values("kernel")), ("implementations", values("implementation")),
             ("dtypes", values("dtype"))]
    if "measured_at" in rows and len(rows):
        when = rows["measured_at"]
        if not pd.api.types.is_datetime64_any_dtype(when):
            when = pd.to_datetime(when, utc=True, errors="coerce")
        first, last = when.min(), when.max()
        if pd.notna(first):
            items.append(("measured", f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"))
    if "energy_method" in rows:
        items.append(("energy", values("energy_method")))
    return pd.DataFrame(items, columns=["what", "value"])


def provenance_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Distinct provenance values (hosts, devices, versions, methods) with their row counts."""
    items = []
    for column, label in PROVENANCE_COLUMNS:
        if column not in rows or rows.empty:
            continue
        counts = value_counts(rows[column])
        if not len(counts):
            continue
        shown = ", ".join(f"{v} ({c:,})" for v, c in counts.head(6).items())
        if len(counts) > 6:
            shown += f", ... (+{len(counts) - 6})"
        items.append((label, shown))
    return pd.DataFrame(items, columns=["what", "values"])


def quality_figure(rows: pd.DataFrame) -> go.Figure:
    """Bars: rows per data-quality flag, non-ok statuses broken down by status."""
    title = "Data quality flags"
    problem = check_rows(rows, ["status"], title)
    if problem is not None:
        return problem
    flags = quality_flags(rows)
    flagged = flags[flags["flag"] != "non-ok status"]
    fig = go.Figure()
    fig.add_bar(x=flagged["rows"], y=flagged["flag"], orientation="h", name="flagged rows",
                marker_color="#d98c2b", customdata=flagged[["meaning"]].to_numpy(),
                hovertemplate="%{y}: %{x:,} rows<br>%{customdata[0]}<extra></extra>")
    statuses = status_counts(rows)
    bad = statuses[statuses["status"] != "ok"]
    for status, count, reason in bad.itertuples(index=False):
        fig.add_bar(x=[count], y=["non-ok status"], orientation="h", name=f"status {status}",
                    hovertemplate=f"{status}: %{{x:,}} rows<br>e.g. {reason}<extra></extra>")
    if bad.empty:
        fig.add_bar(x=[0], y=["non-ok status"], orientation="h", name="non-ok status", marker_color="#d98c2b")
    fig.update_layout(template=TEMPLATE, title=f"{title} ({len(rows):,} rows)", barmode="stack",
                      xaxis_title="rows", yaxis={"categoryorder": "array", "categoryarray": list(QUALITY_FLAGS)[::-1]},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def coverage_figure(rows: pd.DataFrame) -> go.Figure:
    """Bars: rows per device and kernel family, stacked by dtype (ok rows vs others in hover)."""
    title = "What was measured"
    problem = check_rows(rows, ["device_key", "kernel", "dtype"], title)
    if problem is not None:
        return problem
    keys = ["device_key", "kernel", "dtype"]
    groups, counts = group_codes(rows, keys)  # category codes, not pandas' groupby: 10x faster at 1M rows
    counts["rows"] = np.bincount(groups, minlength=len(counts))
    counts = counts[(counts[keys] != "").all(axis=1)].sort_values(keys).reset_index(drop=True)  # no missing key
    counts["group"] = counts["device_key"].astype(str) + " / " + counts["kernel"].astype(str)
    if counts.empty:
        return message_figure(f"{title}: no rows with a device, kernel and dtype", title)
    fig = go.Figure()
    for dtype, part in counts.groupby("dtype", observed=True):
        fig.add_bar(x=part["group"], y=part["rows"], name=str(dtype),
                    hovertemplate="%{x}<br>" + str(dtype) + ": %{y:,} rows<extra></extra>")
    fig.update_layout(template=TEMPLATE, title=title, barmode="stack", yaxis_title="rows",
                      xaxis_title="device / kernel family", legend_title="dtype")
    return fig
