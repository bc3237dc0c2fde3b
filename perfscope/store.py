"""The profile store: a hive-partitioned Parquet dataset of ``Measurement`` rows.

Layout::

    DATASET/_perfscope-dataset.json        format and schema version (``perfscope-dataset.json``
                                           in datasets written before the rename: still read)
    DATASET/device=<device_key>/kernel=<family>/part-<run_id>-<pid>-<seq>.parquet
    DATASET/device=<device_key>/kernel=<family>/run-<run_id>.parquet   (compacted)
    DATASET/_locks/  DATASET/_claims/      locks of live writers (``perfscope.store_locks``)

Names starting with ``_`` or ``.`` are skipped by Parquet readers, so standard tools
read the directory as it is: ``pyarrow.dataset.dataset(DIR, format="parquet",
partitioning="hive")``, ``polars.scan_parquet(f"{DIR}/**/*.parquet",
hive_partitioning=True)`` or DuckDB's ``read_parquet('DIR/**/*.parquet',
hive_partitioning=true)``. They see the device key as the partition column ``device``
and the family as ``kernel``: those two values live only in the path, never also in the
file, so they cannot disagree (``ProfileStore.read`` returns them as ``device_key`` and
``kernel``). File format details: ``perfscope.store_files``; the marker:
``perfscope.store_marker``; run locks, compaction and crash leftovers:
``perfscope.store_runs``.

Safety:

* Every value that becomes part of a path (device key, kernel family, run id) must
  match ``[a-z0-9._-]+`` and the final path must lie inside the dataset; otherwise
  ``UnsafeNameError`` (exit 2) before anything is written.
* Each measured configuration is written to its own part file at once (temporary
  name, then rename), so a killed sweep loses at most the configuration in flight. At
  the end of a run its parts are compacted into one file. Readers and compaction drop
  repeated ``(run_id, config_id)`` rows, so a compaction cut short never duplicates rows.
* A writer holds its run's lock; opening a dataset removes the temporary files and
  compacts the parts of runs whose writer is gone (a crash's leftovers).
* A corrupt, foreign or unreadable file (page checksums are verified) is reported by
  name in ``ReadResult.problems`` and skipped; the rest of the dataset stays readable.

Parameter columns (for importers with configuration parameters of their own):
``append_table`` takes, beside the columns of ``arrow_schema()``, any number of
columns named ``param_<name>`` (letters, digits, ``_``) of type int64, float64, bool or
string. They are stored as typed Parquet columns. ``read()`` returns every parameter
column found in any file (null where a file lacks it; a parameter stored as int64 in
one file and float64 in another reads as float64, any other mix as string);
``read(columns=[...])`` may name them too. ``ReadResult.param_columns`` lists them.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from perfscope.errors import StoreError
from perfscope.schema import Measurement, arrow_schema, rows_to_table
from perfscope.store_files import (
    PARAM_PREFIX,
    UnsafeNameError,
    check_inside,
    check_safe_name,
    dedupe,
    is_param_column,
    param_fields,
    read_data_file,
    unify_tables,
    write_data_file,
)
from perfscope.store_locks import CLAIMS_DIR, LOCKS_DIR, ConfigClaims
from perfscope.store_marker import (
    FORMAT,
    LEGACY_META_FILE,
    MARKER_FILES,
    META_FILE,
    TMP_PREFIX,
    check_marker,
    find_datasets,
    find_marker,
    is_dataset,
    write_marker,
)
from perfscope.store_runs import compact_held, hold_run, recover, release_run

log = logging.getLogger(__name__)

_ALLOWED_IN_NEW_DIR = (TMP_PREFIX, LOCKS_DIR, CLAIMS_DIR)
_seq = itertools.count(1)  # part file numbers, unique within the process

__all__ = ["FORMAT", "META_FILE", "LEGACY_META_FILE", "MARKER_FILES", "PARAM_PREFIX", "FileProblem",
           "ProfileStore", "ReadResult", "UnsafeNameError", "find_datasets", "is_dataset", "new_run_id",
           "read_datasets"]


@dataclass
class FileProblem:
    """A file that could not be read as part of the dataset, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ReadResult:
    """Rows read from one or more datasets and the files that were skipped."""

    table: pa.Table
    problems: list[FileProblem] = field(default_factory=list)
    files_read: int = 0

    @property
    def param_columns(self) -> list[str]:
        """The parameter columns (``param_<name>``) in ``table``."""
        return [n for n in self.table.column_names if is_param_column(n)]

    def skipped_files(self) -> list[dict[str, str]]:
        """The skipped files as JSON-ready records (``--json`` outputs)."""
        return [{"path": str(p.path), "reason": p.reason} for p in self.problems]


