"""The Triton kernels against float64 torch references, over several tile settings.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``) on CPU
tensors. Triton reads that variable when it is first imported, so when something
imported triton before this module (``torch.utils.flop_counter`` does, and
test_gemm_collector.py imports it), the kernel tests are skipped here and
``test_kernels_in_a_fresh_interpreter_process`` runs this file again in a child pytest
with the variable set. Setting ``TRITON_INTERPRET=1`` in tests/conftest.py on machines
without CUDA avoids the child process. On a GPU host (``TRITON_INTERPRET`` unset) the
same tests run compiled, on the GPU. Without one, the compiled path is still checked:
``test_the_kernels_compile_to_pipelined_tensor_core_code_without_a_gpu`` compiles the
kernels for sm_80 and sm_90 with Triton's compiler and its bundled ptxas.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from perfscope.collectors.triton_kernels import use_interpreter
from perfscope.devices.base import DeviceDescription
from perfscope.devices.cpu import CpuDevice
from perfscope.errors import InvalidInputError

ON_GPU = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "") in ("", "0")
IN_THIS_PROCESS = ON_GPU or use_interpreter()
DEVICE = "cuda" if ON_GPU else "cpu"
# tests/conftest.py sets TRITON_INTERPRET=1 before anything imports triton when there is no GPU
assert IN_THIS_PROCESS, "triton was imported without TRITON_INTERPRET=1 and there is no GPU"

if IN_THIS_PROCESS:
    from perfscope.collectors.protocol import RunContext, measure_case
    from perfscope.collectors.triton_kernels.attention import triton_attention_fwd
    from perfscope.collectors.triton_kernels.cases import TritonAttentionCase, TritonConvCase, TritonGemmCase
    from perfscope.collectors.triton_kernels.conv import triton_conv2d
    from perfscope.collectors.triton_kernels.gemm import prepare_matmul, triton_matmul
    from perfscope.features import attention_flops, conv2d_flops, gemm_flops
    from perfscope.meters.null import NullMeter
    from perfscope.timing import TimingPolicy

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# max |out - ref| (over sqrt(k) for GEMM and conv); the interpreter rounds fp32 -> bf16
# toward zero, so bf16 gets one bf16 ulp of slack
TOLERANCE = {"fp32": 1e-5, "fp16": 2e-3, "bf16": 2e-2}


def _uniform(shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) * 2 - 1).to(DTYPES[dtype]).to(DEVICE)


# ---------------------------------------------------------------- GEMM

GEMM = [  # m, n, k, dtype, (block_m, block_n, block_k, group_m), transposed operands
    (37, 29, 45, "fp32", (16, 16, 16, 2), False),  # nothing a multiple of a tile; group_m not dividing
    (64, 48, 64, "fp16", (32, 16, 32, 8), False),  # multiples; group_m larger than the tile rows
    (70, 33, 100, "bf16", (32, 32, 16, 1), False),  # group_m 1: plain row-major tile order
    (20, 70, 24, "fp32", (16, 64, 32, 3), True),  # block_k > k, block_n ~ n; strided A and B
    (48, 40, 19, "fp16", (16, 16, 64, 4), True),
]


@pytest.mark.parametrize("m, n, k, dtype, tiles, transposed", GEMM)
def test_matmul_matches_float64(m, n, k, dtype, tiles, transposed):
    a, b = _uniform((m, k), dtype, 1), _uniform((k, n), dtype, 2)
    if transposed:  # same values, column-major storage
        a, b = a.t().contiguous().t(), b.t().contiguous().t()
    out = torch.full((m, n), float("nan"), dtype=DTYPES[dtype], device=DEVICE)  # unwritten tiles stay NaN
    bm, bn, bk, gm = tiles
    got = triton_matmul(a, b, block_m=bm, block_n=bn, block_k=bk, group_m=gm, num_warps=4, num_stages=2, out=out)
    assert got is out
    error = (out.double().cpu() - a.double().cpu() @ b.double().cpu()).abs().max().item() / math.sqrt(k)
    assert error <= TOLERANCE[dtype]


def test_a_prepared_launch_reads_its_tensors_anew_at_every_call():
    a, b = _uniform((20, 16), "fp32", 1), _uniform((16, 24), "fp32", 2)
    launch = prepare_matmul(a, b, block_m=16, block_n=16, block_k=16, group_m=1, num_warps=4, num_stages=2)
    first = launch().clone()
    a.mul_(-2)
    second = launch()
    assert torch.allclose(second, -2 * first, rtol=1e-6, atol=1e-6)


def test_matmul_refuses_bad_tiles_and_shapes():
    a, b = _uniform((32, 32), "fp16", 1), _uniform((32, 32), "fp16", 2)
    tiles = {"block_m": 16, "block_n": 16, "block_k": 16, "group_m": 1, "num_warps": 4, "num_stages": 2}
    for bad in ({"block_m": 24}, {"block_k": 8}, {"num_warps": 3}, {"num_stages": 0}, {"group_m": 0}):
        with pytest.raises(InvalidInputError):
            triton_matmul(a, b, **{**tiles, **bad})
    with pytest.raises(InvalidInputError, match="multiplies"):
        triton_matmul(a, _uniform((16, 32), "fp16", 3), **tiles)
    with pytest.raises(InvalidInputError, match="one dtype"):
        triton_matmul(a, b.float(), **tiles)
    with pytest.raises(InvalidInputError, match="input_precision"):
        triton_matmul(a, b, **tiles, input_precision="fp16")


# ---------------------------------------------------------------- attention

ATTENTION = [  # batch, heads, kv_heads, seq_q, seq_k, head_dim, causal, dtype, block_m, block_n
    (1, 2, 2, 37, 53, 16, False, "fp32", 16, 16),
    (1, 2, 1, 53, 37, 32, True, "fp16", 32, 16),  # grouped-query, causal with seq_q > seq_k
    (2, 2, 2, 40, 40, 16, True, "bf16", 16, 32),  # causal square, block_n > block_m
    (1, 4, 2, 20, 70, 16, True, "fp32", 16, 16),  # causal with seq_q < seq_k
    (1, 1, 1, 33, 48, 64, False, "fp16", 32, 32),
]


def _attention_reference(q, k, v, causal, sm_scale=None):
    group = q.shape[1] // k.shape[1]
    k64 = k.double().cpu().repeat_interleave(group, 1)
    v64 = v.double().cpu().repeat_interleave(group, 1)
    return F.scaled_dot_product_attention(q.double().cpu(), k64, v64, is_causal=causal, scale=sm_scale)


@pytest.mark.parametrize("batch, heads, kv_heads, seq_q, seq_k, head_dim, causal, dtype, bm, bn", ATTENTION)
def test_attention_matches_float64(batch, heads, kv_heads, seq_q, seq_k, head_dim, causal, dtype, bm, bn):
    q = _uniform((batch, heads, seq_q, head_dim), dtype, 1)
    k = _uniform((batch, kv_heads, seq_k, head_dim), dtype, 2)
    v = _uniform((batch, kv_heads, seq_k, head_dim), dtype, 3)
    out = torch.full(q.shape, float("nan"), dtype=q.dtype, device=DEVICE)
    got = triton_attention_fwd(q, k, v, causal=causal, block_m=bm, block_n=bn, num_warps=4, num_stages=2, out=out)
    assert got is out
    error = (out.double().cpu() - _attention_reference(q, k, v, causal)).abs().max().item()
    assert error <= TOLERANCE[dtype]


def test_attention_takes_a_scale_and_any_strides():
    q = _uniform((1, 20, 2, 16), "fp32", 1).transpose(1, 2)  # (batch, seq, heads, d) storage
    k = _uniform((1, 24, 2, 16), "fp32", 2).transpose(1, 2)
    v = _uniform((1, 24, 2, 16), "fp32", 3).transpose(1, 2)
    out = triton_attention_fwd(q, k, v, causal=False, sm_scale=0.9, block_m=16, block_n=16, num_warps=4,
                               num_stages=1)
    assert (out.double().cpu() - _attention_reference(q, k, v, False, 0.9)).abs().max().item() <= 1e-5
    default_scale = _attention_reference(q, k, v, False)  # 1/sqrt(16) = 0.25 is far from 0.9
    assert (out.double().cpu() - default_scale).abs().max().item() > 1e-2


def test_attention_refuses_what_it_cannot_run():
    q, kv = _uniform((1, 4, 16, 16), "fp16", 1), _uniform((1, 3, 16, 16), "fp16", 2)
    options = {"causal": False, "block_m": 16, "block_n": 16, "num_warps": 4, "num_stages": 2}
    with pytest.raises(InvalidInputError, match="must divide"):
        triton_attention_fwd(q, kv, kv, **options)
    odd = _uniform((1, 1, 16, 24), "fp16", 3)
    with pytest.raises(InvalidInputError, match="head_dim"):
        triton_attention_fwd(odd, odd, odd, **options)
    with pytest.raises(InvalidInputError, match="block_n"):
        triton_attention_fwd(q, q, q, **{**options, "block_n": 8})


# ---------------------------------------------------------------- conv2d

CONV = [  # (n, c, h, w, k, r, s), stride, padding, dilation, layout, dtype, (block_m, block_n, block_k, group_m)
    ((2, 3, 9, 11, 5, 3, 3), 1, 1, 1, "nchw", "fp32", (16, 16, 16, 2)),
    ((1, 4, 10, 10, 20, 3, 2), (2, 1), (0, 2), (1, 2), "channels_last", "fp16", (32, 16, 16, 8)),
    ((2, 5, 8, 8, 7, 1, 1), 2, 0, 1, "nchw", "bf16", (16, 16, 32, 1)),
    ((1, 6, 12, 7, 9, 3, 3), 1, 2, 2, "channels_last", "fp32", (64, 16, 16, 4)),  # dilation inside padding
]


@pytest.mark.parametrize("shape, stride, padding, dilation, layout, dtype, tiles", CONV)
def test_conv2d_matches_float64(shape, stride, padding, dilation, layout, dtype, tiles):
    n, c, h, w, k, r, s = shape
    x, wt = _uniform((n, c, h, w), dtype, 1), _uniform((k, c, r, s), dtype, 2)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    bm, bn, bk, gm = tiles
    out = triton_conv2d(x, wt, stride=stride, padding=padding, dilation=dilation, block_m=bm, block_n=bn,
                        block_k=bk, group_m=gm, num_warps=4, num_stages=2)
    ref = F.conv2d(x.double().cpu(), wt.double().cpu(), stride=stride, padding=padding, dilation=dilation)
    assert out.shape == ref.shape and out.dtype == x.dtype
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert (out.double().cpu() - ref).abs().max().item() / math.sqrt(c * r * s) <= TOLERANCE[dtype]


def test_conv2d_refuses_groups_and_empty_outputs():
    x = _uniform((1, 4, 6, 6), "fp32", 1)
    options = {"block_m": 16, "block_n": 16, "block_k": 16, "num_warps": 4, "num_stages": 2}
    with pytest.raises(InvalidInputError, match="groups = 1"):
        triton_conv2d(x, _uniform((4, 2, 3, 3), "fp32", 2), **options)
    with pytest.raises(InvalidInputError, match="empty"):
        triton_conv2d(x, _uniform((4, 4, 7, 7), "fp32", 2), **options)
    with pytest.raises(InvalidInputError, match="padding"):
        triton_conv2d(x, _uniform((4, 4, 3, 3), "fp32", 2), padding=-1, **options)


# ---------------------------------------------------------------- cases, end to end

class _CpuAsCuda(CpuDevice):
    """The CPU posing as a CUDA device, so a case's CUDA path runs (on CPU tensors, interpreted)."""

    kind = "cuda"

    def describe(self) -> DeviceDescription:
        return DeviceDescription(kind="cuda", name="CPU standing in for a GPU (Triton interpreter)",
                                 compute_capability="9.0", last_level_cache_bytes=2**20, memory_bytes=2**33)


