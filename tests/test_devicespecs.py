"""The GPU spec table: loading, sources, name resolution, peaks per dtype."""

from __future__ import annotations

import subprocess
import sys

import pytest

from perfscope.devices.registry import device_spec, find_device_spec
from perfscope.devicespecs import DTYPE_PEAK_COLUMN, load_device_specs, parse_device_specs, peak_flops_per_s
from perfscope.dtypes import DTYPES
from perfscope.errors import InvalidInputError, UnsupportedConfigError

REQUIRED_IDS = ("v100-sxm2-32gb", "t4", "a10", "a100-40gb-sxm", "a100-80gb-sxm", "l4", "l40s", "rtx-3090",
                "rtx-4070", "rtx-4090", "h100-sxm", "h100-pcie", "h200-sxm", "b200")


def test_the_table_loads_with_every_required_device():
    specs = load_device_specs()
    assert set(REQUIRED_IDS) <= set(specs)
    assert all(spec.device_id == key for key, spec in specs.items())


def test_every_row_names_its_source_document_and_gives_dense_figures():
    for spec in load_device_specs().values():
        assert "http" in spec.source and spec.source.strip(), spec.device_id
        assert spec.notes, spec.device_id
        assert spec.dense is True, spec.device_id
        assert spec.vendor in ("NVIDIA", "AMD")


def test_figures_are_internally_consistent():
    # catches unit slips (TFLOP/s vs FLOP/s, MB vs bytes) and sparse figures typed as dense
    for spec in load_device_specs().values():
        assert 1e12 < spec.peak_fp32_flops_per_s < 2e14, spec.device_id
        assert 1e11 < spec.mem_bandwidth_bytes_per_s < 2e13, spec.device_id
        assert spec.sm_count is None or 20 <= spec.sm_count <= 320  # SMs, or CUs on AMD
        if spec.l2_bytes is not None:
            assert 2**20 <= spec.l2_bytes < spec.memory_bytes
        peaks = spec.peaks_flops_per_s
        if "fp16" in peaks:
            assert peaks["fp16"] >= peaks["fp32"], spec.device_id
        if "fp8_e4m3" in peaks:
            assert peaks["fp8_e4m3"] >= peaks["fp16"], spec.device_id
        if spec.peak_fp16_acc16_flops_per_s is not None:
            assert spec.peak_fp16_acc16_flops_per_s > spec.peak_fp16_flops_per_s


def test_datasheet_figures_of_two_reference_devices():
    h100 = device_spec("h100-sxm")
    assert (h100.sm_count, h100.l2_bytes) == (132, 50 * 2**20)
    assert h100.mem_bandwidth_bytes_per_s == pytest.approx(3.35e12)
    assert peak_flops_per_s(h100, "bf16") == pytest.approx(989.4e12)
    rtx = device_spec("rtx-4070")  # the GPPerf anchor GPU
    assert (rtx.sm_count, rtx.l2_bytes, rtx.tdp_w) == (46, 36 * 2**20, 200)
    assert peak_flops_per_s(rtx, "fp32") == pytest.approx(29.1e12)
    assert rtx.mem_bandwidth_bytes_per_s == pytest.approx(504e9)


