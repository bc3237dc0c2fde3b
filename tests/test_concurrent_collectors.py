"""Several collectors writing one dataset at once share the grid: nothing twice, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perfscope.store import ProfileStore
from perfscope.store_locks import Claim, ConfigClaims

FAST = ["--warmup-s", "0.005", "--min-time-s", "0.01", "--budget-s", "0.02", "--energy", "none", "--threads", "1"]
SIZES = "8,12,16,20,24,28,32,36,40,44,48,52"


def test_a_configuration_claimed_elsewhere_is_busy_then_done(tmp_path):
    mine, theirs = ConfigClaims(tmp_path, "cpu-x"), ConfigClaims(tmp_path, "cpu-x")
    claim = mine.claim("ab12")
    assert isinstance(claim, Claim)
    assert theirs.claim("ab12") == ConfigClaims.BUSY
    assert theirs.claim("ab99") == ConfigClaims.BUSY  # same slot (first two hex digits)
    claim.release(done=True)
    assert theirs.claim("ab12") == ConfigClaims.DONE
    dropped = theirs.claim("cd34")
    dropped.release(done=False)  # not stored (the measurement failed): free for anyone
    assert isinstance(again := mine.claim("cd34"), Claim)
    again.release(done=False)


def test_what_was_recorded_before_a_sweep_started_is_not_counted_as_done(tmp_path):
    first = ConfigClaims(tmp_path, "cpu-x")
    first.claim("ab12").release(done=True)
    later = ConfigClaims(tmp_path, "cpu-x")  # a later sweep judges old rows from the data itself
    claim = later.claim("ab12")
    assert isinstance(claim, Claim)
    claim.release(done=False)


@pytest.mark.slow
def test_three_collectors_on_one_grid_measure_each_configuration_once(tmp_path):
    ds = tmp_path / "ds"
    args = [sys.executable, "-m", "perfscope", "collect", "gemm", "--size", SIZES, "--dtype", "fp32",
            "--out", str(ds), "--json", *FAST]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    summaries = [json.loads(out) for out, _ in outputs]
    table = ProfileStore(ds).read(["run_id", "config_id", "m"]).table
    ids = table.column("config_id").to_pylist()
    assert len(ids) == len(set(ids)) == 12  # every configuration once, in one run only
    assert sorted(table.column("m").to_pylist()) == [int(s) for s in SIZES.split(",")]
    assert sum(s["measured"] for s in summaries) == 12
    for s in summaries:  # each configuration is accounted for by every collector
        assert s["measured"] + s["left_to_other_collectors"] + s["skipped_already_measured"] == 12
