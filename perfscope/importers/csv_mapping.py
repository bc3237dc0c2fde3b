"""Import any CSV of measurements through a column mapping.

The mapping names, for each perfscope column, the CSV column holding it
(``{"m": "M", "time_median_ms": "runtime_ms"}``); ``params.<name>`` puts a CSV column
into ``params_json`` under ``<name>`` (configuration the schema has no column for).
Constant columns come from ``defaults``. On the command line: ``--map m=M --map
n=N`` and ``--default kernel=gemm``, both parsed by ``parse_mapping``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from perfscope.dtypes import check_dtype, check_fp32_math, row_fp32_math
from perfscope.errors import InvalidInputError
from perfscope.importers.common import (
    UNKNOWN,
    assemble_table,
    assign_config_ids,
    device_key_for,
    energy_from_power,
    file_time,
    finish_row,
    gemm_work,
    import_run_id,
    params_json,
    read_csv,
    require_file,
    source_label,
)
from perfscope.importers.values import CHECKED, check_values
from perfscope.schema import arrow_schema

FORMAT = "csv"
PARAMS_PREFIX = "params."
SET_BY_IMPORTER = ("schema_version", "run_id", "config_id", "device_key", "source")
REQUIRED = ("kernel", "implementation", "dtype", "device_name")
_NULL_TEXT = {"", "nan", "na", "n/a", "null", "none"}
_TRUE, _FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f"}


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``["m=M", "time_median_ms=Execution Time"]`` -> ``{"m": "M", ...}`` (split at the
    first ``=``; whitespace around either side is dropped). ``InvalidInputError`` on a
    malformed or repeated item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise InvalidInputError(f"bad mapping {item!r}: write perfscope_column=csv_column, e.g. m=M")
        if key in out:
            raise InvalidInputError(f"column {key!r} is mapped twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


def import_csv(path: str | os.PathLike[str], mapping: dict[str, str], *,
               defaults: dict[str, Any] | None = None) -> pa.Table:
    """Rows (``perfscope.schema.arrow_schema()``) from a CSV file through ``mapping``.

    ``mapping`` maps perfscope columns (or ``params.<name>``) to CSV column names;
    ``defaults`` gives perfscope columns a value for every row (a mapped non-empty cell
    wins). Values are converted to each column's type (numbers, true/false, ISO 8601
    or Unix-seconds times, JSON or ``;``-separated lists for ``samples_ms``); empty
    cells and NaN are null. ``kernel``, ``implementation``, ``dtype`` and
    ``device_name`` must come from the mapping or the defaults.

    Filled in when not given: ``device_kind`` cuda (``device_key`` from kind and name,
    like measured rows); ``cache_mode``, host, os, cpu_model and python_version
    ``"unknown"`` (``threads`` 0); ``status`` ok when the row has ``time_median_ms``,
    else error; one sample ``samples_ms = [time_median_ms]``; ``timing_method``
    ``import:csv``; GEMM ``flops`` and ``min_bytes`` from batch (default 1), m, n, k,
    dtype; achieved rates; ``energy_gross_j`` from ``power_avg_w`` x time, with
    ``energy_method`` ``import:csv`` where energy or power is given; ``measured_at``
    the file's modification time. Unknown perfscope columns, columns the importer sets
    itself and CSV columns the file lacks raise ``InvalidInputError`` naming them.
    """
    file = require_file(path, "CSV file")
    defaults = dict(defaults or {})
    types = {f.name: f.type for f in arrow_schema()}
    _check_columns(mapping, defaults, types)
    header, records = read_csv(file)
    missing = sorted({c for c in mapping.values() if c not in header})
    if missing:
        raise InvalidInputError(f"{file.name} has no column(s) {', '.join(map(repr, missing))} "
                             f"(it has {', '.join(map(repr, header))})")
    absent = [c for c in REQUIRED if c not in mapping and defaults.get(c) in (None, "")]
    if absent:
        raise InvalidInputError(f"give {', '.join(absent)}: map a CSV column to each ({absent[0]}=COLUMN) or "
                                f"set a value for all rows ({absent[0]}=VALUE as a default)", parameter="map")
    constant = {name: _convert(value, types[name], name, "default") for name, value in defaults.items()
                if not name.startswith(PARAMS_PREFIX)}
    constant_params = {name[len(PARAMS_PREFIX):]: value for name, value in defaults.items()
                       if name.startswith(PARAMS_PREFIX)}
    run_id = import_run_id(FORMAT, [file], {"mapping": mapping, "defaults": defaults})
    fallback_time = file_time(file)
    rows = []
    for line, rec in enumerate(records, start=2):
        row = dict(constant)
        params = dict(constant_params)
        for name, column in mapping.items():
            raw = rec.get(column)
            if name.startswith(PARAMS_PREFIX):
                if raw not in (None, ""):
                    params[name[len(PARAMS_PREFIX):]] = _param_value(raw)
                continue
            value = _convert(raw, types[name], name, f"{file.name} line {line}, column {column!r}")
            if value is not None:
                row[name] = value
        rows.append(_complete(row, params, fallback_time, f"{file.name} line {line}"))
    shared = {"run_id": run_id, "source": source_label(FORMAT, file)}
    assign_config_ids(rows, shared)
    return assemble_table(rows, shared)


def _check_columns(mapping: dict[str, str], defaults: dict[str, Any], types: dict[str, pa.DataType]) -> None:
    names = list(mapping) + list(defaults)
    unknown = sorted({n for n in names if n not in types and not (n.startswith(PARAMS_PREFIX) and
                                                                   len(n) > len(PARAMS_PREFIX))})
    if unknown:
        raise InvalidInputError(f"not perfscope columns: {', '.join(unknown)} (see perfscope.schema.Measurement; "
                             f"use {PARAMS_PREFIX}NAME for configuration the schema has no column for)")
    fixed = sorted({n for n in names if n in SET_BY_IMPORTER})
    if fixed:
        raise InvalidInputError(f"the importer sets {', '.join(fixed)} itself: do not map or default them")


def _complete(row: dict[str, Any], params: dict[str, Any], fallback_time: datetime, where: str) -> dict[str, Any]:
    """Fill what the mapping left out (see ``import_csv``)."""
    empty = [name for name in REQUIRED if row.get(name) in (None, "")]
    if empty:
        raise InvalidInputError(f"{where}: no value for {', '.join(empty)} (empty cell and no default)")
    if params or row.get("params_json"):
        merged = _json_object(row.get("params_json"), where)
        merged.update(params)
        row["params_json"] = params_json(merged)
    row.setdefault("device_kind", "cuda")
    row["device_key"] = device_key_for(row["device_kind"], row["device_name"])
    row.setdefault("cache_mode", UNKNOWN)
    row.setdefault("measured_at", fallback_time)
    try:
        check_dtype(row["dtype"])
        if row.get("fp32_math") is not None:  # ieee or tf32; it says nothing of other dtypes
            check_fp32_math(row["fp32_math"])
            row["fp32_math"] = row_fp32_math(row["dtype"], row["fp32_math"])
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
    if "status" not in row:
        given = row.get("time_median_ms") is not None
        row["status"] = "ok" if given else "error"
        if not given:
            row.setdefault("reason", "no time in this CSV row")
    check_values(row)  # before anything is derived from an impossible or doubtful value
    time_ms = row.get("time_median_ms")
    if time_ms is not None:
        row.setdefault("samples_ms", [time_ms])  # (None when check_values dropped impossible samples)
        if row["samples_ms"] is not None:
            row.setdefault("samples_n", len(row["samples_ms"]))
        row.setdefault("timing_method", "import:csv")
    if row["kernel"] == "gemm" and all(row.get(d) is not None for d in ("m", "n", "k")):
        row.setdefault("batch", 1)
        try:
            work = gemm_work(row["batch"], row["m"], row["n"], row["k"], row["dtype"])
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}") from None
        if any(value >= 2**63 for value in work.values()):
            raise InvalidInputError(f"{where}: the FLOPs or bytes of batch {row['batch']} x m {row['m']} "
                                    f"x n {row['n']} x k {row['k']} do not fit int64: check the sizes")
        for name, value in work.items():
            row.setdefault(name, value)
    if row.get("power_avg_w") is not None and "energy_gross_j" not in row:  # (None: dropped by check_values)
        row.update({k: v for k, v in energy_from_power(row["power_avg_w"], time_ms).items()
                    if k == "energy_gross_j"})
    if row.get("energy_gross_j") is not None or row.get("power_avg_w") is not None:
        row.setdefault("energy_method", "import:csv")
    return finish_row(row)


def _json_object(text: Any, where: str) -> dict[str, Any]:
    if text in (None, ""):
        return {}
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"{where}: params_json is nested too deeply") from None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: params_json must be a JSON object, got {text!r}")
    return value


def _param_value(raw: str) -> Any:
    """A params value: integer or float where the cell is one, else the text."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