def new_run_id() -> str:
    """A sortable, unique run id (a safe file name): UTC time plus random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%Sz") + "-" + uuid.uuid4().hex[:8]


class ProfileStore:
    """A Parquet profile dataset on disk."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False) -> None:
        self.root = Path(root)
        meta = find_marker(self.root)
        if meta is not None:
            check_marker(self.root, meta)
            if create and meta.name == LEGACY_META_FILE:
                write_marker(self.root, remove_legacy=True)
        elif self.root.is_dir() and any(not p.name.startswith(_ALLOWED_IN_NEW_DIR) for p in self.root.iterdir()):
            raise StoreError(f"{self.root} is not a perfscope dataset (no {META_FILE}); "
                             "choose a new or empty directory")
        elif create:
            self._create()
        else:
            raise StoreError(f"no perfscope dataset at {self.root}")
        recover(self.root)

    # -- creation --------------------------------------------------------------------
    def _create(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create a dataset at {self.root}: {exc.strerror or exc}") from None
        write_marker(self.root)

    # -- writing ----------------------------------------------------------------------
    def append(self, rows: Iterable[Measurement]) -> list[Path]:
        """Write rows now (uncompressed, fast: compaction compresses). Returns the files."""
        return self.append_table(rows_to_table(list(rows)), compression="none")

    def append_table(self, table: pa.Table, compression: str = "zstd") -> list[Path]:
        """Write an Arrow table of rows (the columns of ``arrow_schema()`` plus any
        ``param_<name>`` columns), one file per (device, kernel, run) group. Every path
        is checked before the first file is written. Returns the files written."""
        table = _conform_for_write(table)
        for column, what in (("device_key", "device key"), ("kernel", "kernel"), ("run_id", "run id")):
            for value in pc.unique(table.column(column)).to_pylist():
                check_safe_name(value, what)
        keys = pc.binary_join_element_wise(table.column("device_key"), table.column("kernel"),
                                           table.column("run_id"), "\x00")
        groups = []
        for key in pc.unique(keys).to_pylist():
            device_key, kernel, run_id = key.split("\x00")
            partition = self._partition(device_key, kernel)
            groups.append((partition, run_id, pc.equal(keys, key)))
        written = []
        for partition, run_id, mask in groups:
            hold_run(self.root, run_id)
            path = partition / f"part-{run_id}-{os.getpid()}-{next(_seq):06d}.parquet"
            write_data_file(path, table.filter(mask), compression=compression)
            written.append(path)
        log.debug("wrote %d row(s) to %d file(s) under %s", table.num_rows, len(written), self.root)
        return written

    def compact(self, run_id: str) -> int:
        """Merge the part files of ``run_id`` into one file per partition; returns files
        merged. Unreadable parts stay where they are (readers report them)."""
        check_safe_name(run_id, "run id")
        hold_run(self.root, run_id)
        try:
            return compact_held(self.root, run_id)
        finally:
            release_run(self.root, run_id)

    def claims(self, device_key: str) -> ConfigClaims:
        """Configuration claims for ``device_key`` (concurrent collectors share a grid)."""
        check_safe_name(device_key, "device key")
        return ConfigClaims(self.root, device_key)

    def _partition(self, device_key: str, kernel: str) -> Path:
        path = (self.root / f"device={check_safe_name(device_key, 'device key')}"
                / f"kernel={check_safe_name(kernel, 'kernel')}")
        return check_inside(self.root, path)

    # -- reading ----------------------------------------------------------------------
    def files(self, device_key: str | None = None, kernel: str | None = None) -> list[Path]:
        """Data files, optionally pruned by partition."""
        device = check_safe_name(device_key, "device key") if device_key else "*"
        family = check_safe_name(kernel, "kernel") if kernel else "*"
        return sorted(p for p in self.root.glob(f"device={device}/kernel={family}/*.parquet")
                      if not p.name.startswith((".", "_")))

    def read(self, columns: Sequence[str] | None = None, *, device_key: str | None = None,
             kernel: str | None = None) -> ReadResult:
        """Read rows (all columns and parameter columns, or ``columns``), skipping and
        reporting bad files; repeated (run_id, config_id) rows are dropped."""
        schema = _requested_schema(columns)
        tables, problems = [], []
        paths = self.files(device_key, kernel)
        for path in paths:
            try:
                tables.append(read_data_file(path, columns))
            except (StoreError, OSError, pa.ArrowException) as exc:
                problems.append(FileProblem(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        table = unify_tables(tables, schema)
        if columns is None or {"run_id", "config_id"} <= set(columns):
            table = dedupe(table)
        return ReadResult(table, problems, files_read=len(tables))

    def measured_keys(self, device_key: str | None = None) -> set[tuple[str, str]]:
        """(device_key, config_id) pairs already in the dataset, for resuming."""
        t = self.read(["device_key", "config_id"], device_key=device_key).table
        return set(zip(t.column("device_key").to_pylist(), t.column("config_id").to_pylist(), strict=True))


def read_datasets(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                  columns: Sequence[str] | None = None) -> ReadResult:
    """Rows of one or more datasets as one table, with every skipped file of each
    (``StoreError`` for a path that is not a dataset). What ``train``, ``evaluate`` and
    the dashboard read through."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    results = [ProfileStore(p).read(columns) for p in paths]
    if not results:
        return ReadResult(unify_tables([], _requested_schema(columns)))
    tables = [r.table for r in results]
    table = unify_tables(tables, _requested_schema(columns)) if len(tables) > 1 else tables[0]
    return ReadResult(table, [p for r in results for p in r.problems], sum(r.files_read for r in results))


def _requested_schema(columns: Sequence[str] | None) -> pa.Schema:
    """The fixed columns a read returns (parameter columns are added as found)."""
    schema = arrow_schema()
    if columns is None:
        return schema
    fixed = []
    for c in columns:
        if schema.get_field_index(c) >= 0:
            fixed.append(schema.field(c))
        elif not is_param_column(c):
            raise StoreError(f"{c!r} is not a perfscope column")
    return pa.schema(fixed, metadata=schema.metadata)


def _conform_for_write(table: pa.Table) -> pa.Table:
    """``table`` with the fixed columns in schema order, then its parameter columns;
    ``StoreError`` for a missing or mistyped column."""
    schema = arrow_schema()
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise StoreError(f"table does not match the perfscope schema (missing: {missing[:5]})")
    wrong = [f.name for f in schema if table.schema.field(f.name).type != f.type]
    if wrong:
        raise StoreError(f"table does not match the perfscope schema (wrong types: {wrong[:5]})")
    params = param_fields(table.schema)
    ordered = table.select(list(schema.names) + [f.name for f in params])
    for f in schema:
        if not f.nullable and ordered.column(f.name).null_count:
            raise StoreError(f"column {f.name!r} must not be null")
    return ordered
