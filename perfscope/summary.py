"""Summaries of profile rows (pure functions over Arrow tables)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def summarise(table: pa.Table) -> list[dict[str, Any]]:
    """One entry per (device, kernel, dtype): row counts by status, timing range, energy methods."""
    if table.num_rows == 0:
        return []
    df = table.to_pandas()
    out = []
    for (device_key, kernel, dtype), g in df.groupby(["device_key", "kernel", "dtype"], sort=True):
        ok = g[g["status"] == "ok"]
        out.append({
            "device": device_key,
            "kernel": kernel,
            "dtype": dtype,
            "rows": int(len(g)),
            "ok": int(len(ok)),
            "statuses": {str(k): int(v) for k, v in g["status"].value_counts().items()},
            "noisy": int(ok["noisy"].fillna(False).astype(bool).sum()),
            "time_median_ms_min": _num(ok["time_median_ms"].min()),
            "time_median_ms_max": _num(ok["time_median_ms"].max()),
            "gflops_per_s_max": _num(ok["achieved_flops_per_s"].max() / 1e9),
            "energy_methods": sorted(str(m) for m in g["energy_method"].dropna().unique()),
            "runs": int(g["run_id"].nunique()),
        })
    return out


def _num(value: Any) -> float | None:
    return None if value is None or value != value else float(value)
