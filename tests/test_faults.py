"""Faults a real machine meets: collectors killed at random moments, damaged files, a full
disk, several collectors at once. Nothing already stored may be lost or duplicated."""

from __future__ import annotations

import errno
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fault_injection import (  # tests/ is on sys.path (rootdir import mode)
    CORRUPTIONS,
    check_union,
    collect_command,
    corrupt,
    kill_repeatedly,
    leftovers,
    run_concurrently,
)

from perfscope.collectors.gemm import cases_from_axes
from perfscope.collectors.protocol import case_config_id
from perfscope.errors import StoreError
from perfscope.store import ProfileStore

SIZES = [8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68]


def _expected(sizes=SIZES) -> set[str]:
    return {case_config_id(c) for c in cases_from_axes({"sizes": list(sizes), "dtype": ["fp32"]})}


# -- killed collectors -----------------------------------------------------------------

@pytest.mark.slow
def test_a_sweep_killed_at_20_random_moments_then_resumed_equals_an_uninterrupted_run(tmp_path):
    sizes = list(range(8, 104, 4))  # 24 configurations, ~0.2 s each (KILL_TIMING)
    reference = tmp_path / "reference"
    assert subprocess.run(collect_command(reference, sizes)).returncode == 0
    ds = tmp_path / "killed"
    kills = kill_repeatedly(ds, sizes, 20, seed=20)
    assert kills.killed >= 5, kills  # signals landed in live runs (late runs have little left to do)
    final = subprocess.run(collect_command(ds, sizes), capture_output=True, text=True)  # resume to the end
    assert final.returncode == 0, final.stderr
    union, uninterrupted = check_union(ds, _expected(sizes)), check_union(reference, _expected(sizes))
    assert (uninterrupted.lost, uninterrupted.duplicated) == (0, 0)
    assert (union.lost, union.duplicated, union.skipped_files) == (0, 0, 0), (union, kills)
    assert union.found == uninterrupted.found == len(sizes)
    assert leftovers(ds) == []  # no temporary file, no uncompacted part


@pytest.mark.slow
def test_three_collectors_on_one_grid_measure_each_configuration_once(tmp_path):
    ds = tmp_path / "ds"
    runs = run_concurrently([collect_command(ds, SIZES, "--json") for _ in range(3)])
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    union = check_union(ds, _expected())
    assert (union.lost, union.duplicated, union.found) == (0, 0, len(SIZES))
    summaries = [json.loads(r.stdout) for r in runs]
    assert sum(s["measured"] for s in summaries) == len(SIZES)  # none measured twice
    for s in summaries:
        assert s["measured"] + s["left_to_other_collectors"] + s["skipped_already_measured"] == len(SIZES)


# -- damaged files ---------------------------------------------------------------------

def _three_files(root: Path, make_row) -> tuple[ProfileStore, list[Path]]:
    store = ProfileStore(root, create=True)
    paths = [store.append([make_row(m=m, samples_ms=[float(m)] * 4)])[0] for m in (8, 16, 32)]
    return store, paths


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_every_kind_of_damaged_file_is_skipped_with_a_reason_and_the_rest_is_kept(tmp_path, make_row, kind):
    store, paths = _three_files(tmp_path / "ds", make_row)
    corrupt(paths[1], kind, random.Random(kind))
    result = store.read()
    assert sorted(result.table.column("m").to_pylist()) == [8, 32]
    assert [p.path for p in result.problems] == [paths[1]] and result.problems[0].reason
    assert max(v for s in result.table.column("samples_ms").to_pylist() for v in s) == 32.0  # never 3.9e+117


def test_ls_on_a_dataset_damaged_every_way_warns_per_file_without_a_traceback(tmp_path, make_row):
    store = ProfileStore(tmp_path / "ds", create=True)
    paths = [store.append([make_row(m=8 * (i + 1))])[0] for i in range(len(CORRUPTIONS) + 1)]
    for path, kind in zip(paths, sorted(CORRUPTIONS), strict=False):
        corrupt(path, kind, random.Random(kind))
    run = subprocess.run([sys.executable, "-m", "perfscope", "ls", str(store.root), "--json"], capture_output=True,
                         text=True)
    assert run.returncode == 0 and "Traceback" not in run.stderr
    # ls reads a few columns only: a mistyped column it does not read does not matter to it
    damaged = len(CORRUPTIONS) - 1
    assert len(json.loads(run.stdout)["skipped_files"]) == damaged
    assert run.stderr.count("warning: skipped") == damaged


