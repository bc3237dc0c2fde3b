"""Work and minimum traffic of kernels (DESIGN.md section 5). Pure functions."""

from __future__ import annotations

from perfscope.dtypes import dtype_info
from perfscope.errors import UserInputError


def gemm_flops(batch: int, m: int, n: int, k: int) -> int:
    """FLOPs of ``batch`` products of (m x k) by (k x n): 2*b*m*n*k."""
    return 2 * batch * m * n * k


def gemm_min_bytes(batch: int, m: int, n: int, k: int, dtype: str, beta_nonzero: bool = False) -> int:
    """Bytes that must move at least once: read A and B, write C (and read C if beta != 0)."""
    s = dtype_info(dtype).bytes_per_element
    c_elements = m * n * (2 if beta_nonzero else 1)
    return s * batch * (m * k + k * n + c_elements)


def _require_positive(what: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"{what} {name} must be a positive integer, got {value!r}")


def conv2d_output_hw(h: int, w: int, r: int, s: int, stride_h: int = 1, stride_w: int = 1,
                     pad_h: int = 0, pad_w: int = 0, dil_h: int = 1, dil_w: int = 1) -> tuple[int, int]:
    """Output height and width (P, Q) of a 2-D convolution of an H x W image by an R x S filter.

    P = floor((H + 2*pad_h - dil_h*(R-1) - 1) / stride_h) + 1, Q likewise.
    ``UserInputError`` for non-positive sizes, negative padding or an empty output.
    """
    _require_positive("conv2d", h=h, w=w, r=r, s=s, stride_h=stride_h, stride_w=stride_w,
                      dil_h=dil_h, dil_w=dil_w)
    for name, value in (("pad_h", pad_h), ("pad_w", pad_w)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserInputError(f"conv2d {name} must be an integer >= 0, got {value!r}")
    p = (h + 2 * pad_h - dil_h * (r - 1) - 1) // stride_h + 1
    q = (w + 2 * pad_w - dil_w * (s - 1) - 1) // stride_w + 1
    if p < 1 or q < 1:
        raise UserInputError(
            f"conv2d output is empty: a {r}x{s} filter (dilation {dil_h}x{dil_w}) does not fit a "
            f"{h}x{w} image padded by {pad_h}x{pad_w}; use a larger image, more padding or a smaller filter")
    return p, q


def _conv2d_geometry(n: int, c: int, h: int, w: int, k: int, r: int, s: int, stride_h: int, stride_w: int,
                     pad_h: int, pad_w: int, dil_h: int, dil_w: int, groups: int) -> tuple[int, int]:
    """Validate a conv2d configuration; return (P, Q)."""
    _require_positive("conv2d", n=n, c=c, k=k, groups=groups)
    if c % groups or k % groups:
        raise UserInputError(f"conv2d groups ({groups}) must divide both the input channels ({c}) "
                             f"and the filters ({k})")
    return conv2d_output_hw(h, w, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)


def conv2d_flops(n: int, c: int, h: int, w: int, k: int, r: int, s: int, stride_h: int = 1, stride_w: int = 1,
                 pad_h: int = 0, pad_w: int = 0, dil_h: int = 1, dil_w: int = 1, groups: int = 1) -> int:
    """FLOPs of a conv2d (no bias): 2 * N*K*P*Q * (C/groups)*R*S (one multiply-add = 2 FLOPs)."""
    p, q = _conv2d_geometry(n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
    return 2 * n * k * p * q * (c // groups) * r * s


def conv2d_min_bytes(n: int, c: int, h: int, w: int, k: int, r: int, s: int, stride_h: int = 1,
                     stride_w: int = 1, pad_h: int = 0, pad_w: int = 0, dil_h: int = 1, dil_w: int = 1,
                     groups: int = 1, *, dtype: str) -> int:
    """Bytes a conv2d must move at least once: read the input (N*C*H*W) and the filters
    (K*(C/groups)*R*S), write the output (N*K*P*Q); padding is not stored."""
    p, q = _conv2d_geometry(n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
    size = dtype_info(dtype).bytes_per_element
    return size * (n * c * h * w + k * (c // groups) * r * s + n * k * p * q)


def attention_flops(batch: int, heads: int, seq_q: int, seq_k: int, head_dim: int, causal: bool = False) -> int:
    """Forward FLOPs of attention: two products (Q K^T and P V), 2*d FLOPs per (query, key)
    pair each, so 4*B*H*d*A where A is the number of attended pairs (softmax not counted).

    A = Nq*Nk without a mask. With torch's causal mask (``is_causal``: top-left aligned,
    query i sees keys 0..i) A is the area of the kept triangle: Nq^2/2 when Nq <= Nk and
    Nq*Nk - Nk^2/2 when Nq > Nk. For Nq == Nk this is exactly half the dense count (the
    convention of DESIGN.md and of FlashAttention's benchmarks); it differs from the exact
    count of unmasked pairs by the half-diagonal, min(Nq, Nk)/2 pairs.
    """
    _require_positive("attention", batch=batch, heads=heads, seq_q=seq_q, seq_k=seq_k, head_dim=head_dim)
    per_pair = 4 * batch * heads * head_dim  # FLOPs per attended (query, key) pair
    if not causal:
        return per_pair * seq_q * seq_k
    if seq_q <= seq_k:
        return per_pair * seq_q * seq_q // 2
    return per_pair * seq_q * seq_k - per_pair * seq_k * seq_k // 2


def attention_min_bytes(batch: int, heads: int, kv_heads: int, seq_q: int, seq_k: int, head_dim: int,
                        dtype: str, fused: bool = True) -> int:
    """Bytes attention must move at least once, at the storage size s of ``dtype``.

    Fused (flash, memory-efficient, cuDNN): read Q, K, V and write O once:
    s*B*d*(2*H*Nq + 2*Hkv*Nk). Unfused (the math backend) also materialises the Nq x Nk
    matrices per query head: writes the scores, reads them for the softmax, writes the
    probabilities, reads them for P V: + s*B*H*Nq*Nk*4 (the full matrix, causal or not,
    since an unfused implementation masks a dense matrix).
    """
    _require_positive("attention", batch=batch, heads=heads, kv_heads=kv_heads, seq_q=seq_q,
                      seq_k=seq_k, head_dim=head_dim)
    if heads % kv_heads:
        raise UserInputError(f"attention heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    size = dtype_info(dtype).bytes_per_element
    total = size * batch * head_dim * (2 * heads * seq_q + 2 * kv_heads * seq_k)
    if not fused:
        total += size * batch * heads * seq_q * seq_k * 4
    return total
