from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from perfscope.collectors.attention import AttentionCase, _normalised_error, cases_from_axes
from perfscope.collectors.protocol import RunContext, measure_case
from perfscope.devices.cpu import CpuDevice
from perfscope.errors import InvalidInputError
from perfscope.features import attention_flops, attention_min_bytes
from perfscope.meters.null import NullMeter
from perfscope.timing import TimingPolicy

FAST = TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05)


def _ctx():
    return RunContext(run_id="t", device=CpuDevice(), meter=NullMeter("test: no meter"), policy=FAST)


def _sdp_flags():
    cuda = torch.backends.cuda
    return (cuda.math_sdp_enabled(), cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled(),
            cuda.cudnn_sdp_enabled())


@pytest.mark.parametrize("b,h,hkv,nq,nk,d", [(2, 4, 4, 8, 12, 16), (1, 8, 2, 32, 32, 64), (3, 6, 1, 5, 17, 8)])
def test_attention_flops_match_torch_flop_counter_on_the_math_backend(b, h, hkv, nq, nk, d):
    q, k, v = torch.rand(b, h, nq, d), torch.rand(b, hkv, nk, d), torch.rand(b, hkv, nk, d)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, k, v, enable_gqa=hkv < h)
    assert attention_flops(b, h, nq, nk, d, causal=False) == counter.get_total_flops()
    # torch's formula for the fused ops (flash, efficient, cuDNN), which it does not halve for causal
    assert attention_flops(b, h, nq, nk, d) == sdpa_flop_count(q.shape, k.shape, v.shape)


def test_the_math_backend_computes_the_dense_product_even_when_causal():
    q = torch.rand(1, 2, 16, 8)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
    # what runs is dense; the useful work (our flops column) is half of it
    assert counter.get_total_flops() == attention_flops(1, 2, 16, 16, 8) == 2 * attention_flops(1, 2, 16, 16, 8, True)


@pytest.mark.parametrize("nq,nk", [(16, 16), (7, 30), (30, 7), (1, 1), (1, 64)])
def test_causal_flops_are_the_area_of_torchs_top_left_mask(nq, nk):
    b, h, d = 2, 3, 8
    kept = int(torch.ones(nq, nk, dtype=torch.bool).tril().sum())  # torch's is_causal mask, exactly
    exact = 4 * b * h * d * kept
    area = attention_flops(b, h, nq, nk, d, causal=True)
    assert exact - area == 4 * b * h * d * min(nq, nk) // 2  # the half diagonal
    if nq == nk:
        assert area * 2 == attention_flops(b, h, nq, nk, d, causal=False)


def test_attention_min_bytes_formula():
    # bf16: Q and O 2x8x100x64 each, K and V 2x2x300x64 each
    fused = 2 * (2 * 8 * 100 * 64 * 2 + 2 * 2 * 300 * 64 * 2)
    assert attention_min_bytes(2, 8, 2, 100, 300, 64, "bf16") == fused
    scores = 2 * 2 * 8 * 100 * 300  # one 100x300 bf16 matrix per (batch, head)
    assert attention_min_bytes(2, 8, 2, 100, 300, 64, "bf16", fused=False) == fused + 4 * scores


def test_attention_features_refuse_bad_sizes():
    with pytest.raises(InvalidInputError, match="multiple of kv_heads"):
        attention_min_bytes(1, 12, 8, 16, 16, 64, "fp32")
    with pytest.raises(InvalidInputError, match="seq_k"):
        attention_flops(1, 8, 16, 0, 64)
    with pytest.raises(InvalidInputError, match="backend"):
        AttentionCase(batch=1, heads=2, seq_q=4, seq_k=4, head_dim=8, backend="xformers")


@pytest.mark.parametrize("case", [
    AttentionCase(batch=2, heads=4, seq_q=48, seq_k=48, head_dim=32),
    AttentionCase(batch=2, heads=8, kv_heads=2, seq_q=40, seq_k=70, head_dim=16),  # GQA
    AttentionCase(batch=1, heads=4, seq_q=80, seq_k=80, head_dim=16, causal=True, dtype="bf16"),
    AttentionCase(batch=1, heads=4, kv_heads=1, seq_q=90, seq_k=50, head_dim=16, causal=True),  # Nq > Nk
    AttentionCase(batch=1, heads=2, seq_q=64, seq_k=64, head_dim=32, causal=True, backend="flash"),
], ids=["mha", "gqa", "causal-bf16", "gqa-causal-long-q", "flash-causal"])
def test_a_cpu_attention_is_checked_timed_and_described(case):
    row, timing = measure_case(case, _ctx())
    assert row.status == "ok", row.reason
    assert 0 <= row.check_max_abs_err <= row.check_tolerance and timing is not None
    assert row.flops == attention_flops(case.batch, case.heads, case.seq_q, case.seq_k, case.head_dim, case.causal)
    fused = case.backend != "math"
    assert row.min_bytes == attention_min_bytes(case.batch, case.heads, case.kv_heads, case.seq_q, case.seq_k,
                                                case.head_dim, case.dtype, fused=fused)
    assert (row.kernel, row.implementation, row.backend, row.causal) == ("attention", "torch.sdpa", case.backend,
                                                                         case.causal)
    assert (row.heads, row.kv_heads, row.seq_q, row.seq_k, row.head_dim) == \
        (case.heads, case.kv_heads, case.seq_q, case.seq_k, case.head_dim)
    assert row.conv_n is None and row.m is None
    assert _sdp_flags() == (True, True, True, True)  # the forced backend was released


