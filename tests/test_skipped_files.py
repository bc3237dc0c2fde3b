"""``train``, ``evaluate`` and the dashboard name every data file they had to skip, count
them in ``--json``, and fail with ``--strict``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "cpu-quick"


def perfscope(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "perfscope", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def damaged(tmp_path):
    """The shipped CPU sample with 40 bytes of its conv file overwritten."""
    ds = tmp_path / "ds"
    shutil.copytree(SAMPLE, ds)
    (conv,) = ds.glob("device=*/kernel=conv/*.parquet")
    data = bytearray(conv.read_bytes())
    data[300:340] = bytes(40)
    conv.write_bytes(bytes(data))
    return ds, conv


def test_train_strict_refuses_a_dataset_with_a_skipped_file_before_training(damaged, tmp_path):
    ds, conv = damaged
    run = perfscope("train", ds, "--kernel", "gemm", "--out", tmp_path / "model", "--strict")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    warning, error = run.stderr.strip().splitlines()
    assert warning.startswith(f"warning: skipped {conv}: corrupt Parquet data")
    assert error.startswith("perfscope: error: --strict: 1 file(s) skipped")
    assert not (tmp_path / "model").exists()


def test_the_dashboard_warns_about_skipped_files_and_strict_fails(damaged):
    ds, conv = damaged
    run = perfscope("dashboard", ds, "--check")
    assert run.returncode == 0 and f"warning: skipped {conv}" in run.stderr
    assert perfscope("dashboard", ds, "--check", "--strict").returncode == 2


def test_the_library_reader_warns_for_each_skipped_file(damaged):
    from perfscope.workflows.train import read_datasets

    ds, conv = damaged
    with pytest.warns(UserWarning, match=f"skipped {conv}"):
        rows = read_datasets(ds)
    assert set(rows["kernel"]) == {"gemm", "attention"}


@pytest.mark.slow
def test_evaluate_counts_skipped_files_in_json(damaged):
    ds, conv = damaged
    run = perfscope("evaluate", ds, "--kernel", "gemm", "--folds", "2", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["files_read"], summary["files_skipped"]) == (2, 1)
    assert summary["skipped_files"][0]["path"] == str(conv) and summary["results"]
    assert f"warning: skipped {conv}" in run.stderr
