"""One data file of a profile dataset: safe names, checked writes, tolerant reads.

What a data file holds (schema version 2):

* every column of ``arrow_schema()`` except the partition columns ``device_key`` and
  ``kernel``, whose values live only in the path (``device=<key>/kernel=<family>/``),
  so a file and its directory can never disagree; readers put them back;
* optional *parameter columns* named ``param_<name>`` (see ``PARAM_PREFIX``), each of
  type int64, float64, bool or string: any tunable parameter of a configuration, one
  typed column per parameter (an imported Kernel Tuner cache has one per tune
  parameter). They are not part of the fixed schema: files differ in which they have;
* key-value metadata ``perfscope.schema_version`` (an integer);
* Parquet page checksums (CRC-32 of every page), verified on every read, so bytes
  changed on disk make the file unreadable instead of silently wrong.

Reading is tolerant of schema evolution: columns an older file lacks read as null
(or as the field's default when it is required and has one), columns it has that the
schema no longer knows are dropped, and schema version 1 files (which still held the
partition columns) are read after checking those columns agree with the path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perfscope.errors import SchemaVersionError, StoreError
from perfscope.schema import SCHEMA_METADATA_KEY, SCHEMA_VERSION, Measurement, arrow_schema
from perfscope.store_marker import tmp_name

PARTITION_COLUMNS = ("device_key", "kernel")
"""Columns stored as directory names (``device=<device_key>/kernel=<kernel>``), not in files."""
PARTITION_DIRS = {"device_key": "device", "kernel": "kernel"}
PARAM_PREFIX = "param_"
"""Extra configuration parameters: columns ``param_<name>`` of one of ``PARAM_TYPES``."""
PARAM_TYPES = (pa.int64(), pa.float64(), pa.bool_(), pa.string())

_SAFE_NAME = re.compile(r"[a-z0-9._-]+")
_PARAM_NAME = re.compile(PARAM_PREFIX + r"[A-Za-z0-9_]+")
_FIELD_DEFAULTS = {f.name: f.default for f in fields(Measurement) if f.default is not MISSING}


class UnsafeNameError(StoreError):
    """A value that would become a directory or file name is not a safe name (exit 2)."""


def check_safe_name(value: object, what: str) -> str:
    """``value`` if it is a safe path component (``[a-z0-9._-]+``, not only dots), else
    ``UnsafeNameError``. Every value that becomes part of a dataset path passes here."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or not value.strip("."):
        raise UnsafeNameError(f"{what} {value!r} cannot name a file or directory: use lower-case "
                              "letters, digits, '.', '_' and '-' only")
    return value


def check_inside(root: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``root`` (symbolic links followed), else ``UnsafeNameError``."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafeNameError(f"{path} would lie outside the dataset {root}: refused")
    return path


def is_param_column(name: str) -> bool:
    """Whether ``name`` is a tunable-parameter column (``param_...``)."""
    return bool(_PARAM_NAME.fullmatch(name))


def param_fields(schema: pa.Schema) -> list[pa.Field]:
    """The parameter columns of ``schema`` (``StoreError`` for a bad name or type)."""
    fixed = set(arrow_schema().names)
    out = []
    for f in schema:
        if f.name in fixed:
            continue
        if not is_param_column(f.name):
            raise StoreError(f"column {f.name!r} is not a perfscope column (extra parameters are named "
                             f"{PARAM_PREFIX}<letters, digits, _>)")
        if f.type not in PARAM_TYPES:
            raise StoreError(f"parameter column {f.name!r} has type {f.type}; use int64, float64, bool or string")
        out.append(f)
    return out


# -- writing -----------------------------------------------------------------------------

def write_data_file(path: Path, table: pa.Table, compression: str = "zstd") -> None:
    """Write ``table`` (fixed columns + parameter columns) to ``path`` atomically, without
    its partition columns, with page checksums and the schema version tag."""
    stored = table.drop_columns([c for c in PARTITION_COLUMNS if c in table.column_names])
    stored = stored.replace_schema_metadata({SCHEMA_METADATA_KEY: str(SCHEMA_VERSION).encode()})
    tmp = tmp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(stored, tmp, compression=compression, write_page_checksum=True)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- reading -----------------------------------------------------------------------------

def partition_values(path: Path) -> dict[str, str]:
    """``{"device_key": ..., "kernel": ...}`` from a data file's two parent directories."""
    out = {}
    for column, directory in zip(("kernel", "device_key"), (path.parent, path.parent.parent), strict=True):
        prefix = PARTITION_DIRS[column] + "="
        if not directory.name.startswith(prefix):
            raise StoreError(f"not inside {prefix}<value> directories")
        out[column] = directory.name[len(prefix):]
    return out


def read_data_file(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """One data file as a table of the fixed schema (or ``columns``) plus its parameter
    columns when ``columns`` is None. ``StoreError`` says why a file cannot be used."""
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        file_schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"not a readable Parquet file ({_first_line(exc)})") from None
    version = _file_version(file_schema)
    partition = partition_values(path)
    expected = arrow_schema()
    wanted = list(expected.names) if columns is None else list(columns)
    present = set(file_schema.names)
    if columns is None:
        wanted += sorted(n for n in present if is_param_column(n))
    to_read = [c for c in wanted if c in present and c not in PARTITION_COLUMNS]
    if version == 1:  # partition columns were stored in the file as well: they must agree
        to_read += [c for c in PARTITION_COLUMNS if c in present]
    try:
        # ParquetFile, not pq.read_table: the latter imports pandas (0.5 s) on first use
        table = parquet.read(columns=to_read)
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"corrupt Parquet data ({_first_line(exc)})") from None
    if version == 1:
        _check_partition_agrees(table, partition)
    return _conform(table, wanted, partition)