def test_the_backend_is_forced_for_the_workloads_lifetime():
    case = AttentionCase(batch=1, heads=2, seq_q=16, seq_k=16, head_dim=8, backend="flash")
    w = case.build(CpuDevice())
    try:
        assert _sdp_flags() == (False, True, False, False)
        with FlopCounterMode(display=False) as counter:
            w.kernel(1)
        assert counter.get_total_flops() == 0  # the math backend's bmm calls did not run
    finally:
        w.release()
    assert _sdp_flags() == (True, True, True, True)
    w = AttentionCase(batch=1, heads=2, seq_q=16, seq_k=16, head_dim=8, backend="math").build(CpuDevice())
    with FlopCounterMode(display=False) as counter:
        w.kernel(1)
    w.release()
    assert counter.get_total_flops() == attention_flops(1, 2, 16, 16, 8)


@pytest.mark.parametrize("backend", ["cudnn", "efficient"])
def test_a_backend_that_refuses_is_an_unsupported_row_with_torchs_reason(backend):
    row, timing = measure_case(AttentionCase(batch=1, heads=2, seq_q=8, seq_k=8, head_dim=16, backend=backend),
                               _ctx())
    assert row.status == "unsupported" and timing is None
    assert f"backend {backend} refused" in row.reason and "\n" not in row.reason
    assert "backend" in row.reason.split("refused", 1)[1]  # torch's own words follow
    assert _sdp_flags() == (True, True, True, True)


def test_the_check_tells_a_causal_result_from_a_dense_one():
    q, k, v = (torch.rand(1, 2, 40, 16) * 2 - 1 for _ in range(3))
    dense = F.scaled_dot_product_attention(q, k, v)
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert _normalised_error(q, k, v, causal, causal=True) < 1e-6
    assert _normalised_error(q, k, v, dense, causal=True) > 0.05
    assert _normalised_error(q, k, v, dense, causal=False) < 1e-6


def test_cold_mode_rotates_input_sets():
    device = CpuDevice()
    case = AttentionCase(batch=1, heads=4, seq_q=256, seq_k=256, head_dim=64, cache_mode="cold")
    w = case.build(device)
    try:
        set_bytes = attention_min_bytes(1, 4, 4, 256, 256, 64, "fp32")
        assert w.input_sets > 1 and w.input_sets * set_bytes >= 2 * device.describe().last_level_cache_bytes
        assert not torch.equal(w.kernel(0), w.kernel(1))
    finally:
        w.release()


def test_cases_from_axes_expands_and_defaults():
    cases = cases_from_axes({"heads": [8, 16], "kv_heads": [1, 8], "seq": [128, 512], "head_dim": [64],
                             "causal": [False, True], "backend": ["math", "flash"]})
    assert len(cases) == 2 * 2 * 2 * 2 * 2
    assert all(c.seq_q == c.seq_k and c.batch == 1 and c.dtype == "fp32" for c in cases)
    default = cases_from_axes({"heads": [4], "seq_q": [1], "seq_k": [1024], "head_dim": [128]})
    assert [c.backend for c in default] == ["math", "flash", "efficient", "cudnn"]
    assert all(c.kv_heads == 4 and c.seq_q == 1 and c.seq_k == 1024 for c in default)
    # shapes (fixed model geometries) multiplied by the other axes; seq_q wins over a shape's seq
    shapes = [{"heads": 32, "kv_heads": 8, "head_dim": 128, "seq": 4096}, {"heads": 12, "head_dim": 64, "seq": 2048}]
    decode = cases_from_axes({"shapes": shapes, "seq_q": [1, 16], "backend": ["flash"], "batch": [1, 8]})
    assert len(decode) == 2 * 2 * 2
    assert {(c.heads, c.kv_heads, c.seq_q, c.seq_k) for c in decode} == \
        {(32, 8, 1, 4096), (32, 8, 16, 4096), (12, 12, 1, 2048), (12, 12, 16, 2048)}


@pytest.mark.parametrize("axes,message", [
    ({"heads": [8], "seq": [64], "head_dim": [64], "window": [128]}, "window.*use batch, heads"),
    ({"heads": [8], "head_dim": [64]}, "seq_q"),
    ({"heads": [12], "kv_heads": [8], "seq": [64], "head_dim": [64]}, "heads=12.*multiple of kv_heads"),
    ({"heads": [8], "seq": [64], "head_dim": [64], "causal": ["yes"]}, "causal"),
    ({"heads": [8], "seq": [64], "head_dim": [64], "backend": []}, "empty"),
])
def test_cases_from_axes_rejects_bad_grids(axes, message):
    with pytest.raises(InvalidInputError, match=message):
        cases_from_axes(axes)


class _CudaKindCpu(CpuDevice):
    """A CPU that says it is CUDA: runs the CUDA-only branch (tf32 flag) with CPU tensors."""

    kind = "cuda"


def test_tf32_attention_sets_the_matmul_flag_for_the_math_backend_only():
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    w = AttentionCase(batch=1, heads=2, seq_q=8, seq_k=8, head_dim=8, dtype="tf32").build(_CudaKindCpu())
    try:
        assert matmul.allow_tf32 is True
    finally:
        w.release()
    assert matmul.allow_tf32 == before
    ctx = RunContext(run_id="t", device=_CudaKindCpu(), meter=NullMeter("test"), policy=FAST)
    row, _ = measure_case(AttentionCase(batch=1, heads=2, seq_q=8, seq_k=8, head_dim=8, dtype="tf32",
                                        backend="flash"), ctx)
    assert row.status == "unsupported" and "math backend" in row.reason
    row, _ = measure_case(AttentionCase(batch=1, heads=2, seq_q=8, seq_k=8, head_dim=8, dtype="tf32"), _ctx())
    assert row.status == "unsupported" and "CUDA" in row.reason  # on a real CPU
