"""What every importer shares: provenance defaults, run ids, config ids, table assembly.

Imported rows live in the same schema and partitions as measured ones, and say where
they came from: ``source`` is ``import:<format>:<file name>``. Conventions:

- Required provenance an import cannot know (host, os, cpu_model, python_version) is
  ``"unknown"``; ``threads`` is 0 (unknown). ``perfscope_version`` is the version of
  perfscope that imported the rows (what transformed them), not of what measured them.
- ``run_id`` is ``import-<format>-<hash>``, from the content of the files read and the
  import options, so importing the same file twice gives the same run and config ids
  and the store keeps one copy (see ``write_imported``).
- ``config_id`` is unique within a run: rows whose configuration columns coincide get a
  replicate index in ``params_json`` (in file order, so it is stable).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from perfscope.devices.base import slugify
from perfscope.errors import InvalidInputError
from perfscope.features import gemm_flops, gemm_min_bytes
from perfscope.importers.values import check_values
from perfscope.provenance import package_version
from perfscope.schema import COLUMN_NAMES, CONFIG_COLUMNS, SCHEMA_VERSION, arrow_schema, config_id
from perfscope.store import ProfileStore

UNKNOWN = "unknown"
REPLICATE_KEY = "replicate"


def import_provenance() -> dict[str, Any]:
    """Provenance columns of an imported row that the source cannot tell (see module doc)."""
    return {"host": UNKNOWN, "os": UNKNOWN, "cpu_model": UNKNOWN, "threads": 0,
            "python_version": UNKNOWN, "perfscope_version": package_version("perfscope") or UNKNOWN}


def source_label(fmt: str, path: Path) -> str:
    """The ``source`` column of rows imported from ``path``: ``import:<format>:<file name>``."""
    return f"import:{fmt}:{path.name}"


@lru_cache(maxsize=256)
def device_key_for(kind: str, name: str) -> str:
    """The partition key of a device, the same slug measured rows use (``cuda-<name>``)."""
    return slugify(f"{kind}-{name}")


def import_run_id(fmt: str, files: Sequence[Path], options: dict[str, Any] | None = None) -> str:
    """A run id from the bytes of ``files`` (in the order given) and the import options."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\x00")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\x00")
    digest.update(json.dumps(options or {}, sort_keys=True, default=str).encode())
    return f"import-{fmt}-{digest.hexdigest()[:16]}"


def file_time(path: Path) -> datetime:
    """The file's modification time (UTC): ``measured_at`` when the source records none."""
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path; ``InvalidInputError`` when it is not a readable file."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no {what} at {p}: give the path of an existing file")
    return p


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (dicts of raw strings) of a CSV file; ``InvalidInputError`` if unreadable."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"cannot read {path} as CSV: {exc}") from None
    if not header:
        raise InvalidInputError(f"{path} is empty: expected a CSV file with a header row")
    return header, rows


def require_columns(header: Iterable[str], needed: Iterable[str], path: Path, what: str) -> None:
    """``InvalidInputError`` naming the columns of ``needed`` that ``header`` lacks."""
    missing = [c for c in needed if c not in set(header)]
    if missing:
        raise InvalidInputError(f"{path.name} is not a {what}: missing column(s) {', '.join(missing)}")


def to_float(text: Any) -> float | None:
    """A finite float from a cell, or None (empty, NaN, infinite or not a number)."""
    if text is None:
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def to_int(text: Any) -> int | None:
    """An integer from a cell (``"512"``, ``"512.0"``), or None when it is not one."""
    value = to_float(text)
    if value is None or value != int(value):
        return None
    return int(value)


def timestamp_from_seconds(seconds: float, where: str) -> datetime:
    """A UTC time from Unix seconds; ``InvalidInputError`` naming ``where`` when out of range (1e20)."""
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise InvalidInputError(f"{where}: timestamp {seconds!r} is not a time (Unix seconds out of range)") from None


def parse_json_text(text: str | bytes, where: str) -> Any:
    """JSON from a file or a cell; ``InvalidInputError`` (one line) when malformed or nested too deeply."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:
        raise InvalidInputError(f"{where}: not valid JSON ({str(exc)[:200]})") from None


def params_json(params: dict[str, Any]) -> str | None:
    """Canonical JSON of configuration parameters (sorted keys), None when empty."""
    return json.dumps(params, sort_keys=True, separators=(",", ":")) if params else None


def timing_columns(samples_ms: Sequence[float], method: str, *, mean_ms: float | None = None,
                   calls_per_sample: int | None = None, warmup_s: float | None = None) -> dict[str, Any]:
    """Timing columns from the imported per-call times (ms). One value is one sample."""
    values = sorted(float(s) for s in samples_ms)
    n = len(values)
    out: dict[str, Any] = {"timing_method": method, "samples_n": n, "samples_ms": list(samples_ms),
                           "calls_per_sample": calls_per_sample, "warmup_s": warmup_s}
    if n == 1:  # the common case (16k rows)
        out.update(time_median_ms=values[0], time_mean_ms=values[0] if mean_ms is None else mean_ms)
        return out
    # plain Python: numpy's per-call overhead costs ~2 ms a row (20 s for a Kernel Tuner cache)
    quartile_1, quartile_3 = _quantile(values, 0.25), _quantile(values, 0.75)
    out.update(time_median_ms=_quantile(values, 0.5), time_mean_ms=sum(values) / n if mean_ms is None else mean_ms,
               time_p10_ms=_quantile(values, 0.10), time_p90_ms=_quantile(values, 0.90),
               time_iqr_ms=quartile_3 - quartile_1)
    return out


def _quantile(ordered: Sequence[float], q: float) -> float:
    """numpy's default (linear) quantile of sorted values."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def gemm_work(batch: int, m: int, n: int, k: int, dtype: str, beta_nonzero: bool = False) -> dict[str, int]:
    """``flops`` and ``min_bytes`` of a GEMM (perfscope.features; beta != 0 reads C too)."""
    return {"flops": int(gemm_flops(batch, m, n, k)),
            "min_bytes": int(gemm_min_bytes(batch, m, n, k, dtype, beta_nonzero=beta_nonzero))}


