"""Estimate page figure: the estimated latency, its interval and the roofline bound.

``normalise_estimate`` reads the dict that ``perfscope.workflows.estimate.estimate`` returns,
accepting the key spellings listed in ``_KEYS`` (times in ms or s), so the page does
not break while that API settles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from perfscope.dashboards.figures.common import TEMPLATE, message_figure, si
from perfscope.dashboards.units import duration, finite_number, interval, linear_ticks

# normalised name -> accepted keys, with the factor to seconds (or 1 for other units)
_KEYS: dict[str, tuple[tuple[str, float], ...]] = {
    "time_s": (("time_s", 1.0), ("latency_s", 1.0), ("time_ms", 1e-3), ("latency_ms", 1e-3),
               ("time_median_ms", 1e-3)),
    "low_s": (("time_low_s", 1.0), ("latency_low_s", 1.0), ("time_low_ms", 1e-3), ("latency_low_ms", 1e-3),
              ("interval_low_ms", 1e-3), ("time_ci_low_ms", 1e-3)),
    "high_s": (("time_high_s", 1.0), ("latency_high_s", 1.0), ("time_high_ms", 1e-3), ("latency_high_ms", 1e-3),
               ("interval_high_ms", 1e-3), ("time_ci_high_ms", 1e-3)),
    "bound_s": (("bound_time_s", 1.0), ("bound_s", 1.0), ("bound_time_ms", 1e-3), ("bound_ms", 1e-3)),
    "energy_j": (("energy_j", 1.0), ("energy_gross_j", 1.0), ("energy_per_call_j", 1.0)),
    "power_w": (("power_w", 1.0), ("power_avg_w", 1.0)),
}


def normalise_estimate(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The estimate's numbers under fixed names (``time_s``, ``low_s``, ``high_s``,
    ``bound_s``, ``energy_j``, ``power_w``; NaN when absent) plus ``regime`` and
    ``interval_level`` when given. An ``interval_ms``/``interval_s`` pair fills low/high."""
    result = dict(result or {})
    out: dict[str, Any] = {}
    for name, keys in _KEYS.items():
        out[name] = math.nan
        for key, factor in keys:
            value = finite_number(result.get(key))
            if value is not None:
                out[name] = value * factor
                break
    for key, factor in (("interval_ms", 1e-3), ("interval_s", 1.0)):
        pair = result.get(key)
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and math.isnan(out["low_s"]):
            lo, hi = finite_number(pair[0]), finite_number(pair[1])
            if lo is not None and hi is not None:
                out["low_s"], out["high_s"] = lo * factor, hi * factor
    regime = result.get("regime")
    if regime is None and isinstance(result.get("bound"), str):
        regime = result["bound"]
    out["regime"] = regime
    out["interval_level"] = finite_number(result.get("interval_level") or result.get("coverage"))
    return out



def estimate_figure(result: Mapping[str, Any] | None) -> go.Figure:
    """Bars on a linear time axis: the estimated latency with its interval as whiskers, and
    the roofline bound beside it (so their lengths compare truly)."""
    title = "Estimate"
    if not result:
        return message_figure("Estimate: fill the form and press Estimate", title)
    values = normalise_estimate(result)
    time_s = values["time_s"]
    if not math.isfinite(time_s):
        return message_figure(f"{title}: the estimate has no latency (keys: {', '.join(sorted(result))})", title)
    fig = go.Figure()
    error = None
    has_interval = math.isfinite(values["low_s"]) and math.isfinite(values["high_s"])
    if has_interval:
        error = {"type": "data", "symmetric": False, "array": [max(values["high_s"] - time_s, 0.0)],
                 "arrayminus": [max(time_s - values["low_s"], 0.0)], "thickness": 2, "width": 12}
    level = values.get("interval_level")
    range_text = (f"{interval(values['low_s'], values['high_s'], 's')}" + (f" ({level:.0%})" if level else "")
                  if has_interval else "no interval")
    fig.add_bar(x=[time_s], y=["estimate"], orientation="h", error_x=error, name="estimated latency",
                marker_color="#2b6cb0", text=[duration(time_s)], textposition="inside",
                hovertemplate=f"estimate {duration(time_s)}<br>interval {range_text}<extra></extra>")
    extent = [time_s, values["high_s"]]
    if math.isfinite(values["bound_s"]):
        fig.add_bar(x=[values["bound_s"]], y=["roofline bound"], orientation="h", name="roofline bound",
                    marker_color="#a0aec0", text=[duration(values["bound_s"])], textposition="inside",
                    hovertemplate=f"roofline bound {duration(values['bound_s'])}<extra></extra>")
        extent.append(values["bound_s"])
    energy = f"; energy {si(values['energy_j'], 'J')} per call" if math.isfinite(values["energy_j"]) else ""
    top = max(v for v in extent if math.isfinite(v)) * 1.08
    fig.update_layout(template=TEMPLATE, title=f"{title}: {duration(time_s)}, interval {range_text}{energy}",
                      xaxis={"title": "time per call", "range": [0, top], **linear_ticks([top], "s")},
                      showlegend=False, margin={"l": 110, "r": 20, "t": 50, "b": 40})
    return fig