def _gpu():
    if ON_GPU:
        from perfscope.devices.cuda import CudaDevice

        return CudaDevice(0)
    return _CpuAsCuda()


def test_cases_build_check_and_count_work_on_the_cuda_path():
    tiles = {"tile_m": 16, "tile_n": 16, "num_warps": 4, "num_stages": 2}
    device = _gpu()
    gemm = TritonGemmCase(m=40, n=24, k=36, dtype="bf16", tile_k=16, group_m=2, **tiles).build(device)
    attention = TritonAttentionCase(batch=1, heads=2, kv_heads=1, seq_q=40, seq_k=24, head_dim=16, causal=True,
                                    dtype="fp16", **tiles).build(device)
    conv = TritonConvCase(n=1, c=3, h=7, w=9, k=5, r=3, s=3, stride_h=2, pad_w=1, layout="channels_last",
                          dtype="fp32", tile_k=16, group_m=1, **tiles).build(device)
    for workload in (gemm, attention, conv):
        assert 0 < workload.check() <= workload.check_tolerance  # 0 would mean nothing was compared
    assert gemm.flops == gemm_flops(1, 40, 24, 36)
    assert attention.flops == attention_flops(1, 2, 40, 24, 16, causal=True)
    assert conv.flops == conv2d_flops(1, 3, 7, 9, 5, 3, 3, stride_h=2, pad_w=1)


