"""Implicit-GEMM conv2d forward in Triton (groups = 1).

The convolution is the GEMM ``out[M, N] = X[M, K] @ W[K, N]`` with M = batch*P*Q (output
pixels), N = K_out (filters) and K = C*R*S (input channels times filter taps); X is never
materialised: each program gathers its ``BLOCK_M x BLOCK_K`` block of X from the input
with the stride, padding and dilation arithmetic, masking taps that fall in the padding.
The reduction index is ordered (r, s, c) with c fastest, so in NHWC (channels_last)
memory the gathered channels are contiguous. Program ids are grouped ``GROUP_M``
tile-rows at a time, as in the GEMM kernel.

Layout: the input is a (N, C, H, W) tensor in NCHW (contiguous) or NHWC
(``torch.channels_last``) memory; the kernel reads any strides, and the output takes the
input's memory format. Weights are (K, C, R, S), any strides. Only groups = 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from perfscope.collectors.triton_kernels import (
    bind_launch,
    check_block,
    check_device,
    check_input_precision,
    check_launch,
)
from perfscope.errors import InvalidInputError
from perfscope.features import conv2d_output_hw

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _conv2d_kernel(
    x_ptr, w_ptr, y_ptr,
    BATCH, C, H, W, K_OUT, P, Q, R, S,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    sxn, sxc, sxh, sxw, swk, swc, swr, sws, syn, syk, syp, syq,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    gemm_m = BATCH * P * Q
    gemm_k = C * R * S
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(gemm_m, BLOCK_M)
    num_pid_n = tl.cdiv(K_OUT, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    # output pixel of each GEMM row: (n, p, q)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = offs_m < gemm_m
    n_idx = offs_m // (P * Q)
    pq = offs_m % (P * Q)
    h0 = (pq // Q) * stride_h - pad_h
    w0 = (pq % Q) * stride_w - pad_w
    x_row = x_ptr + n_idx.to(tl.int64) * sxn
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < K_OUT
    w_col = w_ptr + offs_n.to(tl.int64) * swk

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, gemm_k, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_ok = offs_k < gemm_k
        c = offs_k % C
        rs = offs_k // C
        r = rs // S
        s = rs % S
        h = h0[:, None] + (r * dil_h)[None, :]
        w = w0[:, None] + (s * dil_w)[None, :]
        a_mask = m_ok[:, None] & k_ok[None, :] & (h >= 0) & (h < H) & (w >= 0) & (w < W)
        a = tl.load(x_row[:, None] + (c * sxc)[None, :] + h * sxh + w * sxw, mask=a_mask, other=0.0)
        b = tl.load(w_col[None, :] + (c * swc + r * swr + s * sws)[:, None],
                    mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if UPCAST_DOT:  # interpreter only (see the package docstring)
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    y_ptrs = (y_ptr + (n_idx.to(tl.int64) * syn + (pq // Q) * syp + (pq % Q) * syq)[:, None]
              + offs_n[None, :].to(tl.int64) * syk)
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def triton_conv2d(x: torch.Tensor, w: torch.Tensor, *, stride: int | tuple[int, int] = 1,
                  padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                  block_m: int, block_n: int, block_k: int, num_warps: int, num_stages: int,
                  group_m: int = 8, out: torch.Tensor | None = None, input_precision: str = "ieee") -> torch.Tensor:
    """conv2d forward of ``x`` (N, C, H, W) with ``w`` (K, C, R, S), groups = 1, no bias.

    ``x`` in NCHW or NHWC (channels_last) memory; the result (N, K, P, Q) takes the
    input's memory format. Tiles are those of the implicit GEMM (M = N*P*Q, N = K,
    K = C*R*S); accumulation in fp32, output in the inputs' dtype (fp32, fp16 or bf16).
    ``input_precision`` applies to fp32 inputs: ``"ieee"`` (default) or ``"tf32"``.
    Tensors must be CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.
    """
    return prepare_conv2d(x, w, stride=stride, padding=padding, dilation=dilation, block_m=block_m,
                          block_n=block_n, block_k=block_k, num_warps=num_warps, num_stages=num_stages,
                          group_m=group_m, out=out, input_precision=input_precision)()


def prepare_conv2d(x: torch.Tensor, w: torch.Tensor, *, stride: int | tuple[int, int] = 1,
                   padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                   block_m: int, block_n: int, block_k: int, num_warps: int, num_stages: int,
                   group_m: int = 8, out: torch.Tensor | None = None,
                   input_precision: str = "ieee") -> Callable[[], torch.Tensor]:
    """Validate ``triton_conv2d``'s arguments once; return a function that launches the
    kernel on these tensors and returns ``out`` (what timing loops call)."""
    if x.dim() != 4 or w.dim() != 4:
        raise InvalidInputError(f"x must be (N, C, H, W) and w (K, C, R, S); got {tuple(x.shape)} and {tuple(w.shape)}")
    batch, channels, height, width = x.shape
    k_out, w_channels, r, s = w.shape
    if w_channels != channels:
        raise InvalidInputError(f"w has {w_channels} input channels, x has {channels} (only groups = 1 is supported)")
    if x.dtype != w.dtype or x.dtype not in SUPPORTED_DTYPES:
        raise InvalidInputError(f"x and w need one dtype among fp32, fp16, bf16; got {x.dtype} and {w.dtype}")
    stride_hw = _pair("stride", stride, minimum=1)
    pad_hw = _pair("padding", padding, minimum=0)
    dil_hw = _pair("dilation", dilation, minimum=1)
    if min(batch, channels, k_out) < 1:
        raise InvalidInputError(f"empty convolution: input {tuple(x.shape)}, weights {tuple(w.shape)}")
    p, q = conv2d_output_hw(height, width, r, s, stride_hw[0], stride_hw[1], pad_hw[0], pad_hw[1], *dil_hw)
    check_block("block_m", block_m)
    check_block("block_n", block_n)
    check_block("block_k", block_k)
    check_launch(num_warps, num_stages, group_m)
    check_input_precision(input_precision)
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    if out is None:
        out = torch.empty((batch, k_out, p, q), dtype=x.dtype, device=x.device,
                          memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    elif out.shape != (batch, k_out, p, q) or out.dtype != x.dtype or out.device != x.device:
        raise InvalidInputError(f"out must be a {(batch, k_out, p, q)} {x.dtype} tensor on {x.device}; "
                             f"got {tuple(out.shape)} {out.dtype} on {out.device}")
    interpreted = check_device(_conv2d_kernel, x, w, out)
    kernel = _conv2d_kernel[(triton.cdiv(batch * p * q, block_m) * triton.cdiv(k_out, block_n),)]
    args = (x, w, out, batch, channels, height, width, k_out, p, q, r, s, *stride_hw, *pad_hw, *dil_hw,
            *x.stride(), *w.stride(), *out.stride())
    meta = {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": group_m,
            "INPUT_PRECISION": input_precision, "UPCAST_DOT": interpreted and x.dtype == torch.bfloat16,
            "num_warps": num_warps, "num_stages": num_stages}
    return bind_launch(kernel, args, meta, out)


def _pair(name: str, value: int | tuple[int, int], minimum: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair):
        raise InvalidInputError(f"{name} must be an int >= {minimum} or a pair of them; got {value!r}")
    return pair  # type: ignore[return-value]