def _file_version(file_schema: pa.Schema) -> int:
    raw = (file_schema.metadata or {}).get(SCHEMA_METADATA_KEY)
    if raw is None:
        raise StoreError("not written by perfscope (no schema version in its metadata)")
    try:
        version = int(raw.decode("ascii", "replace").strip())
    except ValueError:
        raise StoreError(f"schema version tag {raw[:40]!r} is not an integer") from None
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"schema version {version} is newer than this perfscope reads "
                                 f"({SCHEMA_VERSION})")
    if version < 1:
        raise StoreError(f"schema version {version} is not a perfscope schema version")
    return version


def _check_partition_agrees(table: pa.Table, partition: dict[str, str]) -> None:
    for column, value in partition.items():
        if column in table.column_names:
            stored = pc.unique(table.column(column)).to_pylist()
            if stored and stored != [value]:
                raise StoreError(f"its {column} column ({', '.join(map(str, stored[:3]))}) disagrees with "
                                 f"its directory ({PARTITION_DIRS[column]}={value})")


def _conform(table: pa.Table, wanted: list[str], partition: dict[str, str]) -> pa.Table:
    """The columns ``wanted``, in order: partition values from the path, missing columns
    null (or their default), each fixed column cast to its schema type."""
    expected = arrow_schema()
    n = table.num_rows
    arrays, out_fields = [], []
    for name in wanted:
        index = expected.get_field_index(name)
        field = expected.field(index) if index >= 0 else None
        if name in partition:
            array = pa.array([partition[name]] * n, pa.string())
        elif name in table.column_names:
            array = table.column(name)
            if field is not None and array.type != field.type:
                try:
                    array = array.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise StoreError(f"column {name!r} has type {array.type}, not {field.type}") from None
            elif field is None and array.type not in PARAM_TYPES:
                raise StoreError(f"parameter column {name!r} has type {array.type}")
        elif field is None:
            if not is_param_column(name):
                raise StoreError(f"{name!r} is not a perfscope column")
            array = pa.nulls(n)  # typed when tables are unified
        elif field.nullable:
            array = pa.nulls(n, field.type)
        elif name in _FIELD_DEFAULTS:
            array = pa.array([_FIELD_DEFAULTS[name]] * n, field.type)
        else:
            raise StoreError(f"required column {name!r} is missing")
        arrays.append(array)
        out_fields.append(field if field is not None else pa.field(name, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(out_fields, metadata=expected.metadata))


def unify_tables(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """Concatenate per-file tables whose parameter columns differ: a column a file lacks
    is null there; a parameter seen as int64 and float64 becomes float64, any other mix
    string. Column order: ``schema`` (the fixed columns), then parameters by name."""
    if not tables:
        return pa.Table.from_batches([], schema)
    params: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            if schema.get_field_index(f.name) < 0 and f.type != pa.null():
                params.setdefault(f.name, set()).add(f.type)
            elif schema.get_field_index(f.name) < 0:
                params.setdefault(f.name, set())
    types = {name: _common_type(found) for name, found in params.items()}
    target = pa.schema(list(schema) + [pa.field(n, types[n]) for n in sorted(types)], metadata=schema.metadata)
    conformed = []
    for t in tables:
        columns = []
        for f in target:
            if f.name in t.column_names:
                column = t.column(f.name)
                columns.append(column if column.type == f.type else column.cast(f.type))
            else:
                columns.append(pa.nulls(t.num_rows, f.type))
        conformed.append(pa.Table.from_arrays(columns, schema=target))
    return pa.concat_tables(conformed) if len(conformed) > 1 else conformed[0]


def _common_type(found: set[pa.DataType]) -> pa.DataType:
    if not found:
        return pa.string()
    if len(found) == 1:
        return next(iter(found))
    if found <= {pa.int64(), pa.float64()}:
        return pa.float64()
    return pa.string()


def dedupe(table: pa.Table) -> pa.Table:
    """Drop repeated (run_id, config_id) rows, keeping the first (vectorised)."""
    n = table.num_rows
    if n == 0:
        return table
    indexed = table.select(["run_id", "config_id"]).append_column("_row", pa.array(range(n), pa.int64()))
    first = indexed.group_by(["run_id", "config_id"], use_threads=False).aggregate([("_row", "min")])
    if first.num_rows == n:
        return table
    keep = first.column("_row_min")
    return table.take(pc.take(keep, pc.sort_indices(keep)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
