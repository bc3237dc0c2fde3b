"""Work and minimum traffic of kernels (DESIGN.md section 5). Pure functions."""

from __future__ import annotations

from perfscope.dtypes import dtype_info


def gemm_flops(batch: int, m: int, n: int, k: int) -> int:
    """FLOPs of ``batch`` products of (m x k) by (k x n): 2*b*m*n*k."""
    return 2 * batch * m * n * k


def gemm_min_bytes(batch: int, m: int, n: int, k: int, dtype: str, beta_nonzero: bool = False) -> int:
    """Bytes that must move at least once: read A and B, write C (and read C if beta != 0)."""
    s = dtype_info(dtype).bytes_per_element
    c_elements = m * n * (2 if beta_nonzero else 1)
    return s * batch * (m * k + k * n + c_elements)
