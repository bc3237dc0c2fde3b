"""Which peak bounds a row: fp32 with TF32 math uses the TF32 tensor peak, and says so."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from perfscope.devices.registry import find_device_spec
from perfscope.errors import InvalidInputError
from perfscope.roofline import feature_columns
from perfscope.workflows.estimate import estimate

H100_FP32 = 66.9e12  # data/devices.csv, h100-sxm
H100_TF32 = 494.7e12


def _rows(dtypes, modes):
    n = len(dtypes)
    return {"kernel": np.array(["gemm"] * n, dtype=object), "dtype": np.array(dtypes, dtype=object),
            "fp32_math": np.array(modes, dtype=object), "m": np.full(n, 4096), "n": np.full(n, 4096),
            "k": np.full(n, 4096)}


def test_features_pick_the_peak_of_the_math_mode_and_name_it():
    spec = find_device_spec("h100-sxm")
    out = feature_columns(_rows(["fp32", "fp32", "fp32", "bf16", "tf32"], ["tf32", "ieee", None, "tf32", "tf32"]),
                          spec)
    np.testing.assert_allclose(out["peak_flops_per_s"], [H100_TF32, H100_FP32, H100_FP32, 989.4e12, H100_TF32])
    assert list(out["peak_used"]) == ["tf32", "fp32", "fp32", "bf16", "tf32"]
    np.testing.assert_allclose(out["compute_time_s"][:2], 2 * 4096**3 / np.array([H100_TF32, H100_FP32]))


def test_tf32_math_on_a_gpu_without_tf32_keeps_the_fp32_peak():
    out = feature_columns(_rows(["fp32"], ["tf32"]), find_device_spec("t4"))
    assert out["peak_flops_per_s"][0] == pytest.approx(8.1e12) and out["peak_used"][0] == "fp32"


def test_rows_without_the_column_use_their_dtype_peak_and_unknown_peaks_name_none():
    rows = _rows(["fp32", "fp8_e4m3"], [None, None])
    del rows["fp32_math"]
    out = feature_columns(rows, find_device_spec("a100-80gb-sxm"))  # no fp8 on Ampere
    assert out["peak_used"][0] == "fp32" and out["peak_used"][1] is None
    assert np.isnan(out["peak_flops_per_s"][1])


def test_an_fp32_estimate_with_tf32_math_on_an_h100_uses_the_tf32_peak_and_says_so():
    shape = {"m": 8192, "n": 8192, "k": 8192}
    tf32 = estimate("gemm", "h100-sxm", "fp32", fp32_math="tf32", **shape)
    plain = estimate("gemm", "h100-sxm", "fp32", **shape)
    assert (tf32["peak_used"], tf32["peak_flops_per_s"], tf32["fp32_math"]) == ("tf32", H100_TF32, "tf32")
    assert (plain["peak_used"], plain["peak_flops_per_s"]) == ("fp32", H100_FP32)
    assert tf32["bound_time_s"] == pytest.approx(2 * 8192**3 / H100_TF32)
    assert plain["latency_s"] / tf32["latency_s"] == pytest.approx(H100_TF32 / H100_FP32, rel=0.05)
    with pytest.raises(InvalidInputError, match="ieee or tf32"):
        estimate("gemm", "h100-sxm", "fp32", fp32_math="fast", **shape)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "perfscope", "estimate", "gemm", "--m", "4096", "--n", "4096",
                           "--k", "4096", "--device", "h100-sxm", *args], capture_output=True, text=True, timeout=120)


def test_the_cli_names_the_peak_in_text_and_json():
    text = _cli("--fp32-math", "tf32")
    assert text.returncode == 0, text.stderr
    assert "peak        tf32 494.7 TFLOP/s (fp32 with tf32 math: TF32 tensor peak)" in text.stdout
    unknown = _cli()
    assert "fp32 66.9 TFLOP/s (fp32 math mode unknown: FP32 peak)" in unknown.stdout
    data = json.loads(_cli("--fp32-math", "tf32", "--json").stdout)
    assert data["peak_used"] == "tf32" and data["peak_flops_per_s"] == H100_TF32
    bad = _cli("--fp32-math", "fast")
    assert bad.returncode == 2 and "ieee or tf32" in bad.stderr and "Traceback" not in bad.stderr
