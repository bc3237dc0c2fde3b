"""Which module expands which (kernel family, implementation) into cases."""

from __future__ import annotations

from typing import Any

from perfscope.collectors.attention import cases_from_axes as attention_cases
from perfscope.collectors.conv import cases_from_axes as conv_cases
from perfscope.collectors.cpu_tiled import cases_from_axes as tiled_cases
from perfscope.collectors.gemm import cases_from_axes as gemm_cases
from perfscope.collectors.triton_kernels.cases import cases_from_axes as triton_cases
from perfscope.errors import InvalidInputError

FAMILIES = ("gemm", "conv", "attention")
IMPLEMENTATIONS = {
    "gemm": ("torch", "triton", "numba"),
    "conv": ("torch", "triton"),
    "attention": ("torch", "triton"),
}


def cases_for(kernel: str, implementation: str, axes: dict[str, list[Any]], *, seed: int = 0) -> list[Any]:
    """Expand ``axes`` into the cases of one kernel family and implementation."""
    if kernel not in IMPLEMENTATIONS:
        raise InvalidInputError(f"unknown kernel family {kernel!r}: use {', '.join(FAMILIES)}")
    if implementation not in IMPLEMENTATIONS[kernel]:
        raise InvalidInputError(f"unknown implementation {implementation!r} for {kernel}: "
                             f"use {', '.join(IMPLEMENTATIONS[kernel])}")
    if implementation == "triton":
        return triton_cases(kernel, axes, seed=seed)
    if kernel == "gemm" and implementation == "numba":
        return tiled_cases(axes, seed=seed)
    if kernel == "gemm":
        return gemm_cases(axes, seed=seed)
    if kernel == "conv":
        return conv_cases(axes, seed=seed)
    return attention_cases(axes, seed=seed)
