"""Strict JSON for ``--json`` outputs: ``null`` where a number is missing, never ``NaN``.

Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON: ``jq`` and most
parsers refuse them. ``dumps`` turns non-finite floats into ``None`` and numpy scalars
and arrays into plain values, then writes with ``allow_nan=False`` so nothing slips through.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any


def plain(value: Any) -> Any:
    """``value`` with non-finite floats as None, numpy values as Python ones, tuples and sets
    as lists, paths and datetimes as strings (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (Path, datetime, date)):
        return str(value) if isinstance(value, Path) else value.isoformat()
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return plain(tolist())
    return str(value)


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of ``plain(value)``, strict (``allow_nan=False``)."""
    return json.dumps(plain(value), allow_nan=False, **options)
