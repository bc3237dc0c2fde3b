"""The profile store: a hive-partitioned Parquet dataset of ``Measurement`` rows.

Layout::

    DATASET/perfscope-dataset.json                      format and schema version
    DATASET/device=<device_key>/kernel=<family>/part-<run_id>-<seq>.parquet
    DATASET/device=<device_key>/kernel=<family>/run-<run_id>.parquet   (compacted)

Each measured configuration is written to its own part file at once (write to a
temporary name, then rename), so a killed sweep loses at most the configuration
in flight. At the end of a sweep the run's part files are compacted into one file.
Readers drop exact duplicates of (run_id, config_id), so a compaction cut short
never duplicates rows. A corrupt or foreign file is reported by name and skipped.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perfscope.errors import SchemaVersionError, StoreError
from perfscope.schema import SCHEMA_METADATA_KEY, SCHEMA_VERSION, Measurement, arrow_schema, rows_to_table

META_FILE = "perfscope-dataset.json"
FORMAT = "perfscope-profile-dataset"
_TMP_PREFIX = ".tmp-"


@dataclass
class FileProblem:
    """A file that could not be read as part of the dataset, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ReadResult:
    """Rows read from a dataset and the files that were skipped."""

    table: pa.Table
    problems: list[FileProblem] = field(default_factory=list)


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


class ProfileStore:
    """A Parquet profile dataset on disk."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = False) -> None:
        self.root = Path(root)
        self._seq = 0
        meta = self.root / META_FILE
        if meta.is_file():
            self._check_meta(meta)
        elif self.root.is_dir() and any(self.root.iterdir()):
            raise StoreError(f"{self.root} is not a perfscope dataset (no {META_FILE}); "
                             "choose a new or empty directory")
        elif create:
            self._create()
        else:
            raise StoreError(f"no perfscope dataset at {self.root}")

    # -- creation and metadata --------------------------------------------------------
    def _create(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(self.root / META_FILE, json.dumps(
                {"format": FORMAT, "schema_version": SCHEMA_VERSION,
                 "created_at": datetime.now(timezone.utc).isoformat()}, indent=2) + "\n")
        except OSError as exc:
            raise StoreError(f"cannot create a dataset at {self.root}: {exc.strerror or exc}") from None

    def _check_meta(self, meta: Path) -> None:
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{meta} is unreadable: {exc}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise StoreError(f"{meta} does not describe a perfscope dataset")
        version = info.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.root} has schema version {version}; this perfscope reads up to "
                f"{SCHEMA_VERSION}: upgrade perfscope")

    # -- writing ----------------------------------------------------------------------
    def append(self, rows: Iterable[Measurement]) -> list[Path]:
        """Write rows now (uncompressed, fast: compaction compresses). Returns the files."""
        return self.append_table(rows_to_table(list(rows)), compression="none")

    def append_table(self, table: pa.Table, compression: str = "zstd") -> list[Path]:
        """Write an Arrow table of rows (``arrow_schema()``), one file per
        (device, kernel, run) group. Returns the files written."""
        schema = arrow_schema()
        if not table.schema.equals(schema, check_metadata=False):
            missing = sorted(set(schema.names) - set(table.schema.names))
            raise StoreError(f"table does not match the perfscope schema (missing: {missing[:5]})")
        table = table.replace_schema_metadata(schema.metadata)
        keys = pc.binary_join_element_wise(table.column("device_key"), table.column("kernel"),
                                           table.column("run_id"), "\x00")
        written = []
        for key in pc.unique(keys).to_pylist():
            device_key, kernel, run_id = key.split("\x00")
            group = table.filter(pc.equal(keys, key))
            self._seq += 1
            path = self._partition(device_key, kernel) / f"part-{run_id}-{os.getpid()}-{self._seq:06d}.parquet"
            self._write(path, group, compression=compression)
            written.append(path)
        return written

    def compact(self, run_id: str) -> int:
        """Merge the part files of ``run_id`` into one file per partition; returns files merged."""
        merged = 0
        for partition in {p.parent for p in self.root.glob(f"*/*/part-{run_id}-*.parquet")}:
            parts = sorted(partition.glob(f"part-{run_id}-*.parquet"))
            tables = [_read_file(p)[0] for p in parts]
            target = partition / f"run-{run_id}.parquet"
            if target.exists():
                tables.insert(0, _read_file(target)[0])
            self._write(target, _dedupe(pa.concat_tables(tables)))
            for p in parts:  # a crash here leaves duplicates that readers drop
                p.unlink()
            merged += len(parts)
        return merged

    def _partition(self, device_key: str, kernel: str) -> Path:
        return self.root / f"device={device_key}" / f"kernel={kernel}"

    def _write(self, path: Path, table: pa.Table, compression: str = "zstd") -> None:
        tmp = path.with_name(_TMP_PREFIX + path.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, tmp, compression=compression)
            os.replace(tmp, path)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None

    # -- reading ----------------------------------------------------------------------
    def files(self, device_key: str | None = None, kernel: str | None = None) -> list[Path]:
        """Data files, optionally pruned by partition."""
        pattern = f"device={device_key or '*'}/kernel={kernel or '*'}/*.parquet"
        return sorted(p for p in self.root.glob(pattern) if not p.name.startswith(_TMP_PREFIX))

    def read(self, columns: list[str] | None = None, *, device_key: str | None = None,
             kernel: str | None = None) -> ReadResult:
        """Read rows (all columns, or ``columns``), skipping and reporting bad files."""
        tables, problems = [], []
        for path in self.files(device_key, kernel):
            try:
                table, _ = _read_file(path, columns)
            except (StoreError, OSError, pa.ArrowException) as exc:
                problems.append(FileProblem(path, str(exc).splitlines()[0]))
                continue
            tables.append(table)
        schema = arrow_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
        # (Schema.empty_table imports pandas; from_batches does not)
        table = pa.concat_tables(tables) if tables else pa.Table.from_batches([], schema)
        if columns is None or {"run_id", "config_id"} <= set(columns):
            table = _dedupe(table)
        return ReadResult(table, problems)

    def measured_keys(self, device_key: str | None = None) -> set[tuple[str, str]]:
        """(device_key, config_id) pairs already in the dataset, for resuming."""
        result = self.read(["device_key", "config_id"], device_key=device_key)
        t = result.table
        return set(zip(t.column("device_key").to_pylist(), t.column("config_id").to_pylist()))


def _read_file(path: Path, columns: list[str] | None = None) -> tuple[pa.Table, int]:
    """Read one data file, checking that perfscope wrote it with a readable schema."""
    try:
        # ParquetFile, not pq.read_table: the latter imports pandas (0.5 s) on first use
        parquet = pq.ParquetFile(path)
        file_schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"not a readable Parquet file ({exc})") from None
    raw = (file_schema.metadata or {}).get(SCHEMA_METADATA_KEY)
    if raw is None:
        raise StoreError("not written by perfscope (no schema version in its metadata)")
    version = int(raw)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"schema version {version} is newer than this perfscope reads "
                                 f"({SCHEMA_VERSION})")
    try:
        table = parquet.read(columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"corrupt Parquet data ({exc})") from None
    expected = arrow_schema()
    if columns is not None:
        expected = pa.schema([expected.field(c) for c in columns], metadata=expected.metadata)
    if not table.schema.equals(expected, check_metadata=False):
        raise StoreError("columns do not match the perfscope schema")
    return table.replace_schema_metadata(expected.metadata), version


def _dedupe(table: pa.Table) -> pa.Table:
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(_TMP_PREFIX + path.name)
    tmp.write_text(text)
    os.replace(tmp, path)
