"""Peaks declared at import (--peak-flops, --bandwidth) and the fp32 math mode an import declares."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from perfscope.columns import as_columns
from perfscope.devices.declared import declared_devices
from perfscope.errors import InvalidInputError
from perfscope.importers import import_kernel_tuner
from perfscope.importers.declared import declared_columns, parse_rate
from perfscope.models.efficiency import roofline_columns
from tests.test_kernel_tuner_import import ANCHORS, _cache

NO_SPEC = "Mystery GPU 9000"  # no spec row, no calibrated profile
FLOPS = "2 * problem_size_0 * problem_size_1"


@pytest.mark.parametrize("text, value", [("19.5e12", 19.5e12), ("19.5T", 19.5e12), ("900 G", 9e11),
                                         ("1.5e3k", 1.5e6), (2.5e12, 2.5e12)])
def test_rates_take_plain_numbers_and_si_prefixes(text, value):
    assert parse_rate(text, "--peak-flops") == pytest.approx(value)


@pytest.mark.parametrize("text", ["fast", "19.5X", "-3T", "0", "inf", "1e999"])
def test_bad_rates_are_refused_naming_the_option(text):
    with pytest.raises(InvalidInputError, match="--bandwidth"):
        parse_rate(text, "--bandwidth")


def test_the_math_mode_is_declared_only_where_it_means_something():
    assert declared_columns("fp32") == {}
    assert declared_columns("tf32") == {"fp32_math": "tf32"}
    assert declared_columns("fp32", fp32_math="tf32", peak_flops="156T") == {
        "fp32_math": "tf32", "declared_peak_flops_per_s": 156e12}
    with pytest.raises(InvalidInputError, match="fp32 rows"):
        declared_columns("fp16", fp32_math="tf32")
    with pytest.raises(InvalidInputError, match="contradicts"):
        declared_columns("tf32", fp32_math="ieee")


def _features(table):
    return roofline_columns(as_columns(table.to_pydict()))


def test_features_of_a_device_without_a_spec_row_use_the_declared_peaks(tmp_path):
    table = import_kernel_tuner(_cache(tmp_path / "c.json", device_name=NO_SPEC), flops=FLOPS,
                                peak_flops="19.5T", bandwidth="1.5e12")
    rows = table.to_pylist()
    assert {r["declared_peak_flops_per_s"] for r in rows} == {19.5e12}
    assert {r["declared_bandwidth_bytes_per_s"] for r in rows} == {1.5e12}
    assert {r["fp32_math"] for r in rows} == {None}  # not declared: unknown
    features = _features(table)
    assert set(features["device_source"]) == {"declared"}
    np.testing.assert_allclose(features["peak_flops_per_s"], 19.5e12)
    np.testing.assert_allclose(features["mem_bandwidth_bytes_per_s"], 1.5e12)
    assert set(features["peak_used"]) == {"fp32"}
    np.testing.assert_allclose(features["compute_time_s"], 2 * 1000 * 64 / 19.5e12)


def test_a_declared_tf32_import_declares_the_tf32_peak(tmp_path):
    table = import_kernel_tuner(_cache(tmp_path / "c.json", device_name=NO_SPEC), flops=FLOPS,
                                fp32_math="tf32", peak_flops="156T", bandwidth="1.5T")
    assert {r["fp32_math"] for r in table.to_pylist()} == {"tf32"}
    (device,) = declared_devices(as_columns(table.to_pydict())).values()
    assert device.peaks_flops_per_s == {"tf32": 156e12}
    features = _features(table)
    assert set(features["peak_used"]) == {"tf32"}
    np.testing.assert_allclose(features["peak_flops_per_s"], 156e12)


def test_a_spec_row_wins_over_declared_peaks(tmp_path):
    table = import_kernel_tuner(_cache(tmp_path / "c.json", device_name="NVIDIA RTX A4000"), flops=FLOPS,
                                peak_flops="1T", bandwidth="1T")
    features = _features(table)
    assert set(features["device_source"]) == {"spec"}
    np.testing.assert_allclose(features["peak_flops_per_s"], 19.2e12)  # data/devices.csv, rtx-a4000


def test_without_declared_peaks_the_error_says_how_to_give_them(tmp_path):
    table = import_kernel_tuner(_cache(tmp_path / "c.json", device_name=NO_SPEC), flops=FLOPS)
    with pytest.raises(InvalidInputError, match="--peak-flops"):
        _features(table)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "perfscope", "import", "kernel-tuner", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_the_cli_stores_the_declarations_and_says_when_they_are_not_used(tmp_path):
    from perfscope.store import ProfileStore

    done = _cli(_cache(tmp_path / "c.json", device_name=NO_SPEC), "-o", tmp_path / "ds", "--fp32-math", "tf32",
                "--peak-flops", "156T", "--bandwidth", "1.5T", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 12 and "note:" not in done.stderr
    table = ProfileStore(tmp_path / "ds").read().table
    assert set(table.column("fp32_math").to_pylist()) == {"tf32"}
    assert set(table.column("declared_peak_flops_per_s").to_pylist()) == {156e12}
    spec = _cli(_cache(tmp_path / "s.json"), "-o", tmp_path / "ds2", "--peak-flops", "1T")
    assert spec.returncode == 0 and "note: NVIDIA RTX A4000 has a spec row (rtx-a4000)" in spec.stderr
    for bad, message in ((("--fp32-math", "fast"), "ieee or tf32"), (("--peak-flops", "lots"), "--peak-flops")):
        refused = _cli(_cache(tmp_path / "b.json"), "-o", tmp_path / "ds3", *bad)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
@pytest.mark.skipif(not ANCHORS.is_dir(), reason="Kernel Tuner anchor caches not present")
def test_a_shipped_cache_renamed_to_an_unknown_gpu_uses_its_declared_peaks():
    table = import_kernel_tuner(ANCHORS / "W6600.json.gz", device_name=NO_SPEC, fp32_math="ieee",
                                peak_flops="10.4T", bandwidth="224G", flops="problem_size_0 * problem_size_1")
    assert table.num_rows == 11_130
    features = _features(table)
    assert set(features["device_source"]) == {"declared"} and set(features["peak_used"]) == {"fp32"}
    np.testing.assert_allclose(features["mem_bandwidth_bytes_per_s"], 224e9)


def test_the_dashboard_bounds_a_declared_device_by_its_declared_peaks(tmp_path):
    from perfscope.dashboards.data import DashboardData
    from perfscope.importers import write_imported

    write_imported(import_kernel_tuner(_cache(tmp_path / "c.json", device_name=NO_SPEC), flops=FLOPS,
                                       bytes_moved="4 * problem_size_0 * problem_size_1", fp32_math="tf32",
                                       peak_flops="156T", bandwidth="1.5T"), tmp_path / "ds")
    data = DashboardData.load([tmp_path / "ds"])
    (info,) = data.devices.values()
    assert info.used.source_kind == "declared" and "declared at import" in info.note
    np.testing.assert_allclose(data.rows["peak_flops_per_s"], 156e12)
    np.testing.assert_allclose(data.rows["memory_time_s"], 4 * 1000 * 64 / 1.5e12)
    assert data.rows["bound_time_s"].notna().all()


def test_a_csv_import_takes_the_math_mode_and_figures_as_columns(tmp_path):
    from perfscope.importers import import_csv

    path = tmp_path / "t.csv"
    path.write_text("M,dtype,mode,ms\n512,fp32,tf32,0.1\n512,fp16,tf32,0.1\n512,fp32,,0.2\n")
    defaults = {"kernel": "gemm", "implementation": "cublas", "device_name": NO_SPEC, "n": 512, "k": 512,
                "declared_peak_flops_per_s": 156e12}
    rows = import_csv(path, {"m": "M", "dtype": "dtype", "fp32_math": "mode", "time_median_ms": "ms"},
                      defaults=defaults).to_pylist()
    assert [r["fp32_math"] for r in rows] == ["tf32", None, None]  # says nothing of fp16; empty: unknown
    assert {r["declared_peak_flops_per_s"] for r in rows} == {156e12}
    path.write_text("M,dtype,mode,ms\n512,fp32,fast,0.1\n")
    with pytest.raises(InvalidInputError, match="line 2.*ieee or tf32"):
        import_csv(path, {"m": "M", "dtype": "dtype", "fp32_math": "mode", "time_median_ms": "ms"},
                   defaults=defaults)


@pytest.mark.slow
def test_an_estimate_with_a_model_knows_a_device_only_by_its_declared_peaks(tmp_path):
    from perfscope.importers import write_imported
    from perfscope.workflows.estimate import estimate
    from perfscope.workflows.train import train

    entries = {f"{bx},{by},{tx}": {"block_size_x": bx, "block_size_y": by, "tile_size_x": tx,
                                   "time": 0.1 * bx + tx + 0.01 * by, "times": [0.1 * bx + tx + 0.01 * by] * 3}
               for bx in (16, 32, 64, 128) for by in (8, 16, 32) for tx in (1, 2, 4)}
    for size in (512, 1024):
        write_imported(import_kernel_tuner(_cache(tmp_path / f"c{size}.json", device_name=NO_SPEC, kernel_name="matmul",
                                                  problem_size=(size, size, size), entries=entries),
                                           peak_flops="19.5T", bandwidth="1.5T"), tmp_path / "ds")
    train(tmp_path / "ds", out_dir=tmp_path / "model")
    with pytest.raises(InvalidInputError, match="unknown device"):
        estimate("gemm", NO_SPEC, "fp32", m=768, n=768, k=768)  # no model: nothing declares it
    result = estimate("gemm", NO_SPEC, "fp32", model=tmp_path / "model", m=768, n=768, k=768)
    assert (result["device_source"], result["peak_used"], result["peak_flops_per_s"]) == ("declared", "fp32", 19.5e12)
    assert result["bound_time_s"] == pytest.approx(2 * 768**3 / 19.5e12)
    assert result["method"].startswith("model:") and result["latency_s"] > 0