@pytest.mark.parametrize("name, expected", [
    ("H100", "h100-sxm"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("nvidia h100 80gb hbm3", "h100-sxm"),
    ("h100-sxm", "h100-sxm"),
    ("H100 PCIe", "h100-pcie"),
    ("NVIDIA GeForce RTX 4070", "rtx-4070"),
    ("  rtx_4070 ", "rtx-4070"),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb-sxm"),
    ("Tesla T4", "t4"),
    ("NVIDIA L40S", "l40s"),
    ("RTX_Titan", "titan-rtx"),  # a Kernel Tuner cache named after its GPU
    ("Navi 31 [Radeon Pro W7800]", "radeon-pro-w7800"),  # rocm-smi's PCI-database names, by their brackets
    ("Aldebaran/MI200 [Instinct MI250X/MI250]", "mi250x-gcd"),
])
def test_names_and_aliases_resolve_case_insensitively(name, expected):
    assert device_spec(name).device_id == expected


@pytest.mark.parametrize("name", ["H100 NVL", "RTX 4070 Ti", "radeon", "cpu", "Navi 99 [Radeon Mystery]"])
def test_unknown_devices_raise_a_user_error_listing_known_ids(name):
    with pytest.raises(InvalidInputError) as err:
        device_spec(name)
    assert "h100-sxm" in str(err.value) and "rtx-4070" in str(err.value)
    assert find_device_spec(name) is None


def test_peaks_for_every_dtype_name():
    h100 = device_spec("H100")
    assert set(h100.peaks_flops_per_s) == set(DTYPES)
    assert peak_flops_per_s(h100, "fp8_e4m3") == peak_flops_per_s(h100, "fp8_e5m2") == pytest.approx(1978.9e12)
    assert h100.peak_flops_per_s("tf32") == pytest.approx(494.7e12)
    assert set(DTYPE_PEAK_COLUMN) == set(DTYPES)


@pytest.mark.parametrize("device, dtype", [("a100-80gb-sxm", "fp8_e4m3"), ("rtx-3090", "fp8_e5m2"),
                                           ("v100-sxm2-32gb", "bf16"), ("t4", "tf32"), ("rtx-4070", "fp16")])
def test_a_missing_peak_is_an_unsupported_config(device, dtype):
    with pytest.raises(UnsupportedConfigError, match=dtype):
        peak_flops_per_s(device_spec(device), dtype)


def test_an_unknown_dtype_name_is_a_user_error():
    with pytest.raises(InvalidInputError, match="fp64"):
        peak_flops_per_s(device_spec("H100"), "fp64")


def test_the_rtx_4070_notes_say_why_its_tensor_peaks_are_empty():
    rtx = device_spec("rtx-4070")
    assert set(rtx.peaks_flops_per_s) == {"fp32"}
    assert "EMPTY" in rtx.notes and "calibrate" in rtx.notes


def _table(*rows: str) -> str:
    header = ("device_id,name,aliases,vendor,architecture,compute_capability,sm_count,l2_bytes,memory_bytes,"
              "mem_bandwidth_bytes_per_s,tdp_w,peak_fp32_flops_per_s,peak_tf32_flops_per_s,peak_fp16_flops_per_s,"
              "peak_fp16_acc16_flops_per_s,peak_bf16_flops_per_s,peak_fp8_flops_per_s,dense,source,notes")
    return "\n".join((header, *rows)) + "\n"


def test_parse_rejects_repeated_ids_and_bad_numbers_and_missing_columns():
    row = "x,X,,NVIDIA,A,8.0,10,1048576,1073741824,1e11,100,1e12,,,,,,true,doc <http://x>,n"
    assert parse_device_specs(_table(row))[0].peak_fp32_flops_per_s == 1e12
    with pytest.raises(InvalidInputError, match="repeated"):
        parse_device_specs(_table(row, row))
    with pytest.raises(InvalidInputError, match="line 2"):
        parse_device_specs(_table(row.replace("1e12", "fast")))
    with pytest.raises(InvalidInputError, match="lacks columns"):
        parse_device_specs("device_id,name\nx,X\n")


def test_resolving_a_device_stays_off_pandas_and_torch():
    code = ("import sys, perfscope.devices.registry as d; d.device_spec('NVIDIA H100 80GB HBM3'); "
            "print(sorted(m for m in ('pandas', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_names_as_drivers_report_them_resolve_and_the_vendor_gives_the_kind():
    from perfscope.devices.registry import device_kind_for

    assert find_device_spec("NVIDIA A100-PCIE-40GB").device_id == "a100-40gb-pcie"
    assert find_device_spec("A100 SXM4 80GB").device_id == "a100-80gb-sxm"
    assert find_device_spec("AMD Radeon PRO W7800").vendor == "AMD"
    assert device_kind_for("AMD Instinct MI250X") == "rocm" and device_kind_for("NVIDIA RTX A4000") == "cuda"
    assert device_kind_for("Radeon RX 7900 XTX") == "rocm" and device_kind_for("") == "gpu"
