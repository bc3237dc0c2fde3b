"""The store under hostile names, damaged files, older files, crashes and other readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perfscope.errors import StoreError
from perfscope.schema import SCHEMA_METADATA_KEY, arrow_schema, rows_to_table
from perfscope.store import LEGACY_META_FILE, META_FILE, ProfileStore, UnsafeNameError, read_datasets

KT_CACHE = Path("/work/shared/anchors/kernel_tuner/dedispersion_milo/A100.json.gz")


def _store(tmp_path):
    return ProfileStore(tmp_path / "ds", create=True)


def perfscope(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "perfscope", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


# -- names that would become paths ---------------------------------------------------------

@pytest.mark.parametrize("column,value", [
    ("kernel", "../../../../tmp/x"), ("kernel", ".."), ("kernel", "GEMM"), ("device_key", "a/b"),
    ("device_key", "."), ("run_id", "../run"), ("run_id", "x\x00y")])
def test_a_value_that_would_leave_the_dataset_is_refused_and_nothing_is_written(tmp_path, make_row, column, value):
    store = _store(tmp_path)
    store.append([make_row(m=8)])
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    with pytest.raises(UnsafeNameError, match="cannot name a file"):
        store.append_table(rows_to_table([make_row(m=16), make_row(m=32, **{column: value})]))
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == before  # the good row was not written either
    assert store.read().table.column("m").to_pylist() == [8]
    from perfscope.cli import exit_code

    assert exit_code(UnsafeNameError("x")) == 2


def test_a_partition_directory_linked_outside_the_dataset_is_refused(tmp_path, make_row):
    store = _store(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "device=cpu-test").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeNameError, match="outside the dataset"):
        store.append([make_row()])
    assert list(outside.iterdir()) == []


def test_import_csv_with_a_traversing_kernel_exits_2_and_writes_nothing_outside(tmp_path):
    csv = tmp_path / "evil.csv"
    csv.write_text("kernel,M,N,K,ms\n../../../../tmp/x,64,64,64,0.5\n")
    ds = tmp_path / "ds"
    ProfileStore(ds, create=True)
    run = perfscope("import", "csv", csv, "--out", ds, "--map", "kernel=kernel", "--map", "m=M", "--map", "n=N",
                    "--map", "k=K", "--map", "time_median_ms=ms", "--default", "implementation=mine",
                    "--default", "dtype=fp32", "--default", "device_name=Mystery GPU")
    assert run.returncode == 2, run.stderr
    assert "cannot name a file" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.mark.skipif(not KT_CACHE.is_file(), reason="Kernel Tuner anchor cache absent")
def test_import_kernel_tuner_with_a_traversing_kernel_exits_2(tmp_path):
    ds = tmp_path / "ds"
    run = perfscope("import", "kernel-tuner", KT_CACHE, "--kernel", "../x", "--out", ds)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.parquet"))


# -- other readers ---------------------------------------------------------------------------

def test_the_dataset_reads_with_pyarrow_polars_and_duckdb_as_hive_partitions(tmp_path, make_row):
    store = _store(tmp_path)
    store.append([make_row(m=8), make_row(m=16)])
    store.append([make_row(m=32, kernel="conv", device_key="cuda-x")])
    store.compact("run-a")
    root = str(store.root)
    import pyarrow.dataset as ds

    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 3 and "device_key" not in table.column_names  # one device column: the partition
    assert sorted(zip(table.column("device").to_pylist(), table.column("kernel").to_pylist(), strict=True)) == [
        ("cpu-test", "gemm"), ("cpu-test", "gemm"), ("cuda-x", "conv")]
    polars = pytest.importorskip("polars")
    frame = polars.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True).collect()
    assert sorted(frame["m"].to_list()) == [8, 16, 32] and set(frame["device"].to_list()) == {"cpu-test", "cuda-x"}
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"select device, kernel, m from read_parquet('{root}/**/*.parquet', hive_partitioning=true) "
                      "order by m").fetchall()
    assert rows == [("cpu-test", "gemm", 8), ("cpu-test", "gemm", 16), ("cuda-x", "conv", 32)]


def test_a_dataset_with_the_old_marker_is_read_and_moved_to_the_new_one_on_write(tmp_path, make_row):
    store = _store(tmp_path)
    store.append([make_row()])
    (store.root / META_FILE).rename(store.root / LEGACY_META_FILE)
    assert ProfileStore(store.root).read().table.num_rows == 1
    assert (store.root / LEGACY_META_FILE).is_file()  # reading changes nothing
    ProfileStore(store.root, create=True)
    assert (store.root / META_FILE).is_file() and not (store.root / LEGACY_META_FILE).exists()


def _rewrite_as_version_1(path: Path, device_key: str = "cpu-test", kernel: str = "gemm",
                          drop: tuple[str, ...] = ()) -> None:
    """Turn a data file into what perfscope wrote at schema version 1 (partition columns
    in the file), optionally without some columns (an older schema)."""
    table = pq.read_table(path)
    n = table.num_rows
    table = table.append_column("device_key", pa.array([device_key] * n))
    table = table.append_column("kernel", pa.array([kernel] * n))
    table = table.drop_columns(list(drop))
    pq.write_table(table.replace_schema_metadata({SCHEMA_METADATA_KEY: b"1"}), path)


def test_version_1_files_read_and_a_file_disagreeing_with_its_directory_is_skipped(tmp_path, make_row):
    store = _store(tmp_path)
    (good,) = store.append([make_row(m=8)])
    (bad,) = store.append([make_row(m=16)])
    _rewrite_as_version_1(good)
    _rewrite_as_version_1(bad, device_key="cuda-other")
    result = store.read()
    assert result.table.column("m").to_pylist() == [8]
    assert result.table.column("device_key").to_pylist() == ["cpu-test"]
    (problem,) = result.problems
    assert problem.path == bad and "disagrees with its directory" in problem.reason


def test_an_older_file_without_newer_columns_reads_them_as_null_or_their_default(tmp_path, make_row):
    store = _store(tmp_path)
    (path,) = store.append([make_row(m=8, throttled=True, energy_quality="good")])
    _rewrite_as_version_1(path, drop=("throttled", "energy_quality", "energy_method"))
    row = store.read().table.to_pylist()[0]
    assert row["m"] == 8 and row["throttled"] is None and row["energy_quality"] is None
    assert row["energy_method"] == "none"  # required, with a default
    assert store.read().problems == []


def test_a_non_integer_schema_version_tag_skips_the_file_with_a_reason(tmp_path, make_row):
    store = _store(tmp_path)
    store.append([make_row(m=8)])
    (path,) = store.append([make_row(m=16)])
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({SCHEMA_METADATA_KEY: b"two"}), path)
    result = store.read()
    assert result.table.column("m").to_pylist() == [8]
    assert "is not an integer" in result.problems[0].reason


def test_ls_on_a_file_with_a_bad_version_tag_warns_without_a_traceback(tmp_path, make_row):
    store = _store(tmp_path)
    (path,) = store.append([make_row(m=16)])
    pq.write_table(pq.read_table(path).replace_schema_metadata({SCHEMA_METADATA_KEY: b"1.5"}), path)
    run = perfscope("ls", store.root, "--json")
    assert run.returncode == 0 and "Traceback" not in run.stderr
    assert "is not an integer" in json.loads(run.stdout)["skipped_files"][0]["reason"]


# -- parameter columns -------------------------------------------------------------------

def _with_params(table: pa.Table, **columns) -> pa.Table:
    for name, array in columns.items():
        table = table.append_column(name, array)
    return table


def test_parameter_columns_are_stored_typed_and_unified_across_files(tmp_path, make_row):
    store = _store(tmp_path)
    store.append_table(_with_params(rows_to_table([make_row(m=8)]), param_block_size_x=pa.array([32], pa.int64()),
                                    param_use_shared=pa.array([True])))
    store.append_table(_with_params(rows_to_table([make_row(m=16, run_id="run-b")]),
                                    param_block_size_x=pa.array([1.5]), param_loop=pa.array(["unrolled"])))
    store.append([make_row(m=32, run_id="run-c")])
    result = store.read()
    assert result.param_columns == ["param_block_size_x", "param_loop", "param_use_shared"]
    table = result.table.sort_by("m")
    assert table.schema.field("param_block_size_x").type == pa.float64()  # int64 + float64
    assert table.column("param_block_size_x").to_pylist() == [32.0, 1.5, None]
    assert table.column("param_use_shared").to_pylist() == [True, None, None]
    assert table.column("param_loop").to_pylist() == [None, "unrolled", None]
    loop = store.read(["m", "param_loop"]).table.sort_by("m").column("param_loop")
    assert loop.to_pylist() == [None, "unrolled", None]
    store.compact("run-a")  # compaction keeps them
    assert store.read().table.sort_by("m").column("param_use_shared").to_pylist() == [True, None, None]


@pytest.mark.parametrize("name,array", [("tile_size", pa.array([1])), ("param_a/b", pa.array([1])),
                                        ("param_x", pa.array([[1]]))])
def test_extra_columns_other_than_typed_parameters_are_refused(tmp_path, make_row, name, array):
    store = _store(tmp_path)
    with pytest.raises(StoreError):
        store.append_table(_with_params(rows_to_table([make_row()]), **{name: array}))
    assert store.files() == []


# -- corruption --------------------------------------------------------------------------

@pytest.mark.parametrize("compacted", [False, True])
def test_forty_bytes_overwritten_anywhere_in_a_file_skip_it_with_a_warning(tmp_path, make_row, compacted):
    store = _store(tmp_path)
    for m in range(1, 12 if compacted else 2):
        store.append([make_row(m=m, samples_ms=[float(m)] * 5)])
    if compacted:
        store.compact("run-a")
    (path,) = store.files()
    good = store.read().table
    original = path.read_bytes()
    silent = []
    for offset in range(4, len(original) - 44, 97):
        damaged = bytearray(original)
        damaged[offset:offset + 40] = bytes((b ^ 0x5A) for b in damaged[offset:offset + 40])
        path.write_bytes(bytes(damaged))
        result = store.read()
        if not result.problems and not result.table.equals(good):
            silent.append(offset)
        if result.problems:
            assert result.problems[0].path == path and result.table.num_rows == 0
    assert silent == []


# -- creation and crash leftovers --------------------------------------------------------

def test_processes_creating_one_dataset_at_once_all_succeed(tmp_path):
    code = ("import sys; from perfscope.store import ProfileStore; "
            "ProfileStore(sys.argv[1], create=True)")
    for attempt in range(3):
        root = tmp_path / f"ds{attempt}"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        errors = [p.communicate()[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        assert json.loads((root / META_FILE).read_text())["format"] == "perfscope-profile-dataset"


def _crashed_writer(root: Path, body: str) -> None:
    """Run ``body`` in a process that dies with SIGKILL right after it."""
    code = ("import os, signal, sys; from perfscope.store import ProfileStore; "
            "sys.path.insert(0, sys.argv[2]); from synthetic_store_rows import row; "
            "store = ProfileStore(sys.argv[1], create=True)\n" + body + "\nos.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(root), str(Path(__file__).parent)], capture_output=True,
                          text=True)
    assert proc.returncode == -9, proc.stderr


def test_parts_and_temporary_files_of_a_killed_writer_are_cleaned_at_the_next_open(tmp_path):
    root = tmp_path / "ds"
    _crashed_writer(root, "store.append([row(8)]); store.append([row(16)])\n"
                          "p = store.files()[0]; "
                          "(p.parent / ('.tmp-run-run-a.parquet.' + str(os.getpid()))).write_bytes(b'x')")
    partition = root / "device=cpu-test" / "kernel=gemm"
    assert len(list(partition.glob("part-*"))) == 2 and len(list(partition.glob(".tmp-*"))) == 1
    store = ProfileStore(root)
    assert sorted(p.name for p in partition.iterdir()) == ["run-run-a.parquet"]
    assert sorted(store.read().table.column("m").to_pylist()) == [8, 16]


def test_a_live_writers_parts_are_left_alone(tmp_path, make_row):
    store = _store(tmp_path)
    store.append([make_row(m=8)])
    code = "import sys; from perfscope.store import ProfileStore; ProfileStore(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(store.root)], check=True)
    assert [p.name.startswith("part-") for p in store.files()] == [True]


def test_a_crash_between_compaction_and_cleanup_leaves_no_duplicates(tmp_path):
    root = tmp_path / "ds"
    # the run file is written, the parts are not yet removed, then the process dies
    _crashed_writer(root, "store.append([row(8)]); store.append([row(16)])\n"
                          "import perfscope.store as s; s.Path.unlink = lambda *a, **k: os.kill(os.getpid(), 9)\n"
                          "store.compact('run-a')")
    partition = root / "device=cpu-test" / "kernel=gemm"
    assert len(list(partition.glob("part-*"))) == 2 and (partition / "run-run-a.parquet").is_file()
    raw = read_datasets([root])
    assert sorted(raw.table.column("m").to_pylist()) == [8, 16]
    assert [p.name for p in partition.iterdir()] == ["run-run-a.parquet"]  # the open compacted again


def test_temporary_files_never_show_as_data(tmp_path, make_row):
    store = _store(tmp_path)
    (path,) = store.append([make_row()])
    (path.parent / f".tmp-part-x-1-000001.parquet.{os.getpid()}").write_bytes(b"half")
    assert store.files() == [path] and store.read().problems == []


def test_the_read_result_of_several_datasets_carries_every_skipped_file(tmp_path, make_row):
    a, b = ProfileStore(tmp_path / "a", create=True), ProfileStore(tmp_path / "b", create=True)
    a.append([make_row(m=8)])
    (path,) = b.append([make_row(m=16)])
    path.write_bytes(b"PAR1 broken")
    result = read_datasets([a.root, b.root])
    assert result.table.column("m").to_pylist() == [8] and result.files_read == 1
    assert result.skipped_files() == [{"path": str(path), "reason": result.problems[0].reason}]
    assert result.table.schema.equals(arrow_schema(), check_metadata=False)