def energy_from_power(power_w: float, time_ms: float | None) -> dict[str, Any]:
    """Energy per call from an average power and the call's time (gross: no idle subtracted)."""
    out: dict[str, Any] = {"power_avg_w": power_w}
    if time_ms is not None:
        out["energy_gross_j"] = power_w * time_ms / 1e3
    return out


def assign_config_ids(rows: list[dict[str, Any]], shared: dict[str, Any]) -> None:
    """Set ``config_id`` on every row, unique within the list, from its configuration
    columns (its own, else those in ``shared``, as ``assemble_table`` will store them).

    Rows whose configuration columns coincide get ``{"replicate": i}`` (i = 1, 2, ... in
    list order; the first keeps none) merged into ``params_json``.
    """
    seen: set[str] = set()
    replicates: dict[str, int] = {}  # base config id -> replicate index last given
    for row in rows:
        config = {c: row[c] if c in row else shared.get(c) for c in CONFIG_COLUMNS}
        config = {c: v for c, v in config.items() if v is not None}
        cid = base = config_id(config)
        if cid in seen:
            params = json.loads(row["params_json"]) if row.get("params_json") else {}
            while cid in seen:  # loops again only if the source used our key itself
                replicates[base] = replicates.get(base, 0) + 1
                params[REPLICATE_KEY] = replicates[base]
                config["params_json"] = params_json(params)
                cid = config_id(config)
            row["params_json"] = config["params_json"]
        seen.add(cid)
        row["config_id"] = cid


def finish_row(row: dict[str, Any]) -> dict[str, Any]:
    """Fill the columns derived from others: achieved rates from work and time."""
    t = row.get("time_median_ms")
    if t and t > 0:
        if row.get("flops") is not None and row.get("achieved_flops_per_s") is None:
            row["achieved_flops_per_s"] = row["flops"] / (t / 1e3)
        if row.get("min_bytes") is not None and row.get("achieved_bytes_per_s") is None:
            row["achieved_bytes_per_s"] = row["min_bytes"] / (t / 1e3)
    return row


def assemble_table(rows: list[dict[str, Any]], shared: dict[str, Any]) -> pa.Table:
    """An Arrow table (``arrow_schema()``) of row dicts; ``shared`` holds columns common to
    all rows (a row's own value wins). Missing nullable columns are null; a missing
    required column raises ``ValueError`` naming it."""
    for row in rows:  # impossible values make a row an error, doubtful ones become null
        check_values(row)
    schema = arrow_schema()
    base = {"schema_version": SCHEMA_VERSION, "energy_method": "none", "energy_is_estimate": False}
    base.update(import_provenance())
    base.update(shared)
    n = len(rows)
    present = set().union(*rows)
    unknown = present - set(COLUMN_NAMES)
    if unknown:
        raise ValueError(f"not perfscope columns: {sorted(unknown)}")
    arrays = []
    for f in schema:
        name = f.name
        if name in present:
            default = base.get(name)
            values = [r.get(name, default) for r in rows]
        elif name in base:
            values = [base[name]] * n
        else:
            arrays.append(pa.nulls(n, f.type))
            continue
        try:
            array = pa.array(values, type=f.type)
        except (OverflowError, pa.ArrowInvalid) as exc:  # e.g. the FLOPs of 2^40-sized GEMMs
            raise InvalidInputError(f"column {name}: a value does not fit {f.type} ({str(exc)[:120]}); "
                                 "check the sizes in the source") from None
        if not f.nullable and array.null_count:
            raise ValueError(f"column {name!r} must not be null")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def write_imported(table: pa.Table, dataset_path: str | os.PathLike[str]) -> list[Path]:
    """Write imported rows into a profile dataset (created if needed); returns its files
    holding them. Each run is compacted at once, which drops rows already there from an
    earlier import of the same file: importing twice stores one copy."""
    import pyarrow.compute as pc  # kept off the light estimate path

    store = ProfileStore(dataset_path, create=True)
    store.append_table(table, compression="none")  # compaction compresses
    run_ids = pc.unique(table.column("run_id")).to_pylist()
    for run_id in run_ids:
        store.compact(run_id)
    names = {f"run-{r}.parquet" for r in run_ids}
    return [p for p in store.files() if p.name in names]


def with_param_columns(table: pa.Table, params: Sequence[dict[str, Any]]) -> pa.Table:
    """``table`` plus one typed ``param_<name>`` column per parameter in ``params`` (one dict
    per row): int64 when every value is an integer, float64 for numbers, bool for flags,
    else string (JSON for lists). Names are reduced to letters, digits and ``_``."""
    names: dict[str, str] = {}
    for row in params:
        for name in row:
            if name not in names:
                column = "param_" + (re.sub(r"[^A-Za-z0-9_]", "_", name) or "_")
                while column in names.values():  # two names that reduce alike stay apart
                    column += "_"
                names[name] = column
    for name, column in names.items():
        values = [row.get(name) for row in params]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            kind = pa.bool_()
        elif present and all(isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63 for v in present):
            kind = pa.int64()
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            kind, values = pa.float64(), [None if v is None else float(v) for v in values]
        else:
            kind = pa.string()
            values = [None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values]
        table = table.append_column(column, pa.array(values, type=kind))
    return table
