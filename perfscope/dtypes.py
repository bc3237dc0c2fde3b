"""Precisions perfscope knows: storage size, check tolerance, torch name."""

from __future__ import annotations

from dataclasses import dataclass

from perfscope.errors import InvalidInputError


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
