"""Plausibility of imported values: impossible ones make a row an error, doubtful ones are dropped.

Every importer's rows pass through ``check_values`` (``assemble_table`` calls it), so a
file from elsewhere cannot store, as ``ok``, a time that is zero, negative, infinite or
longer than a day, a sample of 1e300 ms, or a negative energy or power:

- **impossible** values (``IMPOSSIBLE``): the row's status becomes ``error``, the value
  is set to null (so no reader can use it), and the reason names the column and value;
- **doubtful** physical readings (``DOUBTFUL``: a temperature below absolute zero, a
  power of 1e308 W): the value is set to null and the reason records what was dropped;
  the row keeps its status, since its time may be good.

Bounds are wide on purpose: they catch garbage, not unusual hardware.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

MAX_TIME_MS = 24 * 3600 * 1e3  # one call longer than a day is not a kernel timing
MAX_ENERGY_J = 1e9  # per call: ~280 kWh

# column -> (test the value passes, what it must be)
IMPOSSIBLE: dict[str, tuple[Callable[[float], bool], str]] = {
    **{name: (lambda v: 0 < v <= MAX_TIME_MS, f"a time must be > 0 and at most {MAX_TIME_MS:g} ms")
       for name in ("time_median_ms", "time_mean_ms", "time_p10_ms", "time_p90_ms", "time_ci_low_ms",
                    "time_ci_high_ms")},
    "time_iqr_ms": (lambda v: 0 <= v <= MAX_TIME_MS, f"a spread must be >= 0 and at most {MAX_TIME_MS:g} ms"),
    "energy_gross_j": (lambda v: v >= 0, "an energy must be >= 0 J"),
    "power_avg_w": (lambda v: v >= 0, "a power must be >= 0 W"),
    "power_idle_w": (lambda v: v >= 0, "a power must be >= 0 W"),
    "achieved_flops_per_s": (lambda v: v >= 0, "a rate must be >= 0"),
    "achieved_bytes_per_s": (lambda v: v >= 0, "a rate must be >= 0"),
}
# column -> (low, high, unit): a finite reading outside is doubtful
DOUBTFUL: dict[str, tuple[float, float, str]] = {
    "temperature_c_before": (-60.0, 200.0, "C"), "temperature_c_after": (-60.0, 200.0, "C"),
    "power_avg_w": (0.0, 1e5, "W"), "power_idle_w": (0.0, 1e5, "W"), "power_limit_w": (0.0, 1e5, "W"),
    "energy_gross_j": (0.0, MAX_ENERGY_J, "J"), "energy_net_j": (-MAX_ENERGY_J, MAX_ENERGY_J, "J"),
    "clock_mhz_before": (0.0, 1e5, "MHz"), "clock_mhz_after": (0.0, 1e5, "MHz"),
    "mem_clock_mhz_before": (0.0, 1e5, "MHz"), "mem_clock_mhz_after": (0.0, 1e5, "MHz"),
    "declared_peak_flops_per_s": (1.0, 1e19, "FLOP/s"), "declared_bandwidth_bytes_per_s": (1.0, 1e16, "B/s"),
}
SAMPLES_COLUMN = "samples_ms"
CHECKED = frozenset(IMPOSSIBLE) | frozenset(DOUBTFUL) | {SAMPLES_COLUMN}
"""The columns with rules; the float columns where an importer should keep a non-finite
value for ``check_values`` to report (elsewhere, non-finite simply means missing)."""


def check_values(row: dict[str, Any]) -> dict[str, Any]:
    """Apply the plausibility rules to one row dict, in place (and return it).

    Idempotent: a checked row passes unchanged. Only the ``CHECKED`` columns are looked at.
    """
    impossible: list[str] = []
    doubtful: list[str] = []
    for name in CHECKED.intersection(row):
        value = row[name]
        if name == SAMPLES_COLUMN:
            bad = _bad_samples(value)
            if bad is not None:
                impossible.append(f"{name} holds {bad} (each sample must be > 0 and at most {MAX_TIME_MS:g} ms)")
                row[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        value = float(value)
        if name in IMPOSSIBLE:
            test, rule = IMPOSSIBLE[name]
            if not math.isfinite(value):
                impossible.append(f"{name} is {value}, not a finite number")
                row[name] = None
                continue
            if not test(value):
                impossible.append(f"{name} = {value:g} ({rule})")
                row[name] = None
                continue
        if name in DOUBTFUL:
            low, high, unit = DOUBTFUL[name]
            if not (math.isfinite(value) and low <= value <= high):
                doubtful.append(f"{name} = {value:g} {unit} (outside {low:g}..{high:g} {unit})")
                row[name] = None
    if impossible:
        row["status"] = "error"
        _add_reason(row, "impossible values: " + "; ".join(impossible))
        if row.get("time_median_ms") is None:
            row.pop("achieved_flops_per_s", None)
            row.pop("achieved_bytes_per_s", None)
    if doubtful:
        _add_reason(row, "doubtful readings set to null: " + "; ".join(doubtful))
    return row


def _bad_samples(value: Any) -> str | None:
    if value is None:
        return None
    for sample in value:
        try:
            x = float(sample)
        except (TypeError, ValueError):
            return repr(sample)
        if not (math.isfinite(x) and 0 < x <= MAX_TIME_MS):
            return f"{x:g}"
    return None


def _add_reason(row: dict[str, Any], text: str) -> None:
    previous = row.get("reason")
    if previous and text in previous:
        return
    row["reason"] = f"{previous}; {text}" if previous else text
