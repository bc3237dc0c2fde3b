"""The CLI end to end, as a user runs it (subprocesses of ``python -m perfscope``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from perfscope.collectors.gemm import cases_from_axes
from perfscope.collectors.protocol import case_config_id
from perfscope.store import ProfileStore

FAST = ["--warmup-s", "0.01", "--min-time-s", "0.02", "--budget-s", "0.05", "--energy", "none"]


def perfscope(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "perfscope", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def one_row_dataset(tmp_path_factory):
    """A dataset holding one real measurement (made once; tests copy it)."""
    ds = tmp_path_factory.mktemp("template") / "ds"
    run = perfscope("collect", "gemm", "--size", "8", "--out", ds, *FAST)
    assert run.returncode == 0, run.stderr
    return ds


def test_collect_writes_a_real_profile_and_ls_summarises_it(tmp_path):
    ds = tmp_path / "ds"
    run = perfscope("collect", "gemm", "--size", "16,32", "--dtype", "fp32,tf32", "--out", ds, "--json", *FAST)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["measured"] == 4 and summary["statuses"] == {"ok": 2, "unsupported": 2}
    assert summary["device"].startswith("cpu-")
    listing = perfscope("ls", ds, "--json")
    assert listing.returncode == 0, listing.stderr
    groups = {g["dtype"]: g for g in json.loads(listing.stdout)["groups"]}
    assert groups["fp32"]["ok"] == 2 and groups["tf32"]["statuses"] == {"unsupported": 2}
    again = perfscope("collect", "gemm", "--size", "16,32", "--dtype", "fp32,tf32", "--out", ds, "--json", *FAST)
    assert json.loads(again.stdout)["skipped_already_measured"] == 4
    assert ProfileStore(ds).read().table.num_rows == 4


def test_human_output_has_a_table_and_says_how_energy_was_handled(tmp_path):
    run = perfscope("collect", "gemm", "--size", "16", "--out", tmp_path / "ds", *FAST)
    assert run.returncode == 0, run.stderr
    assert "16x16x16" in run.stdout and "energy: none" in run.stdout
    assert "measured" in run.stdout


@pytest.mark.parametrize("args,message", [
    (["--size", "16", "--dtype", "fp64"], "unknown dtype 'fp64'"),
    (["--size", "-4"], "bad size '-4'"),
    (["--shape", "4x4"], "bad shape"),
    (["--size", "16", "--device", "cuda"], "CUDA"),
    (["--size", "16", "--device", "tpu"], "bad device"),
    (["--size", "16", "--energy", "joulemeter"], "unknown energy meter"),
    (["--size", "16", "--budget-s", "0.01", "--min-time-s", "1"], "budget_s"),
    (["--size", "16", "--spec", "nope"], "unknown preset"),
    (["--size", "16", "--axis", "tile"], "bad axis"),
    (["--size", "16", "--filter", "__import__('os')"], "not allowed"),
    (["--size", "16", "--shard", "3/2"], "bad shard"),
])
def test_bad_input_is_one_line_and_exit_status_2_and_keeps_collected_data(tmp_path, one_row_dataset, args, message):
    ds = tmp_path / "ds"
    shutil.copytree(one_row_dataset, ds)
    before = sorted(p.name for p in ds.rglob("*"))
    run = perfscope("collect", "gemm", "--out", ds, *FAST, *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in ds.rglob("*")) == before
    assert ProfileStore(ds).read().table.num_rows == 1


def test_unwritable_output_and_missing_dataset_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = perfscope("collect", "gemm", "--size", "8", "--out", blocker / "ds", *FAST)
    assert run.returncode == 2 and "cannot create a dataset" in run.stderr and "Traceback" not in run.stderr
    run = perfscope("ls", tmp_path / "absent")
    assert run.returncode == 2 and "no perfscope dataset" in run.stderr


def test_ls_reports_a_corrupt_file_by_name_and_lists_the_rest(tmp_path, one_row_dataset):
    ds = tmp_path / "ds"
    shutil.copytree(one_row_dataset, ds)
    partition = next(ds.glob("device=*/kernel=gemm"))
    (partition / "broken.parquet").write_bytes(b"garbage")
    run = perfscope("ls", ds, "--json")
    assert run.returncode == 0
    out = json.loads(run.stdout)
    assert sum(g["rows"] for g in out["groups"]) == 1
    assert [os.path.basename(f["path"]) for f in out["skipped_files"]] == ["broken.parquet"]
    assert "broken.parquet" in run.stderr


@pytest.mark.slow
def test_resume_after_sigkill_loses_nothing_and_duplicates_nothing(tmp_path):
    ds = tmp_path / "ds"
    grid = ["--size", "8,12,16,20,24,28,32,36,40,44", "--dtype", "fp32,bf16", "--batch", "1,2"]
    expected = {case_config_id(c) for c in cases_from_axes(
        {"sizes": [8, 12, 16, 20, 24, 28, 32, 36, 40, 44], "dtype": ["fp32", "bf16"], "batch": [1, 2]})}
    cmd = [sys.executable, "-m", "perfscope", "collect", "gemm", *grid, "--out", str(ds), "--quiet",
           "--warmup-s", "0.02", "--min-time-s", "0.05", "--budget-s", "0.1", "--energy", "none"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while len(list(ds.glob("device=*/kernel=gemm/part-*.parquet"))) < 5:
        assert proc.poll() is None, "collect finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = ProfileStore(ds).read()
    assert not killed.problems
    done_before = set(killed.table.column("config_id").to_pylist())
    assert 5 <= len(done_before) < len(expected)

    resumed = perfscope(*cmd[3:], "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped_already_measured"] == len(done_before)
    assert summary["measured"] == len(expected) - len(done_before)
    final = ProfileStore(ds).read().table
    ids = final.column("config_id").to_pylist()
    assert set(ids) == expected and len(ids) == len(expected)


def test_import_csv_then_ls_and_a_bad_mapping_exits_2(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("M,N,K,ms\n64,64,64,0.5\n128,128,128,2.0\n")
    ds = tmp_path / "ds"
    args = ["import", "csv", csv, "--out", ds, "--map", "m=M", "--map", "n=N", "--map", "k=K",
            "--map", "time_median_ms=ms", "--default", "kernel=gemm", "--default", "implementation=mine",
            "--default", "dtype=fp32", "--default", "device_name=Mystery GPU", "--json"]
    run = perfscope(*args)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["rows"] == 2
    table = ProfileStore(ds).read().table
    assert sorted(table.column("time_median_ms").to_pylist()) == [0.5, 2.0]
    assert set(table.column("source").to_pylist()) == {"import:csv:mine.csv"}
    bad = perfscope("import", "csv", csv, "--out", ds, "--map", "m=NOPE")
    assert bad.returncode == 2 and "NOPE" in bad.stderr and "Traceback" not in bad.stderr
