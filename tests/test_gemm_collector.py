from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from perfscope.collectors.gemm import GemmCase, cases_from_axes
from perfscope.collectors.protocol import RunContext, Workload, measure_case
from perfscope.devices.cpu import CpuDevice
from perfscope.errors import InvalidInputError
from perfscope.features import gemm_flops, gemm_min_bytes
from perfscope.meters.null import NullMeter
from perfscope.timing import TimingPolicy

FAST = TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05)


def _ctx():
    return RunContext(run_id="t", device=CpuDevice(), meter=NullMeter("test: no meter"), policy=FAST)


@pytest.mark.parametrize("batch,m,n,k", [(1, 16, 24, 8), (3, 5, 7, 9)])
def test_gemm_flops_match_torch_flop_counter(batch, m, n, k):
    a = torch.rand((m, k) if batch == 1 else (batch, m, k))
    b = torch.rand((k, n) if batch == 1 else (batch, k, n))
    with FlopCounterMode(display=False) as counter:
        torch.matmul(a, b)
    assert gemm_flops(batch, m, n, k) == counter.get_total_flops()


def test_gemm_min_bytes_formula():
    assert gemm_min_bytes(2, 3, 4, 5, "bf16") == 2 * 2 * (3 * 5 + 5 * 4 + 3 * 4)
    assert gemm_min_bytes(1, 3, 4, 5, "fp32", beta_nonzero=True) == 4 * (15 + 20 + 24)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_a_cpu_gemm_is_checked_timed_and_described(dtype):
    row, timing = measure_case(GemmCase(batch=2, m=33, n=17, k=40, dtype=dtype), _ctx())
    assert row.status == "ok", row.reason
    assert row.check_max_abs_err <= row.check_tolerance
    assert row.flops == 2 * 2 * 33 * 17 * 40
    assert row.samples_n == len(row.samples_ms) == len(timing.samples_s)
    assert row.time_p10_ms <= row.time_median_ms <= row.time_p90_ms
    assert row.achieved_flops_per_s == pytest.approx(row.flops / (row.time_median_ms / 1e3))
    assert row.timing_method == "perf_counter_ns-batched" and row.implementation == "torch.bmm"
    assert row.energy_method == "none" and row.energy_gross_j is None and "no meter" in row.energy_reason
    assert row.device_kind == "cpu" and row.torch_version == torch.__version__ and row.threads >= 1


def test_inputs_are_seeded_uniform_and_not_zero():
    w = GemmCase(batch=1, m=64, n=64, k=64, dtype="fp32").build(CpuDevice())
    w.kernel(0)
    w2 = GemmCase(batch=1, m=64, n=64, k=64, dtype="fp32").build(CpuDevice())
    assert w.check() == w2.check()  # same seed, same inputs, same result


def test_tf32_and_fp8_on_the_cpu_are_recorded_unsupported_not_raised():
    for dtype in ("tf32", "fp8_e4m3"):
        row, timing = measure_case(GemmCase(batch=1, m=8, n=8, k=8, dtype=dtype), _ctx())
        assert row.status == "unsupported" and "CUDA" in row.reason and timing is None
        assert row.time_median_ms is None


def test_cold_mode_rotates_enough_input_sets_to_cover_twice_the_cache():
    device = CpuDevice()
    case = GemmCase(batch=1, m=256, n=256, k=256, dtype="fp32", cache_mode="cold")
    w = case.build(device)
    llc = device.describe().last_level_cache_bytes
    set_bytes = 4 * 3 * 256 * 256
    assert w.input_sets * set_bytes >= 2 * llc
    row, _ = measure_case(case, _ctx())
    assert row.status == "ok" and row.input_sets == w.input_sets and row.cache_mode == "cold"


class _WrongResult:
    kernel = "gemm"

    def config_columns(self):
        return {"kernel": "gemm", "implementation": "broken", "dtype": "fp32", "cache_mode": "warm", "m": 1}

    def build(self, device):
        return Workload(kernel=lambda i: None, check=lambda: float("nan"), check_tolerance=1e-4,
                        flops=1, min_bytes=1)


class _Raises(_WrongResult):
    def build(self, device):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")


def test_a_failed_check_is_recorded_and_not_timed():
    row, timing = measure_case(_WrongResult(), _ctx())
    assert row.status == "check_failed" and timing is None and row.time_median_ms is None


def test_out_of_memory_becomes_a_row():
    row, _ = measure_case(_Raises(), _ctx())
    assert row.status == "oom" and row.reason.startswith("RuntimeError: CUDA out of memory")
    assert "\n" not in row.reason


def test_grid_expansion_and_validation():
    cases = cases_from_axes({"sizes": [8, 16], "shapes": [[4, 5, 6]], "batch": [1, 2], "dtype": ["fp32", "bf16"]})
    assert len(cases) == 3 * 2 * 2
    assert len(cases_from_axes({"m": [1, 2], "n": [3], "k": [4, 5, 6]})) == 6
    for bad in ({"sizes": [0]}, {"sizes": [8], "dtype": ["fp64"]}, {}, {"m": [4]}, {"sizes": [8], "tile": [4]},
                {"shapes": [[4, 4]]}):
        with pytest.raises(InvalidInputError):
            cases_from_axes(bad)
