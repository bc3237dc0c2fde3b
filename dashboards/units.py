"""One place for units on the dashboard: numbers as text, and log axes with unit ticks.

FLOP/s reads GFLOP/s or TFLOP/s, time us/ms/s, bytes kB/MB/GB (decimal), energy mJ/J,
power W. Plotly's own tick labels ("100B" for 10^11, "100u" beside "0.01") are replaced
by explicit ticks at each decade (``log_axis``), so no axis shows a bare "B" or a
mixture of notations. Pure functions: no Dash.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"),
             (1e-9, "n"), (1e-12, "p"))
# unit -> the smallest and largest prefix scale it is written with (bytes never in mB)
_SCALE_LIMITS = {"B": (1.0, 1e15), "FLOP": (1.0, 1e18), "FLOP/s": (1.0, 1e18), "s": (1e-12, 1.0),
                 "J": (1e-12, 1e15), "W": (1e-3, 1e12), "gCO2e": (1e-12, 1e15)}


def quantity(value: Any, unit: str, digits: int = 3) -> str:
    """``value`` in engineering notation with ``unit``.

    1.5e12 "FLOP/s" -> "1.5 TFLOP/s", 5.9e-4 "s" -> "590 µs"; "n/a" for a missing or
    non-finite value.
    """
    number = finite_number(value)
    if number is None:
        return "n/a"
    if number == 0:
        return f"0 {unit}".strip()
    low, high = _SCALE_LIMITS.get(unit, (1e-12, 1e15))
    for scale, prefix in _PREFIXES:
        if scale > high:
            continue
        if abs(number) >= scale or scale <= low:
            return f"{_digits(number / scale, digits)} {prefix}{unit}".strip()
    return f"{_digits(number, digits)} {unit}".strip()


def duration(seconds_value: Any) -> str:
    """A time in s, ms, µs or ns."""
    return quantity(seconds_value, "s")


def flops_rate(value: Any) -> str:
    """FLOP/s as GFLOP/s, TFLOP/s, ..."""
    return quantity(value, "FLOP/s")


def byte_size(value: Any) -> str:
    """Bytes as kB, MB, GB (powers of 1000)."""
    return quantity(value, "B")


def percent(value: Any, digits: int = 3) -> str:
    """A fraction as a percentage (0.427 -> "42.7%")."""
    number = finite_number(value)
    return "n/a" if number is None else f"{_digits(number * 100, digits)}%"


def interval(low: Any, high: Any, unit: str) -> str:
    """A range: 1e-3 .. 2e-3 "s" -> "1 ms – 2 ms"."""
    if finite_number(low) is None or finite_number(high) is None:
        return "n/a"
    return f"{quantity(low, unit)} – {quantity(high, unit)}"


# column name ending -> how to write it (tables: one rule for every page)
_COLUMN_RULES: tuple[tuple[str, Any], ...] = (
    ("_flops_per_s", flops_rate), ("flops_per_s", flops_rate), ("_per_call_s", duration), ("_s", duration),
    ("_ms", lambda v: duration(None if finite_number(v) is None else float(v) / 1e3)),
    ("_bytes", byte_size), ("min_bytes", byte_size), ("_j", lambda v: quantity(v, "J")),
    ("_w", lambda v: quantity(v, "W")), ("_gco2e", lambda v: quantity(v, "gCO2e")),
    ("flops", lambda v: quantity(v, "FLOP")),
    ("_fraction", percent), ("efficiency", percent), ("attainment", percent),
)


# column name ending -> unit for the browser's d3 SI format (tables keep numbers, so they sort as numbers)
_COLUMN_UNITS = (("_flops_per_s", "FLOP/s"), ("_s", "s"), ("_bytes", "B"), ("min_bytes", "B"), ("_j", "J"),
                 ("_w", "W"), ("_gco2e", "gCO2e"), ("flops", "FLOP"))
_PERCENT_SUFFIXES = ("_fraction", "efficiency", "attainment")


def grid_value_formatter(name: str) -> dict[str, str]:
    """A dash-ag-grid ``valueFormatter`` writing a numeric column with its unit (d3's SI
    prefixes: 590µs, 1.5TFLOP/s) or as a percentage; plain numbers to 4 significant digits."""
    if name.endswith(_PERCENT_SUFFIXES):
        body = "d3.format('.3~%')(params.value)"
    else:
        unit = next((u for suffix, u in _COLUMN_UNITS if name.endswith(suffix)), None)
        body = f"d3.format('.3~s')(params.value) + '{unit}'" if unit else "d3.format('.4~g')(params.value)"
    return {"function": f"params.value == null || isNaN(params.value) ? '' : {body}"}


def column_formatter(name: str) -> Any | None:
    """The formatter for a column by its name's unit suffix, or None (written as it is)."""
    for suffix, rule in _COLUMN_RULES:
        if name.endswith(suffix):
            return rule
    return None


def format_cell(name: str, value: Any) -> str:
    """One table cell: units by column name, numbers to 4 significant digits otherwise."""
    rule = column_formatter(name)
    if rule is not None and finite_number(value) is not None:
        return str(rule(value))
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(value) else _digits(float(value), 4)
    return "" if value is None else str(value)


def log_axis(values: Iterable[Any], unit: str, *, title: str | None = None) -> dict[str, Any]:
    """A plotly log axis whose ticks sit at the decades spanned by ``values`` and read
    with ``unit`` ("1 TFLOP/s", "100 µs"): no exponent letters, no mixed notation."""
    array = np.asarray([v for v in values if finite_number(v) is not None and float(v) > 0], dtype=float)
    axis: dict[str, Any] = {"type": "log"}
    if title is not None:
        axis["title"] = title
    if not array.size:
        return axis
    low, high = math.floor(math.log10(array.min())), math.ceil(math.log10(array.max()))
    decades = list(range(low, max(high, low + 1) + 1))
    step = max(1, math.ceil(len(decades) / 10))
    ticks = [10.0 ** d for d in decades[::step]]
    axis.update(tickvals=ticks, ticktext=[quantity(t, unit) for t in ticks])
    return axis


def linear_ticks(values: Sequence[Any], unit: str, count: int = 6) -> dict[str, Any]:
    """Tick values and unit labels for a linear axis from 0 to the largest of ``values``."""
    finite = [float(v) for v in values if finite_number(v) is not None]
    top = max(finite) if finite else 0.0
    if top <= 0:
        return {}
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [i * step for i in range(int(top / step) + 2)]
    return {"tickvals": ticks, "ticktext": [quantity(t, unit) for t in ticks]}


def _digits(number: float, digits: int) -> str:
    return f"{number:.{digits}g}"


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None for None, booleans, text and inf/nan."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