def _convert(value: Any, arrow_type: pa.DataType, column: str, where: str) -> Any:
    """``value`` (CSV text or a Python value) as the column's type; None for empty/NaN."""
    if value is None:
        return None
    keep_non_finite = column in CHECKED and pa.types.is_floating(arrow_type)  # check_values reports it
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NULL_TEXT and not (keep_non_finite and text.lower() == "nan"):
            return None
    else:
        text = None
    try:
        if pa.types.is_boolean(arrow_type):
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError
        if pa.types.is_integer(arrow_type):
            number = float(text if text is not None else value)
            if isinstance(value, bool) or not math.isfinite(number) or number != int(number):
                raise ValueError
            return int(number)
        if pa.types.is_floating(arrow_type):
            number = float(text if text is not None else value)
            return number if math.isfinite(number) or keep_non_finite else None
        if pa.types.is_timestamp(arrow_type):
            return _timestamp(value if text is None else text)
        if pa.types.is_list(arrow_type):
            return _float_list(value if text is None else text)
        return text if text is not None else str(value)
    except RecursionError:
        raise InvalidInputError(f"{where}: nested too deeply for {column}") from None
    except (TypeError, ValueError, OverflowError, OSError):
        kind = {"bool": "true/false", "int64": "integer", "double": "number"}.get(str(arrow_type), str(arrow_type))
        raise InvalidInputError(f"{where}: {value!r} is not a valid {kind} for {column}") from None


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    else:
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except ValueError:
            when = datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _float_list(value: Any) -> list[float]:
    if isinstance(value, str):
        text = value.strip()
        items = json.loads(text) if text.startswith("[") else [p for p in text.replace(";", " ").split() if p]
    else:
        items = list(value)
    if not isinstance(items, list):
        raise ValueError
    return [float(x) for x in items]  # non-finite or absurd samples make the row an error (check_values)
