from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perfscope.collectors.filters import Filter
from perfscope.collectors.protocol import case_config_id
from perfscope.collectors.spec import expand, load_spec, parse_shard, parse_spec, plan, shard
from perfscope.collectors.specs import preset_names
from perfscope.errors import InvalidInputError
from perfscope.store import ProfileStore


def _spec(**sweep):
    return parse_spec({"name": "t", "sweeps": [{"kernel": "gemm", **sweep}]})


def test_a_spec_expands_axes_and_applies_filters():
    spec = _spec(axes={"sizes": [8, 16, 32], "batch": [1, 2], "dtype": ["fp32", "bf16"]},
                 filters=["batch * m * n * k <= 2 * 16**3", "dtype != 'bf16' or m == 8"])
    got = {(c.batch, c.m, c.dtype) for c in expand(spec)}
    assert got == {(1, 8, "fp32"), (2, 8, "fp32"), (1, 16, "fp32"), (2, 16, "fp32"),
                   (1, 8, "bf16"), (2, 8, "bf16")}


def test_repeated_configurations_appear_once():
    spec = parse_spec({"sweeps": [{"kernel": "gemm", "axes": {"sizes": [8]}},
                                  {"kernel": "gemm", "axes": {"shapes": [[8, 8, 8]]}}]})
    assert len(expand(spec)) == 1


@pytest.mark.parametrize("data,message", [
    ({"sweeps": []}, "no sweeps"),
    ({"sweeps": [{"axes": {}}]}, "needs a 'kernel'"),
    ({"sweeps": [{"kernel": "gemm"}], "colour": 1}, "unknown keys"),
    ({"sweeps": [{"kernel": "gemm", "axis": {}}]}, "unknown keys"),
    ({"sweeps": [{"kernel": "gemm"}], "timing": {"warmup": 1}}, "bad timing"),
    ({"sweeps": [{"kernel": "gemm"}], "time_budget_s": -1}, "time_budget_s"),
    ([1, 2], "a spec is a mapping"),
])
def test_bad_specs_say_what_is_wrong(data, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_spec(data)


def test_unknown_family_and_implementation_are_user_errors():
    with pytest.raises(InvalidInputError, match="unknown kernel family"):
        expand(parse_spec({"sweeps": [{"kernel": "fft"}]}))
    with pytest.raises(InvalidInputError, match="unknown implementation"):
        expand(parse_spec({"sweeps": [{"kernel": "gemm", "implementation": "cublas-lt"}]}))


def test_filters_allow_arithmetic_and_refuse_code():
    assert Filter("m * n <= 2**10 and dtype in ('fp32', 'bf16')")({"m": 16, "n": 64, "dtype": "fp32"})
    assert not Filter("not (m == 16)")({"m": 16})
    assert not Filter("tile_m < 4")({"tile_m": None})  # a missing value never passes a comparison
    for bad in ("__import__('os').system('true')", "m.bit_length()", "[x for x in m]", "lambda: 1"):
        with pytest.raises(InvalidInputError, match="not allowed|bad filter"):
            Filter(bad)
    with pytest.raises(InvalidInputError, match="names 'q'"):
        Filter("q > 1")({"m": 1})


def test_shards_partition_the_grid_deterministically():
    cases = expand(_spec(axes={"sizes": list(range(8, 72, 4)), "dtype": ["fp32", "bf16"]}))
    parts = [shard(cases, i, 3) for i in range(3)]
    ids = [case_config_id(c) for part in parts for c in part]
    assert sorted(ids) == sorted(case_config_id(c) for c in cases) and len(ids) == len(set(ids))
    assert all(parts) and parts == [shard(cases, i, 3) for i in range(3)]
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "-1/2", "a/b", "1"):
        with pytest.raises(InvalidInputError):
            parse_shard(bad)


def test_plan_counts_groups_and_bounds_the_duration():
    spec = parse_spec({"timing": {"warmup_s": 0.1, "min_time_s": 0.2, "budget_s": 1.0},
                       "sweeps": [{"kernel": "gemm", "axes": {"sizes": [8, 16], "dtype": ["fp32", "bf16"]}}]})
    cases = expand(spec)
    p = plan(spec, cases, already_measured={case_config_id(cases[0])})
    assert p.total == 4 and p.by_group == {"gemm torch.matmul": 4} and p.already_measured == 1
    assert p.min_s == pytest.approx(3 * 0.3) and p.max_s == pytest.approx(3 * 1.1)


@pytest.mark.slow  # about 8 s: the full preset is 82,056 configurations
def test_every_shipped_preset_loads_and_expands():
    assert {"quick", "default", "full", "gpperf"} <= set(preset_names())
    for name in preset_names():
        spec = load_spec(name)
        assert spec.sweeps and spec.description
        # a filter naming an unknown field fails here, not on a user's GPU
        assert len(expand(spec)) > 0


def test_a_yaml_spec_file_is_read(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nsweeps:\n  - kernel: gemm\n    axes: {sizes: [8, 16]}\n")
    assert [c.m for c in expand(load_spec(path))] == [8, 16]
    path.write_text("sweeps: [unclosed\n")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        load_spec(path)


FAST = ["--warmup-s", "0.01", "--min-time-s", "0.02", "--budget-s", "0.05", "--energy", "none", "--quiet", "--json"]
GRID = ["--size", "8,12,16,20,24", "--dtype", "fp32,bf16"]


def _collect(*args):
    run = subprocess.run([sys.executable, "-m", "perfscope", "collect", "gemm", *GRID, *FAST, *map(str, args)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _ids(ds):
    table = ProfileStore(ds).read().table
    ids = table.column("config_id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicate rows"
    return set(ids)


@pytest.mark.slow
def test_sharded_runs_union_to_the_single_process_run(tmp_path):
    _collect("--out", tmp_path / "single")
    for i in range(3):
        _collect("--out", tmp_path / "sharded", "--shard", f"{i}/3")
    assert _ids(tmp_path / "sharded") == _ids(tmp_path / "single")
    assert len(_ids(tmp_path / "single")) == 10


@pytest.mark.slow
def test_ray_workers_union_to_the_single_process_run(tmp_path):
    _collect("--out", tmp_path / "single")
    summary = _collect("--out", tmp_path / "ray", "--executor", "ray", "--workers", "2", "--device", "cpu")
    assert summary["measured"] == 10
    assert _ids(tmp_path / "ray") == _ids(tmp_path / "single")
    runs = set(ProfileStore(tmp_path / "ray").read().table.column("run_id").to_pylist())
    assert len(runs) == 2  # each worker wrote its own run


@pytest.mark.slow
def test_a_time_budget_stops_starting_cases_and_a_rerun_resumes(tmp_path):
    first = _collect("--out", tmp_path / "ds", "--time-budget-s", "0.001")
    assert first["left_by_time_budget"] >= 9 and first["measured"] + first["left_by_time_budget"] == 10
    second = _collect("--out", tmp_path / "ds")
    assert second["skipped_already_measured"] == first["measured"]
    assert second["measured"] == first["left_by_time_budget"] and second["left_by_time_budget"] == 0
