from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from perfscope.collectors.conv import ConvCase, cases_from_axes
from perfscope.collectors.protocol import RunContext, measure_case
from perfscope.devices.cpu import CpuDevice
from perfscope.errors import InvalidInputError
from perfscope.features import conv2d_flops, conv2d_min_bytes, conv2d_output_hw
from perfscope.meters.null import NullMeter
from perfscope.timing import TimingPolicy

FAST = TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05)

# (n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
CONFIGS = [
    (1, 3, 16, 16, 8, 3, 3, 1, 1, 0, 0, 1, 1, 1),
    (2, 4, 9, 10, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2),  # stride, padding, groups
    (1, 8, 13, 11, 4, 3, 5, 1, 2, 2, 1, 2, 1, 1),  # rectangular filter, mixed stride and dilation
    (3, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16),  # depthwise
    (2, 6, 7, 7, 12, 1, 1, 1, 1, 0, 0, 1, 1, 3),  # pointwise, grouped
    (1, 4, 20, 20, 4, 3, 3, 3, 3, 0, 0, 3, 3, 1),  # dilation with stride
]


def _ctx():
    return RunContext(run_id="t", device=CpuDevice(), meter=NullMeter("test: no meter"), policy=FAST)


def _torch_conv(cfg):
    n, c, h, w, k, r, s, sh, sw, ph, pw, dh, dw, g = cfg
    x, wt = torch.rand(n, c, h, w), torch.rand(k, c // g, r, s)
    return lambda: F.conv2d(x, wt, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=g)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_conv_flops_match_torch_flop_counter(cfg):
    with FlopCounterMode(display=False) as counter:
        _torch_conv(cfg)()
    assert conv2d_flops(*cfg) == counter.get_total_flops()


@pytest.mark.parametrize("cfg", CONFIGS)
def test_conv_output_size_matches_torch(cfg):
    n, c, h, w, k, r, s, sh, sw, ph, pw, dh, dw, g = cfg
    out = _torch_conv(cfg)()
    assert conv2d_output_hw(h, w, r, s, sh, sw, ph, pw, dh, dw) == tuple(out.shape[-2:])


def test_conv_min_bytes_formula():
    # 2x4x9x10 input, 6 filters of 2x3x3 (groups 2), output 2x6x5x5 (stride 2, pad 1)
    assert conv2d_min_bytes(2, 4, 9, 10, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2, dtype="bf16") == \
        2 * (2 * 4 * 9 * 10 + 6 * 2 * 3 * 3 + 2 * 6 * 5 * 5)
    # depthwise 3x3, fp32: 1x8x6x6 in, 8 x 1x3x3 filters, 1x8x4x4 out
    assert conv2d_min_bytes(1, 8, 6, 6, 8, 3, 3, groups=8, dtype="fp32") == 4 * (288 + 72 + 128)


def test_conv_features_refuse_impossible_configurations():
    with pytest.raises(InvalidInputError, match="groups"):
        conv2d_flops(1, 6, 8, 8, 4, 3, 3, groups=4)  # 4 does not divide 6
    with pytest.raises(InvalidInputError, match="empty"):
        conv2d_output_hw(4, 4, 5, 5)
    with pytest.raises(InvalidInputError, match="pad_h"):
        conv2d_output_hw(8, 8, 3, 3, pad_h=-1)
    with pytest.raises(InvalidInputError, match="stride_w"):
        conv2d_output_hw(8, 8, 3, 3, stride_w=0)
    with pytest.raises(InvalidInputError, match="n must be"):
        conv2d_min_bytes(0, 1, 8, 8, 1, 3, 3, dtype="fp32")
    with pytest.raises(InvalidInputError):
        ConvCase(n=1, c=3, h=8, w=8, k=4, r=3, s=3, layout="nhwc")


@pytest.mark.parametrize("case", [
    ConvCase(n=2, c=8, h=12, w=12, k=16, r=3, s=3, pad_h=1, pad_w=1),
    ConvCase(n=2, c=8, h=12, w=11, k=16, r=3, s=3, stride_h=2, stride_w=2, layout="channels_last"),
    ConvCase(n=2, c=16, h=10, w=10, k=16, r=3, s=3, pad_h=1, pad_w=1, groups=16, dtype="bf16"),  # depthwise
    ConvCase(n=1, c=4, h=9, w=9, k=80, r=1, s=1),  # the check compares only the first 64 filters
    ConvCase(n=1, c=128, h=6, w=6, k=128, r=3, s=3, groups=2, layout="channels_last"),  # checks 1 of 2 groups
], ids=["nchw", "channels_last-stride", "depthwise-bf16", "filter-subset", "group-subset"])
def test_a_cpu_conv_is_checked_timed_and_described(case):
    row, timing = measure_case(case, _ctx())
    assert row.status == "ok", row.reason
    assert 0 <= row.check_max_abs_err <= row.check_tolerance
    assert row.flops == conv2d_flops(case.n, case.c, case.h, case.w, case.k, case.r, case.s, case.stride_h,
                                     case.stride_w, case.pad_h, case.pad_w, case.dil_h, case.dil_w, case.groups)
    assert row.min_bytes == case.min_bytes and row.time_median_ms > 0 and timing is not None
    assert (row.kernel, row.implementation, row.layout, row.groups) == \
        ("conv", "torch.conv2d", case.layout, case.groups)
    assert (row.batch, row.conv_n, row.conv_c, row.conv_k, row.conv_r, row.stride_h) == \
        (case.n, case.n, case.c, case.k, case.r, case.stride_h)
    assert row.params_json is None  # no cuDNN setting on a CPU row
    assert row.m is None and row.heads is None


def test_channels_last_inputs_really_are_channels_last():
    w = ConvCase(n=2, c=8, h=6, w=6, k=4, r=3, s=3, layout="channels_last").build(CpuDevice())
    out = w.kernel(0)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    w.release()


def test_same_seed_same_inputs_and_other_seed_other_inputs():
    def output(seed):
        w = ConvCase(n=1, c=3, h=8, w=8, k=2, r=3, s=3, seed=seed).build(CpuDevice())
        out = w.kernel(0)
        w.release()
        return out

    assert torch.equal(output(0), output(0))
    assert not torch.equal(output(0), output(1))
    assert output(0).abs().max() > 0


def test_cudnn_benchmark_on_a_cpu_is_an_unsupported_row_and_dropped_for_cpu_cases():
    case = ConvCase(n=1, c=3, h=8, w=8, k=4, r=3, s=3, cudnn_benchmark=True)
    assert json.loads(case.config_columns()["params_json"]) == {"cudnn_benchmark": True}
    row, timing = measure_case(case, _ctx())
    assert row.status == "unsupported" and "cudnn_benchmark" in row.reason and timing is None
    cpu_case = case.for_device("cpu")
    assert cpu_case.cudnn_benchmark is None and cpu_case.config_columns()["params_json"] is None
    assert case.for_device("cuda") is case
    assert measure_case(cpu_case, _ctx())[0].status == "ok"


def test_a_cpu_sweep_measures_cases_that_differ_only_in_the_cudnn_setting_once(tmp_path):
    from perfscope.collectors.gemm import GemmCase
    from perfscope.collectors.sweep import run_sweep
    from perfscope.store import ProfileStore

    gemm = GemmCase(batch=1, m=8, n=8, k=8, dtype="fp32")
    assert gemm.for_device("cpu") is gemm  # the Case protocol's default: the same everywhere
    convs = [ConvCase(n=1, c=3, h=8, w=8, k=4, r=3, s=3, cudnn_benchmark=b) for b in (True, False)]
    report = run_sweep([*convs, gemm], ProfileStore(tmp_path / "ds", create=True), _ctx())
    assert report.planned == 2 and report.statuses == {"ok": 2}
    conv_row = next(row for row in report.rows if row.kernel == "conv")
    assert conv_row.params_json is None


def test_fp8_and_tf32_conv_on_the_cpu_are_unsupported_rows():
    for dtype in ("tf32", "fp8_e4m3"):
        row, _ = measure_case(ConvCase(n=1, c=2, h=5, w=5, k=2, r=3, s=3, dtype=dtype), _ctx())
        assert row.status == "unsupported" and dtype.split("_")[0] in row.reason


def test_cold_mode_rotates_enough_input_sets_to_cover_twice_the_cache():
    device = CpuDevice()
    case = ConvCase(n=4, c=16, h=32, w=32, k=16, r=3, s=3, pad_h=1, pad_w=1, cache_mode="cold")
    w = case.build(device)
    assert w.input_sets > 1 and w.input_sets * case.min_bytes >= 2 * device.describe().last_level_cache_bytes
    outs = {float(w.kernel(i).sum()) for i in range(3)}
    assert len(outs) == 3  # each call reads another input set
    w.release()


def test_cases_from_axes_is_a_cartesian_product_with_defaults():
    cases = cases_from_axes({"n": [1, 8], "c": [16], "h": [14, 28], "w": [14], "k": [32], "r": [1, 3], "s": [3],
                             "stride": [1, 2], "dtype": ["fp32", "bf16"]})
    assert len(cases) == 2 * 2 * 2 * 2 * 2
    first = cases[0]
    assert (first.pad_h, first.dil_w, first.groups, first.layout, first.cache_mode, first.cudnn_benchmark) == \
        (0, 1, 1, "nchw", "warm", True)
    assert {(c.stride_h, c.stride_w) for c in cases} == {(1, 1), (2, 2)}  # stride sets both
    assert len({c.config_columns()["params_json"] for c in cases}) == 1


def test_cases_from_axes_with_shapes_and_device_kind():
    shapes = [{"n": 1, "c": 32, "h": 56, "w": 56, "k": 32, "r": 3, "s": 3, "pad": 1, "groups": 32},
              {"n": 1, "c": 3, "h": 224, "w": 224, "k": 64, "r": 7, "s": 7, "stride": 2, "pad_h": 3, "pad_w": 3}]
    axes = {"shapes": shapes, "layout": ["nchw", "channels_last"], "cudnn_benchmark": [True, False]}
    cuda = cases_from_axes(axes, device_kind="cuda")
    assert len(cuda) == 2 * 2 * 2 and cuda[0].depthwise and not cuda[-1].depthwise
    assert (cuda[-1].stride_w, cuda[-1].pad_h, cuda[-1].pad_w) == (2, 3, 3)
    cpu = cases_from_axes(axes, device_kind="cpu")  # the cuDNN axis collapses
    assert len(cpu) == 2 * 2 and all(c.cudnn_benchmark is None for c in cpu)
    assert len({c.config_columns()["params_json"] for c in cases_from_axes(axes)}) == 2


@pytest.mark.parametrize("axes,message", [
    ({"n": [1], "c": [3], "h": [8], "w": [8], "k": [4], "r": [3], "s": [3], "padding": [1]}, "padding.*use n, c"),
    ({"c": [3], "h": [8], "w": [8], "k": [4], "r": [3], "s": [3]}, "needs n"),
    ({"n": [], "c": [3], "h": [8], "w": [8], "k": [4], "r": [3], "s": [3]}, "'n' is empty"),
    ({"n": [1], "c": [3, 4], "h": [8], "w": [8], "k": [4], "r": [3], "s": [3], "groups": [2]}, "c=3.*groups"),
    ({"shapes": [{"n": 1, "c": 3, "h": 8, "w": 8, "k": 4, "r": 3, "s": 3}], "n": [2]}, "both"),
    ({"shapes": [{"n": 1, "c": 3, "h": 8, "w": 8, "k": 4, "r": 3, "s": 3, "bias": True}]}, "bias"),
    ({"n": [1], "c": [3], "h": [8], "w": [8], "k": [4], "r": [3], "s": [3], "layout": ["nhwc"]}, "layout"),
])
def test_cases_from_axes_rejects_bad_grids(axes, message):
    with pytest.raises(InvalidInputError, match=message):
        cases_from_axes(axes)


class _CudaKindCpu(CpuDevice):
    """A CPU that says it is CUDA: runs the CUDA-only branches (cuDNN flags) with CPU tensors."""

    kind = "cuda"


@pytest.mark.parametrize("benchmark", [True, False])
def test_on_cuda_the_cudnn_flags_are_set_for_the_workload_and_restored(benchmark):
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.allow_tf32)
    case = ConvCase(n=1, c=4, h=8, w=8, k=4, r=3, s=3, cudnn_benchmark=benchmark)
    w = case.build(_CudaKindCpu())
    try:
        assert (cudnn.benchmark, cudnn.allow_tf32) == (benchmark, False)  # fp32 must not run as tf32
        assert w.check() <= w.check_tolerance
    finally:
        w.release()
    assert (cudnn.benchmark, cudnn.allow_tf32) == before
    assert json.loads(case.config_columns()["params_json"]) == {"cudnn_benchmark": benchmark}


def test_on_cuda_a_case_without_the_cudnn_setting_is_an_unsupported_row():
    ctx = RunContext(run_id="t", device=_CudaKindCpu(), meter=NullMeter("test"), policy=FAST)
    row, _ = measure_case(ConvCase(n=1, c=4, h=8, w=8, k=4, r=3, s=3), ctx)
    assert row.status == "unsupported" and "cudnn_benchmark" in row.reason
