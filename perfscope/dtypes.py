"""Precisions perfscope knows: storage size, check tolerance, torch name, and the
questions code asks of a precision (``is_fp8``, ``is_tf32``, ``bytes_per_element``).

``Dtype`` is the vocabulary: the names specs, flags and the ``dtype`` column use. Ask
these functions rather than testing names (``name.startswith("fp8")``) in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from perfscope.errors import InvalidInputError

Dtype = Literal["fp32", "tf32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2"]
"""A precision's name, as specs, command-line flags and the ``dtype`` column spell it."""


@dataclass(frozen=True)
class DtypeInfo:
    """What perfscope knows of one precision: storage size, check tolerance, torch name, support."""

    name: str
    bytes_per_element: int
    torch_name: str  # attribute of the torch module holding the storage dtype
    # tolerance on max |out - ref| / sqrt(k) for inputs uniform in [-1, 1]
    check_tolerance: float
    cuda_only: bool = False
    min_compute_capability: tuple[int, int] | None = None


DTYPES: dict[str, DtypeInfo] = {
    d.name: d
    for d in (
        DtypeInfo("fp32", 4, "float32", 1e-4),
        # tf32 keeps 10 mantissa bits in the multiply; stored as fp32
        DtypeInfo("tf32", 4, "float32", 5e-3, cuda_only=True, min_compute_capability=(8, 0)),
        DtypeInfo("fp16", 2, "float16", 5e-3),
        DtypeInfo("bf16", 2, "bfloat16", 3e-2),
        DtypeInfo("fp8_e4m3", 1, "float8_e4m3fn", 0.25, cuda_only=True, min_compute_capability=(8, 9)),
        DtypeInfo("fp8_e5m2", 1, "float8_e5m2", 0.5, cuda_only=True, min_compute_capability=(8, 9)),
    )
}


def dtype_info(name: str) -> DtypeInfo:
    """The ``DtypeInfo`` for ``name``; ``InvalidInputError`` listing the known ones otherwise."""
    try:
        return DTYPES[name]
    except KeyError:
        raise InvalidInputError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}") from None


def check_dtype(name: str) -> str:
    """``name`` when perfscope knows it; ``InvalidInputError`` listing the known ones otherwise."""
    return dtype_info(name).name


def bytes_per_element(name: str) -> int:
    """Storage size of one element of ``name`` (tf32 is stored as fp32: 4)."""
    return dtype_info(name).bytes_per_element


def check_tolerance(name: str) -> float:
    """Tolerance on max |out - ref| / sqrt(k) when checking a result of precision ``name``."""
    return dtype_info(name).check_tolerance


def is_fp8(name: str) -> bool:
    """Whether ``name`` is an 8-bit float (fp8_e4m3, fp8_e5m2): scaled matmuls, one shared peak."""
    return name.startswith("fp8_")


def is_tf32(name: str) -> bool:
    """Whether ``name`` asks for TF32 math: fp32 storage multiplied on tensor cores with a
    10-bit mantissa (torch's ``allow_tf32`` switches, Triton's ``input_precision="tf32"``)."""
    return name == "tf32"




FP32_MATH_MODES = ("ieee", "tf32")
"""How fp32 storage may be multiplied (the ``fp32_math`` column): ``ieee`` full fp32 on the
CUDA cores, ``tf32`` on tensor cores with a 10-bit mantissa (torch's ``allow_tf32`` /
``float32_matmul_precision("high")``, Triton's ``input_precision="tf32"``)."""


def check_fp32_math(value: str) -> str:
    """``value`` when it is one of ``FP32_MATH_MODES``; ``InvalidInputError`` otherwise."""
    if value not in FP32_MATH_MODES:
        raise InvalidInputError(f"unknown fp32 math mode {value!r}: use {' or '.join(FP32_MATH_MODES)}")
    return value


def stores_fp32(name: str) -> bool:
    """Whether ``name`` keeps fp32 in memory (fp32 and tf32): the dtypes an fp32 math mode applies to."""
    return name in ("fp32", "tf32")


def row_fp32_math(name: str, mode: str | None) -> str | None:
    """The ``fp32_math`` cell of a row of dtype ``name``: ``mode`` for fp32 storage, else None."""
    return mode if stores_fp32(name) else None


def peak_dtype(name: str, fp32_math: str | None) -> str:
    """The dtype whose peak bounds a row: ``tf32`` for fp32 rows whose math mode is tf32,
    else the row's own dtype (unknown math mode: the fp32 peak)."""
    return "tf32" if name == "fp32" and fp32_math == "tf32" else name
