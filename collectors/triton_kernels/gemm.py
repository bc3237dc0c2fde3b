"""Tiled GEMM in Triton: C = A @ B with explicit tiles and grouped program ordering.

Each program computes one ``BLOCK_M x BLOCK_N`` tile of C, walking K in ``BLOCK_K``
steps and accumulating in fp32. Program ids are grouped ``GROUP_M`` tile-rows at a time
(the ordering of Triton's matmul tutorial) so that tiles running together share rows of
A and columns of B in L2. Shapes need not be multiples of the tiles: rows and columns
past the edge wrap around when loading (valid addresses, results discarded) and are
masked when storing; K is masked.
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

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _matmul_kernel(
    a_ptr, b_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    # grouped ordering: walk GROUP_M tile-rows down a column of tiles before moving right
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    # wrap rows/columns past the edge instead of masking every load (stores are masked)
    offs_am = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_bn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_am[:, None].to(tl.int64) * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :].to(tl.int64) * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        if UPCAST_DOT:  # interpreter only (see the package docstring)
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + offs_cm[:, None].to(tl.int64) * stride_cm + offs_cn[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))


def triton_matmul(a: torch.Tensor, b: torch.Tensor, *, block_m: int, block_n: int, block_k: int, group_m: int,
                  num_warps: int, num_stages: int, out: torch.Tensor | None = None,
                  input_precision: str = "ieee") -> torch.Tensor:
    """``a @ b`` (2-D, same dtype: fp32, fp16 or bf16) with the given tiles; returns ``out``.

    Accumulates in fp32 and writes C in the inputs' dtype. ``input_precision`` applies to
    fp32 inputs on tensor-core GPUs: ``"ieee"`` (default, true fp32) or ``"tf32"``. Any
    strides are accepted. Tensors must be CUDA tensors, or CPU tensors under
    ``TRITON_INTERPRET=1`` (which ignores ``num_warps`` and ``num_stages``).
    Raises ``InvalidInputError`` for bad shapes, dtypes or tiles.
    """
    return prepare_matmul(a, b, block_m=block_m, block_n=block_n, block_k=block_k, group_m=group_m,
                          num_warps=num_warps, num_stages=num_stages, out=out, input_precision=input_precision)()


def prepare_matmul(a: torch.Tensor, b: torch.Tensor, *, block_m: int, block_n: int, block_k: int, group_m: int,
                   num_warps: int, num_stages: int, out: torch.Tensor | None = None,
                   input_precision: str = "ieee") -> Callable[[], torch.Tensor]:
    """Validate ``triton_matmul``'s arguments once and return a function that launches the
    kernel on these tensors and returns ``out``: timing loops call it, so that argument
    checks (tens of microseconds of Python) are not timed with the kernel."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise InvalidInputError(f"triton_matmul multiplies (m x k) by (k x n); "
                                f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype or a.dtype not in SUPPORTED_DTYPES:
        raise InvalidInputError(f"triton_matmul needs A and B of one dtype among fp32, fp16, bf16; "
                             f"got {a.dtype} and {b.dtype}")
    check_block("block_m", block_m)
    check_block("block_n", block_n)
    check_block("block_k", block_k)
    check_launch(num_warps, num_stages, group_m)
    check_input_precision(input_precision)
    m, k = a.shape
    n = b.shape[1]
    if min(m, n, k) < 1:
        raise InvalidInputError(f"triton_matmul needs non-empty matrices; got m={m}, n={n}, k={k}")
    if out is None:
        out = torch.empty((m, n), dtype=a.dtype, device=a.device)
    elif out.shape != (m, n) or out.dtype != a.dtype or out.device != a.device:
        raise InvalidInputError(f"out must be a {m} x {n} {a.dtype} tensor on {a.device}; "
                             f"got {tuple(out.shape)} {out.dtype} on {out.device}")
    interpreted = check_device(_matmul_kernel, a, b, out)
    kernel = _matmul_kernel[(triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)]
    args = (a, b, out, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1), out.stride(0), out.stride(1))
    meta = {"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": group_m,
            "INPUT_PRECISION": input_precision, "UPCAST_DOT": interpreted and a.dtype == torch.bfloat16,
            "num_warps": num_warps, "num_stages": num_stages}
    return bind_launch(kernel, args, meta, out)
