"""Imports validate values: impossible ones make error rows with a precise reason, doubtful
readings become null with the reason kept, malformed files exit 2 in one line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from test_importers import CUTLASS_HEADER, _cutlass_row  # tests/ is on sys.path (rootdir import mode)

from perfscope.errors import InvalidInputError
from perfscope.importers import import_csv, import_gpperf
from perfscope.importers.common import assemble_table
from perfscope.importers.values import check_values

MAPPING = {"m": "m", "n": "n", "k": "k", "time_median_ms": "t", "power_avg_w": "p", "energy_gross_j": "e",
           "temperature_c_before": "temp", "samples_ms": "samples"}
DEFAULTS = {"kernel": "gemm", "implementation": "x", "dtype": "fp32", "device_name": "G"}
HEADER = ["m", "n", "k", "t", "p", "e", "temp", "samples"]


def _csv(tmp_path, rows, name="data.csv", header=HEADER):
    path = tmp_path / name
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "perfscope", *args], capture_output=True, text=True, timeout=120)


def _csv_args(path, out, *extra):
    maps = [a for name, column in MAPPING.items() for a in ("--map", f"{name}={column}")]
    defaults = [a for name, value in DEFAULTS.items() for a in ("--default", f"{name}={value}")]
    return ("import", "csv", str(path), *maps, *defaults, "-o", str(out), *extra)


def test_impossible_values_make_error_rows_with_precise_reasons(tmp_path):
    path = _csv(tmp_path, [
        [64, 64, 64, 0.5, 100, 0.05, 60, ""],  # fine
        [64, 64, 128, -1, 100, "", 60, ""],
        [64, 64, 256, 0, 100, "", 60, ""],
        [64, 128, 64, "inf", 100, "", 60, ""],
        [128, 64, 64, "nan", 100, "", 60, ""],
        [128, 128, 64, 0.5, -5, "", 60, ""],
        [128, 64, 128, 0.5, 100, -0.05, 60, ""],
        [128, 128, 128, 0.5, 100, "", 60, "[1e300]"],
        [256, 128, 128, 0.5, 100, "", 60, "[0.5, -0.1]"],
    ])
    rows = import_csv(path, MAPPING, defaults=DEFAULTS).to_pylist()
    ok, negative, zero, inf, nan, power, energy, huge, negative_sample = rows
    assert ok["status"] == "ok" and ok["reason"] is None
    expected = [(negative, "time_median_ms = -1"), (zero, "time_median_ms = 0"), (inf, "time_median_ms is inf"),
                (nan, "time_median_ms is nan"), (power, "power_avg_w = -5"), (energy, "energy_gross_j = -0.05"),
                (huge, "samples_ms holds 1e+300"), (negative_sample, "samples_ms holds -0.1")]
    for row, text in expected:
        assert row["status"] == "error", row
        assert text in row["reason"] and "no time" not in row["reason"], row["reason"]
    assert negative["time_median_ms"] is None and huge["samples_ms"] is None and power["power_avg_w"] is None
    assert all(r["achieved_flops_per_s"] is None for r in (negative, zero, inf, nan))


def test_doubtful_readings_become_null_and_the_reason_says_so(tmp_path):
    path = _csv(tmp_path, [[64, 128, 128, 0.5, 1e308, "", -300, ""]])
    (row,) = import_csv(path, MAPPING, defaults=DEFAULTS).to_pylist()
    assert row["status"] == "ok" and row["time_median_ms"] == 0.5
    assert row["power_avg_w"] is None and row["temperature_c_before"] is None
    assert row["energy_gross_j"] is None  # not derived from the dropped power
    assert "temperature_c_before = -300 C" in row["reason"] and "power_avg_w = 1e+308 W" in row["reason"]


def test_every_importer_gets_the_checks_through_assemble_table():
    rows = [{"kernel": "gemm", "implementation": "kt", "dtype": "fp32", "device_name": "G", "device_key": "cuda-g",
             "device_kind": "cuda", "cache_mode": "unknown", "config_id": f"c{i}", "run_id": "r", "source": "s",
             "measured_at": None, "status": "ok", "time_median_ms": t, "samples_ms": [t]}
            for i, t in enumerate([1.0, -2.0, float("inf")])]
    rows[0]["measured_at"] = rows[1]["measured_at"] = rows[2]["measured_at"] = __import__("datetime").datetime.now()
    table = assemble_table(rows, {})
    assert table.column("status").to_pylist() == ["ok", "error", "error"]
    assert table.column("time_median_ms").to_pylist() == [1.0, None, None]


def test_check_values_is_idempotent():
    row = {"status": "ok", "time_median_ms": -1.0, "temperature_c_after": 500.0}
    once = dict(check_values(row))
    assert check_values(row) == once and once["status"] == "error"
    assert once["reason"].count("impossible") == 1 and "temperature_c_after = 500 C" in once["reason"]


def test_the_summary_counts_rows_by_status(tmp_path):
    path = _csv(tmp_path, [[64, 64, 64, 0.5, 100, "", 60, ""], [64, 64, 128, -1, 100, "", 60, ""],
                           [64, 64, 256, 0.7, 100, "", 60, ""]])
    done = _cli(*_csv_args(path, tmp_path / "ds", "--json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["by_status"] == {"ok": 2, "error": 1}
    text = _cli(*_csv_args(path, tmp_path / "ds2"))
    assert "(2 ok, 1 error)" in text.stdout


def _one_line_exit_2(done):
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_a_header_only_csv_is_a_clean_message(tmp_path):
    path = _csv(tmp_path, [])
    err = _one_line_exit_2(_cli(*_csv_args(path, tmp_path / "ds")))
    assert "no rows" in err and "imported 0 rows" not in err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("cells, extra, message", [
    ([64, 64, 64, 0.5, 100, "", 60, "[" * 50_000 + "]" * 50_000], (), "nested too deeply"),
    ([2**40, 2**40, 2**40, 0.5, 100, "", 60, ""], (), "int64"),
])
def test_malformed_csv_files_exit_2_with_one_line(tmp_path, cells, extra, message):
    path = _csv(tmp_path, [cells])
    assert message in _one_line_exit_2(_cli(*_csv_args(path, tmp_path / "ds", *extra)))


def test_a_timestamp_of_1e20_is_one_line(tmp_path):
    path = _csv(tmp_path, [[64, 64, 64, 0.5, 100, "", 60, "", "1e20"]], header=[*HEADER, "when"])
    with pytest.raises(InvalidInputError, match="measured_at"):
        import_csv(path, {**MAPPING, "measured_at": "when"}, defaults=DEFAULTS)
    cutlass = tmp_path / "cutlass_results.csv"
    with open(cutlass, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CUTLASS_HEADER)
        writer.writeheader()
        writer.writerow(_cutlass_row(timestamp="1e20"))
    with pytest.raises(InvalidInputError, match="timestamp"):
        import_gpperf(cutlass)
    _one_line_exit_2(_cli("import", "gpperf", str(cutlass), "-o", str(tmp_path / "ds")))