def test_a_triton_case_is_measured_into_an_ok_row():
    policy = TimingPolicy(warmup_s=0.0, min_time_s=0.0, budget_s=0.01, min_samples=3, target_ci_rel=0.5)
    ctx = RunContext(run_id="t", device=_gpu(), meter=NullMeter("test: no meter"), policy=policy)
    case = TritonGemmCase(m=20, n=20, k=20, dtype="fp16", tile_m=16, tile_n=16, tile_k=16, group_m=1,
                          num_warps=2, num_stages=1)
    row, timing = measure_case(case, ctx)
    assert row.status == "ok", row.reason
    assert row.check_max_abs_err <= row.check_tolerance and timing.samples_s
    assert (row.tile_m, row.tile_k, row.tile_group_m, row.tile_num_warps) == (16, 16, 1, 2)


# ---------------------------------------------------------------- compiled for real GPUs

_COMPILE = """
import json
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from perfscope.collectors.triton_kernels import attention, conv, gemm


def build(kernel, args, constexprs, cc, num_warps, num_stages):
    # compile as a launch with these args would: pointers 16-byte aligned, ints equal to 1
    # folded into constants, ints divisible by 16 marked so (Triton's JIT specialisation)
    names = kernel.arg_names
    signature, consts, attrs = {}, dict(constexprs), {}
    for i, name in enumerate(names):
        value = args.get(name)
        if name in constexprs:
            signature[name] = "constexpr"
        elif isinstance(value, str):  # a pointer type such as "*fp16"
            signature[name] = value
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, float):
            signature[name] = "fp32"
        elif value == 1:
            signature[name], consts[name] = "constexpr", 1
        else:
            signature[name] = "i32"
            if value % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=kernel, signature=signature, constexprs={(names.index(k),): v for k, v in consts.items()},
                    attrs=attrs)
    compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages})
    ptx = compiled.asm["ptx"]
    print(json.dumps({"kernel": kernel.__name__, "cc": cc, "shared": compiled.metadata.shared,
                      "mma": "mma.sync" in ptx or "wgmma" in ptx, "async_copy": "cp.async" in ptx}), flush=True)


def gemm_args(t, m, n, k):
    return {"a_ptr": t, "b_ptr": t, "c_ptr": t, "M": m, "N": n, "K": k, "stride_am": k, "stride_ak": 1,
            "stride_bk": n, "stride_bn": 1, "stride_cm": n, "stride_cn": 1}


tiles = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8, "INPUT_PRECISION": "ieee", "UPCAST_DOT": False}
build(gemm._matmul_kernel, gemm_args("*fp16", 4096, 4096, 4096), tiles, 90, 4, 3)
n, c, h, w, k, r, s, p, q = 32, 64, 56, 56, 128, 3, 3, 56, 56  # NHWC strides below
build(conv._conv2d_kernel, {"x_ptr": "*bf16", "w_ptr": "*bf16", "y_ptr": "*bf16", "BATCH": n, "C": c, "H": h, "W": w,
                            "K_OUT": k, "P": p, "Q": q, "R": r, "S": s, "stride_h": 1, "stride_w": 1, "pad_h": 1,
                            "pad_w": 1, "dil_h": 1, "dil_w": 1, "sxn": h * w * c, "sxc": 1, "sxh": w * c, "sxw": c,
                            "swk": c * r * s, "swc": 1, "swr": s * c, "sws": c, "syn": p * q * k, "syk": 1,
                            "syp": q * k, "syq": k}, {**tiles, "BLOCK_N": 64}, 80, 4, 3)
d, sq = 64, 2048
strides = {f"stride_{t}{x}": v for t in "qkvo" for x, v in zip("b" + ("m" if t in "qo" else "n") + "hd",
                                                                (16 * sq * d, d, sq * d, 1))}
build(attention._attention_fwd_kernel, {**{f"{t}_ptr": "*fp16" for t in "qkvo"}, **strides, "HEADS": 16,
                                        "KV_GROUP": 1, "SEQ_Q": sq, "SEQ_K": sq, "qk_scale_log2": 0.18},
      {"HEAD_DIM": d, "BLOCK_M": 128, "BLOCK_N": 64, "CAUSAL": True, "INPUT_PRECISION": "ieee", "UPCAST_DOT": False},
      90, 8, 3)
build(gemm._matmul_kernel, gemm_args("*fp16", 4096, 4096, 4096),
      {**tiles, "BLOCK_M": 256, "BLOCK_N": 128, "BLOCK_K": 64}, 90, 8, 5)
"""


@pytest.mark.slow  # ~10-40 s on 2 busy cores: four compilations through ptxas
def test_the_kernels_compile_to_pipelined_tensor_core_code_without_a_gpu():
    """The compiled (non-interpreter) path, specialised as real launches are (aligned
    pointers, unit strides folded): Triton's compiler and its bundled ptxas need no GPU."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    child = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, timeout=580)
    assert child.returncode == 0, child.stderr[-4000:]
    gemm, conv, attention, big = [json.loads(line) for line in child.stdout.splitlines()]
    for kernel in (gemm, conv, attention, big):
        assert kernel["mma"] and kernel["async_copy"], kernel  # tensor cores, software-pipelined loads
    assert gemm["shared"] == 3 * (128 * 32 + 32 * 128) * 2  # num_stages=3 buffers of A and B tiles on sm_90
    assert max(gemm["shared"], conv["shared"], attention["shared"]) <= 101376  # fits even sm_86's 99 KiB
    # 256x128x64 fp16 in 5 stages needs 240 KiB: more than an H100 block may have (227 KiB), so
    # loading it raises OutOfResources("shared memory"), which a case records as unsupported
    assert big["shared"] == 5 * (256 * 64 + 64 * 128) * 2 > 232448
