from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perfscope.errors import SchemaVersionError, StoreError
from perfscope.schema import SCHEMA_METADATA_KEY, SCHEMA_VERSION
from perfscope.store import META_FILE, ProfileStore


def _store(tmp_path):
    return ProfileStore(tmp_path / "ds", create=True)


def test_rows_are_partitioned_by_device_and_kernel(tmp_path, make_row):
    store = _store(tmp_path)
    (path,) = store.append([make_row()])
    assert path.parent.name == "kernel=gemm" and path.parent.parent.name == "device=cpu-test"
    assert store.read().table.num_rows == 1


def test_compaction_merges_a_runs_parts_into_one_file_without_losing_rows(tmp_path, make_row):
    store = _store(tmp_path)
    for m in (8, 16, 32):
        store.append([make_row(m=m)])
    assert len(store.files()) == 3
    assert store.compact("run-a") == 3
    assert [p.name for p in store.files()] == ["run-run-a.parquet"]
    assert sorted(store.read().table.column("m").to_pylist()) == [8, 16, 32]


def test_reader_drops_duplicates_left_by_an_interrupted_compaction(tmp_path, make_row):
    store = _store(tmp_path)
    store.append([make_row(m=8)])
    store.append([make_row(m=8)])  # same run and config: as if parts survived a compaction
    store.append([make_row(m=8, run_id="run-b")])  # another run: a genuine remeasurement
    table = store.read().table
    assert table.num_rows == 2
    assert sorted(table.column("run_id").to_pylist()) == ["run-a", "run-b"]


def test_measured_keys_are_device_and_config(tmp_path, make_row):
    store = _store(tmp_path)
    row = make_row()
    store.append([row])
    assert store.measured_keys() == {("cpu-test", row.config_id)}
    assert store.measured_keys("other-device") == set()


def test_corrupt_and_foreign_files_are_reported_by_name_and_the_rest_stays_readable(tmp_path, make_row):
    store = _store(tmp_path)
    store.append([make_row(m=8)])
    partition = store.files()[0].parent
    (partition / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"x": [1, 2]}), partition / "foreign.parquet")
    result = store.read()
    assert result.table.num_rows == 1
    named = {p.path.name: p.reason for p in result.problems}
    assert set(named) == {"corrupt.parquet", "foreign.parquet"}
    assert "not written by perfscope" in named["foreign.parquet"]


def test_a_file_from_a_newer_schema_is_reported(tmp_path, make_row):
    store = _store(tmp_path)
    (path,) = store.append([make_row()])
    table = pq.read_table(path)
    newer = table.replace_schema_metadata({SCHEMA_METADATA_KEY: b"99"})
    pq.write_table(newer, path.with_name("newer.parquet"))
    result = store.read()
    assert result.table.num_rows == 1
    assert "newer than this perfscope" in result.problems[0].reason


def test_dataset_metadata_is_checked_on_open(tmp_path):
    root = tmp_path / "ds"
    ProfileStore(root, create=True)
    info = json.loads((root / META_FILE).read_text())
    assert info["schema_version"] == SCHEMA_VERSION
    info["schema_version"] = 99
    (root / META_FILE).write_text(json.dumps(info))
    with pytest.raises(SchemaVersionError, match="upgrade perfscope"):
        ProfileStore(root)


def test_a_non_empty_directory_that_is_not_a_dataset_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a perfscope dataset"):
        ProfileStore(tmp_path, create=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_dataset_is_an_error_unless_created(tmp_path):
    with pytest.raises(StoreError, match="no perfscope dataset"):
        ProfileStore(tmp_path / "absent")


def test_an_unwritable_location_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create"):
        ProfileStore(blocker / "ds", create=True)


def test_append_table_groups_rows_by_partition_and_run(tmp_path, make_row):
    from perfscope.schema import rows_to_table

    store = _store(tmp_path)
    rows = [make_row(m=8), make_row(m=16, device_key="cuda-x"), make_row(m=32, run_id="run-b")]
    written = store.append_table(rows_to_table(rows))
    assert len(written) == 3
    assert {p.parent.parent.name for p in written} == {"device=cpu-test", "device=cuda-x"}
    assert sorted(store.read().table.column("m").to_pylist()) == [8, 16, 32]


def test_append_table_refuses_a_foreign_table(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(StoreError, match="does not match"):
        store.append_table(pa.table({"x": [1]}))
