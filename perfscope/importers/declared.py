"""What an import may declare that the source file does not say: how fp32 was multiplied
(``--fp32-math``) and the device's roofline figures (``--peak-flops``, ``--bandwidth``).

The figures become columns of every imported row (``perfscope.devices.declared`` reads
them back), used only for a device with no calibrated profile and no spec row.
"""

from __future__ import annotations

import math
import re
from typing import Any

from perfscope.devices.declared import BANDWIDTH_COLUMN, PEAK_COLUMN
from perfscope.dtypes import check_fp32_math, stores_fp32
from perfscope.errors import InvalidInputError

SI_PREFIXES = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_RATE = re.compile(r"\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([kKMGTP]?)\s*")


def parse_rate(value: str | float | None, option: str) -> float | None:
    """A positive finite rate from ``19.5e12``, ``19.5T`` or ``900 G`` (SI prefixes k, M, G,
    T, P); None stays None. ``InvalidInputError`` naming ``option`` otherwise."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        match = _RATE.fullmatch(str(value))
        if match is None:
            raise InvalidInputError(f"{option} {value!r} is not a number: write e.g. 19.5e12 or 19.5T")
        try:
            number = float(match.group(1)) * SI_PREFIXES[match.group(2)]
        except ValueError:
            raise InvalidInputError(f"{option} {value!r} is not a number: write e.g. 19.5e12 or 19.5T") from None
    if not (math.isfinite(number) and number > 0):
        raise InvalidInputError(f"{option} must be a positive finite number, got {value!r}")
    return number


def declared_columns(dtype: str, *, fp32_math: str | None = None, peak_flops: str | float | None = None,
                     bandwidth: str | float | None = None) -> dict[str, Any]:
    """The columns an import declares for rows of ``dtype``: ``fp32_math`` (``tf32`` for the
    tf32 dtype, the declared mode for fp32, absent when unknown) and the declared peak
    (FLOP/s) and bandwidth (bytes/s)."""
    out: dict[str, Any] = {}
    if fp32_math is not None:
        check_fp32_math(fp32_math)
        if not stores_fp32(dtype):
            raise InvalidInputError(f"--fp32-math applies to fp32 rows; these are {dtype}")
        if dtype == "tf32" and fp32_math != "tf32":
            raise InvalidInputError("--fp32-math ieee contradicts --dtype tf32 (tf32 is fp32 on tf32 math)")
        out["fp32_math"] = fp32_math
    elif dtype == "tf32":
        out["fp32_math"] = "tf32"
    peak = parse_rate(peak_flops, "--peak-flops")
    if peak is not None:
        out[PEAK_COLUMN] = peak
    rate = parse_rate(bandwidth, "--bandwidth")
    if rate is not None:
        out[BANDWIDTH_COLUMN] = rate
    return out