# -- a full disk -------------------------------------------------------------------------

def _disk_full_after(monkeypatch, writes_allowed: int) -> None:
    import pyarrow.parquet as pq

    from perfscope import store_files

    real, calls = pq.write_table, {"n": 0}

    def write_table(table, where, **kwargs):
        calls["n"] += 1
        if calls["n"] > writes_allowed:
            Path(where).write_bytes(b"PAR1 partial")  # what a full disk leaves: a partial file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kwargs)

    monkeypatch.setattr(store_files.pq, "write_table", write_table)


def test_an_injected_enospc_fails_the_write_in_one_line_and_loses_nothing_stored(tmp_path, make_row, monkeypatch):
    store, paths = _three_files(tmp_path / "ds", make_row)
    _disk_full_after(monkeypatch, 0)
    with pytest.raises(StoreError, match="No space left on device"):
        store.append([make_row(m=64)])
    with pytest.raises(StoreError, match="No space left on device"):
        store.compact("run-a")  # the run file cannot be written: the parts stay
    assert store.files() == paths and leftovers(store.root) == paths  # no temporary file left
    monkeypatch.undo()
    assert sorted(store.read().table.column("m").to_pylist()) == [8, 16, 32]
    store.compact("run-a")
    assert sorted(ProfileStore(store.root).read().table.column("m").to_pylist()) == [8, 16, 32]


def test_a_sweep_that_fills_the_disk_stops_and_resumes_without_loss(tmp_path, monkeypatch):
    from perfscope.collectors.protocol import RunContext
    from perfscope.collectors.sweep import run_sweep
    from perfscope.devices.cpu import CpuDevice
    from perfscope.meters.null import NullMeter
    from perfscope.timing import TimingPolicy

    sizes = SIZES[:6]
    cases = cases_from_axes({"sizes": sizes, "dtype": ["fp32"]})
    policy = TimingPolicy(warmup_s=0.002, min_time_s=0.005, budget_s=0.01)
    store = ProfileStore(tmp_path / "ds", create=True)

    def ctx(run_id):
        return RunContext(run_id=run_id, device=CpuDevice(), meter=NullMeter("test"), policy=policy)

    _disk_full_after(monkeypatch, 3)
    with pytest.raises(StoreError, match="No space left on device"):
        run_sweep(cases, store, ctx("full-disk"))
    monkeypatch.undo()
    stored = check_union(store.root, _expected(sizes))
    assert (stored.found, stored.skipped_files) == (3, 0)
    report = run_sweep(cases, ProfileStore(store.root, create=True), ctx("resumed"))
    assert (report.skipped, report.measured) == (3, 3)
    union = check_union(store.root, _expected(sizes))
    assert (union.lost, union.duplicated, union.skipped_files) == (0, 0, 0)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 320 KiB tmpfs (root only), unmounted afterwards."""
    import os

    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected ENOSPC tests cover the code path")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_collecting_onto_a_real_full_tmpfs_exits_2_in_one_line_then_resumes_when_space_returns(tiny_tmpfs):
    ds = tiny_tmpfs / "ds"
    sizes = [8 + 4 * i for i in range(40)]
    full = subprocess.run(collect_command(ds, sizes), capture_output=True, text=True)
    assert full.returncode == 2, full.stderr
    assert "No space left on device" in full.stderr and "Traceback" not in full.stderr
    assert len(full.stderr.strip().splitlines()) == 1
    stored = check_union(ds, _expected(sizes))
    assert 0 < stored.found < len(sizes) and stored.skipped_files == 0 and stored.duplicated == 0
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_tmpfs)], check=True)
    resumed = subprocess.run(collect_command(ds, sizes), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    union = check_union(ds, _expected(sizes))
    assert (union.lost, union.duplicated, union.skipped_files) == (0, 0, 0)
    assert leftovers(ds) == []
    shutil.rmtree(ds)
