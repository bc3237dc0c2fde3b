"""fp8 GEMM: quantisation helpers, torch._scaled_mm's constraints, and the workload.

torch 2.13 runs ``torch._scaled_mm`` on the CPU (without CUDA's constraints), so the
workload is run for real here on a CPU posing as a compute-capability-9.0 GPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from perfscope.collectors.fp8 import (
    FP8_MAX,
    build_fp8_gemm,
    check_fp8_supported,
    dequantize,
    fp8_gemm_min_bytes,
    fp8_operand_dtypes,
    per_tensor_scale,
    quantize_per_tensor,
    scaled_mm_violations,
)
from perfscope.collectors.gemm import GemmCase
from perfscope.collectors.protocol import RunContext, Workload
from perfscope.devices.base import DeviceDescription
from perfscope.devices.cpu import CpuDevice
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.features import gemm_flops


class _CpuAsCuda(CpuDevice):
    """The CPU posing as a CUDA GPU of a given compute capability."""

    kind = "cuda"

    def __init__(self, compute_capability: str = "9.0") -> None:
        super().__init__()
        self._cc = compute_capability

    def describe(self) -> DeviceDescription:
        return DeviceDescription(kind="cuda", name="CPU standing in for a GPU", compute_capability=self._cc,
                                 last_level_cache_bytes=2**20, memory_bytes=2**33)


def test_operand_formats_pair_e5m2_with_e4m3():
    assert fp8_operand_dtypes("fp8_e4m3") == ("fp8_e4m3", "fp8_e4m3")
    assert fp8_operand_dtypes("fp8_e5m2") == ("fp8_e5m2", "fp8_e4m3")
    with pytest.raises(InvalidInputError):
        fp8_operand_dtypes("bf16")


def test_fp8_max_matches_torch_finfo():
    assert FP8_MAX["fp8_e4m3"] == torch.finfo(torch.float8_e4m3fn).max
    assert FP8_MAX["fp8_e5m2"] == torch.finfo(torch.float8_e5m2).max


def test_per_tensor_scale_maps_amax_to_the_largest_fp8_value():
    assert per_tensor_scale(2.0, "fp8_e4m3") == 2.0 / 448.0
    assert per_tensor_scale(1.0, "fp8_e5m2") == 1.0 / 57344.0
    assert 0 < per_tensor_scale(0.0, "fp8_e4m3") < 1e-12  # all zeros: finite, positive
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(InvalidInputError):
            per_tensor_scale(bad, "fp8_e4m3")
    with pytest.raises(InvalidInputError):
        per_tensor_scale(1.0, "fp16")


@pytest.mark.parametrize("fp8, mantissa_bits", [("fp8_e4m3", 3), ("fp8_e5m2", 2)])
def test_quantise_then_dequantise_is_within_half_an_fp8_step(fp8, mantissa_bits):
    x = torch.linspace(-3.0, 3.0, 1001)
    q, scale = quantize_per_tensor(x, fp8)
    assert q.dtype == (torch.float8_e4m3fn if fp8 == "fp8_e4m3" else torch.float8_e5m2)
    assert scale.dtype == torch.float32 and scale.numel() == 1
    assert q.float().abs().max().item() == FP8_MAX[fp8]  # amax lands on the largest value
    back = dequantize(q, scale)
    # relative rounding of normal numbers is <= 2^-(mantissa+1); tiny values round absolutely
    bound = x.double().abs() * 2.0 ** -(mantissa_bits + 1) + float(scale) * 2.0 ** -9
    assert bool(((back - x.double()).abs() <= bound).all())


def test_scaled_mm_uses_the_scales_as_dequantisation_factors():
    gen = torch.Generator().manual_seed(0)
    a, b_t = torch.rand(32, 48, generator=gen) * 4 - 2, torch.rand(16, 48, generator=gen) * 0.2 - 0.1
    a8, sa = quantize_per_tensor(a, "fp8_e4m3")
    b8, sb = quantize_per_tensor(b_t, "fp8_e4m3")
    out = torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16).double()
    ref = dequantize(a8, sa) @ dequantize(b8, sb).T
    assert (out - ref).abs().max().item() <= 2.0 ** -8 * ref.abs().max().item()  # bf16 output rounding only
    # and near the unquantised product: each factor off by at most 2^-4 (e4m3), the output by 2^-9 (bf16)
    exact, magnitude = a.double() @ b_t.double().T, a.double().abs() @ b_t.double().abs().T
    assert bool(((out - exact).abs() <= magnitude * (2 * 2.0 ** -4 + 2.0 ** -8) + 1e-4).all())


def test_scaled_mm_violations_name_each_constraint():
    assert scaled_mm_violations(8, 32, 64, "fp8_e4m3", "fp8_e4m3") == []  # m need not be aligned
    assert scaled_mm_violations(8, 24, 64, "fp8_e4m3", "fp8_e4m3") == \
        ["torch._scaled_mm needs k and n to be multiples of 16; got n=24"]
    assert "k=40, n=8" in scaled_mm_violations(16, 8, 40, "fp8_e5m2", "fp8_e4m3")[0]
    assert scaled_mm_violations(16, 16, 16, "fp8_e5m2", "fp8_e5m2") == ["cuBLASLt has no fp8_e5m2 x fp8_e5m2 product"]
    assert "batch 4" in scaled_mm_violations(16, 16, 16, "fp8_e4m3", "fp8_e4m3", batch=4)[0]
    assert "column-major" in scaled_mm_violations(16, 16, 16, "fp8_e4m3", "fp8_e4m3", b_column_major=False)[0]


def test_fp8_needs_cuda_and_compute_capability_8_9():
    shape = {"m": 64, "n": 64, "k": 64, "dtype": "fp8_e4m3"}
    with pytest.raises(UnsupportedConfigError, match="needs a CUDA GPU with compute capability >= 8.9; this is a cpu"):
        check_fp8_supported("cpu", None, **shape)
    with pytest.raises(UnsupportedConfigError, match="this GPU has 8.6"):
        check_fp8_supported("cuda", "8.6", **shape)
    check_fp8_supported("cuda", "8.9", **shape)
    check_fp8_supported("cuda", "10.0", **shape)  # compared as numbers, not text
    with pytest.raises(UnsupportedConfigError, match="batch 2 .*; .*multiples of 16; got k=40"):
        check_fp8_supported("cuda", "9.0", m=64, n=64, k=40, dtype="fp8_e5m2", batch=2)


def test_build_refuses_the_real_cpu_and_unaligned_shapes():
    with pytest.raises(UnsupportedConfigError, match="this is a cpu"):
        build_fp8_gemm(GemmCase(batch=1, m=64, n=64, k=64, dtype="fp8_e4m3"), CpuDevice())
    with pytest.raises(UnsupportedConfigError, match="got n=40"):
        build_fp8_gemm(GemmCase(batch=1, m=64, n=40, k=64, dtype="fp8_e4m3"), _CpuAsCuda())
    with pytest.raises(UnsupportedConfigError, match="this GPU has 8.0"):
        build_fp8_gemm(GemmCase(batch=1, m=64, n=64, k=64, dtype="fp8_e4m3"), _CpuAsCuda("8.0"))


@pytest.mark.parametrize("dtype", ["fp8_e4m3", "fp8_e5m2"])
def test_the_workload_runs_checks_and_counts(dtype):
    m, n, k = 72, 48, 96
    workload = build_fp8_gemm(GemmCase(batch=1, m=m, n=n, k=k, dtype=dtype, seed=3), _CpuAsCuda())
    assert isinstance(workload, Workload)
    error = workload.check()
    assert 0 < error <= 1e-2 <= workload.check_tolerance  # bf16 output rounding only, far inside fp8's tolerance
    assert workload.flops == gemm_flops(1, m, n, k)
    assert workload.min_bytes == fp8_gemm_min_bytes(m, n, k) == m * k + k * n + 2 * m * n
    workload.kernel(1)
    workload.release()


def test_cold_mode_rotates_input_sets():
    workload = build_fp8_gemm(GemmCase(batch=1, m=256, n=256, k=256, dtype="fp8_e4m3", cache_mode="cold"),
                              _CpuAsCuda())
    set_bytes = fp8_gemm_min_bytes(256, 256, 256)
    assert workload.input_sets == math.ceil(2 * 2**20 / set_bytes) and workload.input_sets > 1
    workload.kernel(workload.input_sets - 1)


def test_an_fp8_case_measured_on_the_stand_in_gpu_is_an_ok_row():
    from perfscope.collectors.protocol import measure_case
    from perfscope.meters.null import NullMeter
    from perfscope.timing import TimingPolicy

    class _Fp8Case:  # what GemmCase.build will do once fp8 is wired in
        kernel = "gemm"

        def __init__(self, case):
            self.case = case

        def config_columns(self):
            return {**self.case.config_columns(), "implementation": "torch._scaled_mm"}

        def build(self, device):
            return build_fp8_gemm(self.case, device)

    policy = TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05)
    ctx = RunContext(run_id="t", device=_CpuAsCuda(), meter=NullMeter("test: no meter"), policy=policy)
    row, timing = measure_case(_Fp8Case(GemmCase(batch=1, m=64, n=64, k=64, dtype="fp8_e4m3")), ctx)
    assert row.status == "ok", row.reason
    assert row.min_bytes == 64 * 64 * 4 and row.time_median_ms > 0 and row.implementation == "torch._scaled_mm"
