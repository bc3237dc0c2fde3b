"""Fused attention forward in Triton (flash-attention style online softmax).

One program computes a ``BLOCK_M`` block of query rows of one (batch, head): it walks the
keys in ``BLOCK_N`` blocks, keeping the running row maximum, the running softmax
denominator and the unnormalised output in registers, so the ``seq_q x seq_k`` score
matrix never reaches memory. Blocks that need no mask (inside ``seq_k`` and, when causal,
wholly at or below the diagonal) run in a first loop without masking; the rest run in a
second loop with masks. Sequence lengths need not be multiples of the blocks.

Causal masking is top-left aligned, as ``torch.nn.functional.scaled_dot_product_attention``
with ``is_causal=True``: query ``i`` sees keys ``j <= i``. Grouped-query attention: ``k``
and ``v`` may have fewer heads than ``q`` (a divisor); query head ``h`` reads kv head
``h // (heads // kv_heads)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from perfscope.collectors.triton_kernels import (
    ATTENTION_HEAD_DIMS,
    bind_launch,
    check_block,
    check_device,
    check_input_precision,
    check_launch,
)
from perfscope.errors import InvalidInputError

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
HEAD_DIMS = ATTENTION_HEAD_DIMS
_LOG2_E = 1.4426950408889634
MAX_GRID_Y = 65535  # one program row per (batch, head)


@triton.jit
def _attention_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    HEADS, KV_GROUP, SEQ_Q, SEQ_K, qk_scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    batch = (bh // HEADS).to(tl.int64)
    head = bh % HEADS
    kv_head = (head // KV_GROUP).to(tl.int64)
    head = head.to(tl.int64)

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = q_ptr + batch * stride_qb + head * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    # K is read transposed (HEAD_DIM x BLOCK_N) so that q @ k needs no transpose
    kt_ptrs = (k_ptr + batch * stride_kb + kv_head * stride_kh
               + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd)
    v_ptrs = v_ptr + batch * stride_vb + kv_head * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd

    q = tl.load(q_ptrs, mask=offs_m[:, None] < SEQ_Q, other=0.0)
    if UPCAST_DOT:  # interpreter only (see the package docstring)
        q = q.to(tl.float32)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)  # running row max (log2 units)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)  # running softmax denominator
    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)

    # keys [0, unmasked_end) need no mask; [unmasked_end, hi) do
    if CAUSAL:
        hi = tl.minimum(SEQ_K, (start_m + 1) * BLOCK_M)
        unmasked_end = (tl.minimum(SEQ_K, start_m * BLOCK_M + 1) // BLOCK_N) * BLOCK_N
    else:
        hi = SEQ_K
        unmasked_end = (SEQ_K // BLOCK_N) * BLOCK_N

    for start_n in range(0, unmasked_end, BLOCK_N):
        kt = tl.load(kt_ptrs + start_n * stride_kn)
        v = tl.load(v_ptrs + start_n * stride_vn)
        if UPCAST_DOT:
            kt = kt.to(tl.float32)
        qk = tl.dot(q, kt, input_precision=INPUT_PRECISION) * qk_scale_log2
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        p = p.to(v.dtype)
        if UPCAST_DOT:
            p = p.to(tl.float32)
            v = v.to(tl.float32)
        acc = tl.dot(p, v, acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_new

    for start_n in range(unmasked_end, hi, BLOCK_N):
        keys = start_n + offs_n
        key_ok = keys < SEQ_K
        kt = tl.load(kt_ptrs + start_n * stride_kn, mask=key_ok[None, :], other=0.0)
        v = tl.load(v_ptrs + start_n * stride_vn, mask=key_ok[:, None], other=0.0)
        if UPCAST_DOT:
            kt = kt.to(tl.float32)
        qk = tl.dot(q, kt, input_precision=INPUT_PRECISION) * qk_scale_log2
        visible = key_ok[None, :]
        if CAUSAL:
            visible = visible & (keys[None, :] <= offs_m[:, None])
        qk = tl.where(visible, qk, float("-inf"))
        # every row sees key 0 in the first block it processes, so m_new is finite
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        p = p.to(v.dtype)
        if UPCAST_DOT:
            p = p.to(tl.float32)
            v = v.to(tl.float32)
        acc = tl.dot(p, v, acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_new

    out = acc / l_i[:, None]
    o_ptrs = o_ptr + batch * stride_ob + head * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=offs_m[:, None] < SEQ_Q)


def triton_attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                         sm_scale: float | None = None, block_m: int, block_n: int, num_warps: int,
                         num_stages: int, out: torch.Tensor | None = None,
                         input_precision: str = "ieee") -> torch.Tensor:
    """softmax(q @ k^T * sm_scale [causal mask]) @ v; returns ``out`` (batch, heads, seq_q, head_dim).

    ``q`` is (batch, heads, seq_q, head_dim); ``k`` and ``v`` are (batch, kv_heads, seq_k,
    head_dim) with ``kv_heads`` dividing ``heads`` (grouped-query attention when smaller).
    One dtype among fp32, fp16, bf16; ``head_dim`` one of 16, 32, 64, 128; any strides.
    ``sm_scale`` defaults to 1/sqrt(head_dim). Causal masking is top-left aligned (query
    ``i`` sees keys ``j <= i``, as torch's ``is_causal``). Softmax and accumulation are in
    fp32; P is cast to the inputs' dtype before P @ V, as in flash attention.
    ``input_precision`` applies to fp32 inputs: ``"ieee"`` (default) or ``"tf32"``.
    Tensors must be CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.
    """
    return prepare_attention_fwd(q, k, v, causal=causal, sm_scale=sm_scale, block_m=block_m, block_n=block_n,
                                 num_warps=num_warps, num_stages=num_stages, out=out,
                                 input_precision=input_precision)()


def prepare_attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                          sm_scale: float | None = None, block_m: int, block_n: int, num_warps: int,
                          num_stages: int, out: torch.Tensor | None = None,
                          input_precision: str = "ieee") -> Callable[[], torch.Tensor]:
    """Validate ``triton_attention_fwd``'s arguments once; return a function that launches
    the kernel on these tensors and returns ``out`` (what timing loops call)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise InvalidInputError("q, k and v must be 4-D (batch, heads, seq, head_dim)")
    batch, heads, seq_q, head_dim = q.shape
    kv_batch, kv_heads, seq_k, kv_dim = k.shape
    if v.shape != k.shape or kv_batch != batch or kv_dim != head_dim:
        raise InvalidInputError(f"k and v must be (batch={batch}, kv_heads, seq_k, head_dim={head_dim}) alike; "
                             f"got {tuple(k.shape)} and {tuple(v.shape)}")
    if kv_heads < 1 or heads % kv_heads:
        raise InvalidInputError(f"kv_heads ({kv_heads}) must divide heads ({heads})")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        raise InvalidInputError(f"q, k and v need one dtype among fp32, fp16, bf16; "
                                f"got {q.dtype}, {k.dtype}, {v.dtype}")
    if head_dim not in HEAD_DIMS:
        raise InvalidInputError(f"head_dim must be one of {', '.join(map(str, HEAD_DIMS))}; got {head_dim}")
    if min(batch, heads, seq_q, seq_k) < 1:
        raise InvalidInputError(f"empty attention: batch={batch}, heads={heads}, seq_q={seq_q}, seq_k={seq_k}")
    if batch * heads > MAX_GRID_Y:
        raise InvalidInputError(f"batch * heads ({batch * heads}) exceeds CUDA's grid limit of {MAX_GRID_Y} (grid y)")
    check_block("block_m", block_m)
    check_block("block_n", block_n)
    check_launch(num_warps, num_stages)
    check_input_precision(input_precision)
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(head_dim)
    if out is None:
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    elif out.shape != q.shape or out.dtype != q.dtype or out.device != q.device:
        raise InvalidInputError(f"out must be a {tuple(q.shape)} {q.dtype} tensor on {q.device}; "
                             f"got {tuple(out.shape)} {out.dtype} on {out.device}")
    interpreted = check_device(_attention_fwd_kernel, q, k, v, out)
    kernel = _attention_fwd_kernel[(triton.cdiv(seq_q, block_m), batch * heads)]
    args = (q, k, v, out, *q.stride(), *k.stride(), *v.stride(), *out.stride(),
            heads, heads // kv_heads, seq_q, seq_k, sm_scale * _LOG2_E)
    meta = {"HEAD_DIM": head_dim, "BLOCK_M": block_m, "BLOCK_N": block_n, "CAUSAL": bool(causal),
            "INPUT_PRECISION": input_precision, "UPCAST_DOT": interpreted and q.dtype == torch.bfloat16,
            "num_warps": num_warps, "num_stages": num_stages}
    return bind_launch(kernel, args, meta, out)
