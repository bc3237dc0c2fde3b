"""fp8 GEMM through ``torch._scaled_mm`` with per-tensor scales (CUDA, compute capability >= 8.9).

What is timed: ``torch._scaled_mm(A8, B8, scale_a, scale_b, out_dtype=bfloat16)`` with A8
(m x k, row-major) and B8 (k x n, column-major) already quantised; quantisation is done
once, when inputs are built, and is not timed. ``use_fast_accum`` stays off (torch's
default: cuBLASLt accumulates in full fp32).

Operand formats: ``fp8_e4m3`` multiplies e4m3 by e4m3; ``fp8_e5m2`` multiplies an e5m2 A
by an e4m3 B (the usual gradient-times-weight pairing), because cuBLASLt has no
e5m2 x e5m2 product.

torch's constraints on CUDA (``_scaled_mm_out_cuda`` in aten/src/ATen/native/cuda/
ScaledBlas.cpp): compute capability 8.9 or newer; 2-D operands; k and n multiples of 16;
A row-major and B column-major (cuBLASLt on Hopper takes no other layout); not both
e5m2; per-tensor scales are float32 tensors of one element. Violations become
``UnsupportedConfigError`` rows. On the CPU torch 2.13 runs ``_scaled_mm`` without these
constraints (the tests use that); perfscope still times fp8 on CUDA only.

The check compares with float64 products of the *dequantised* inputs, so it measures
the GEMM's error, not the quantisation error; the tolerance is the dtype's from
``perfscope.dtypes``.
"""

from __future__ import annotations

import math
from typing import Any

from perfscope.collectors.inputs import input_set_count, seeded_uniform
from perfscope.collectors.protocol import Workload
from perfscope.devices.base import Device
from perfscope.dtypes import check_tolerance, dtype_info
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.features import gemm_flops, gemm_min_bytes

IMPLEMENTATION = "torch._scaled_mm"
OPERAND_DTYPES = {"fp8_e4m3": ("fp8_e4m3", "fp8_e4m3"), "fp8_e5m2": ("fp8_e5m2", "fp8_e4m3")}
FP8_MAX = {"fp8_e4m3": 448.0, "fp8_e5m2": 57344.0}  # largest finite values (torch.finfo)
MIN_COMPUTE_CAPABILITY = (8, 9)
ALIGNMENT = 16  # k and n must be multiples of this
OUTPUT_BYTES = 2  # bf16
CHECK_ROWS = 64
_AMAX_FLOOR = 1e-12  # an all-zero tensor still gets a finite scale


def fp8_operand_dtypes(dtype: str) -> tuple[str, str]:
    """perfscope dtypes of (A, B) for the GEMM dtype ``dtype`` (fp8_e4m3 or fp8_e5m2)."""
    try:
        return OPERAND_DTYPES[dtype]
    except KeyError:
        raise InvalidInputError(f"not an fp8 GEMM dtype: {dtype!r}; use {', '.join(OPERAND_DTYPES)}") from None


def per_tensor_scale(amax: float, fp8_dtype: str) -> float:
    """The dequantisation scale mapping ``[-amax, amax]`` onto the fp8 format's finite range:
    ``x ~= q * scale`` with ``q = x / scale`` in fp8 (``amax / fp8_max``)."""
    if fp8_dtype not in FP8_MAX:
        raise InvalidInputError(f"not an fp8 dtype: {fp8_dtype!r}; use {', '.join(FP8_MAX)}")
    if not amax >= 0 or math.isinf(amax):
        raise InvalidInputError(f"amax must be finite and >= 0, got {amax!r}")
    return max(amax, _AMAX_FLOOR) / FP8_MAX[fp8_dtype]


def quantize_per_tensor(x: Any, fp8_dtype: str) -> tuple[Any, Any]:
    """``(q, scale)``: ``x`` quantised to ``fp8_dtype`` with one float32 scale (a 0-d tensor
    on ``x``'s device) such that ``q * scale ~= x``; values are saturated, never inf."""
    import torch  # optional, slow to import; only measuring needs it

    scale = per_tensor_scale(float(x.abs().max()), fp8_dtype)
    limit = FP8_MAX[fp8_dtype]
    storage = getattr(torch, dtype_info(fp8_dtype).torch_name)
    q = (x.float() / scale).clamp_(-limit, limit).to(storage)
    return q, torch.tensor(scale, dtype=torch.float32, device=x.device)


def dequantize(q: Any, scale: Any) -> Any:
    """``q * scale`` in float64 on the CPU (the reference's inputs)."""
    return q.double().cpu() * float(scale)


def scaled_mm_violations(m: int, n: int, k: int, a_dtype: str, b_dtype: str, *, batch: int = 1,
                         a_row_major: bool = True, b_column_major: bool = True) -> list[str]:
    """What ``torch._scaled_mm`` on CUDA would refuse in this problem (empty when it runs)."""
    problems = []
    if batch != 1:
        problems.append(f"torch._scaled_mm multiplies 2-D matrices; batch {batch} is not collected for fp8")
    bad = [f"{name}={value}" for name, value in (("k", k), ("n", n)) if value % ALIGNMENT]
    if bad:
        problems.append(f"torch._scaled_mm needs k and n to be multiples of {ALIGNMENT}; got {', '.join(bad)}")
    if a_dtype == b_dtype == "fp8_e5m2":
        problems.append("cuBLASLt has no fp8_e5m2 x fp8_e5m2 product")
    if not a_row_major or not b_column_major:
        problems.append("torch._scaled_mm needs A row-major and B column-major")
    return problems


def check_fp8_supported(device_kind: str, compute_capability: str | None, *, m: int, n: int, k: int,
                        dtype: str, batch: int = 1) -> None:
    """``UnsupportedConfigError`` (all reasons in one line) when this fp8 GEMM cannot run here."""
    a_dtype, b_dtype = fp8_operand_dtypes(dtype)
    need = ".".join(map(str, MIN_COMPUTE_CAPABILITY))
    if device_kind != "cuda":
        raise UnsupportedConfigError(f"{dtype} GEMM (torch._scaled_mm) needs a CUDA GPU with compute capability "
                                     f">= {need}; this is a {device_kind}")
    if compute_capability is None:
        raise UnsupportedConfigError(f"{dtype} GEMM needs compute capability >= {need}; this GPU's is unknown")
    if tuple(int(part) for part in compute_capability.split(".")) < MIN_COMPUTE_CAPABILITY:
        raise UnsupportedConfigError(f"{dtype} GEMM needs compute capability >= {need}; "
                                     f"this GPU has {compute_capability}")
    problems = scaled_mm_violations(m, n, k, a_dtype, b_dtype, batch=batch)
    if problems:
        raise UnsupportedConfigError("; ".join(problems))


def fp8_gemm_min_bytes(m: int, n: int, k: int) -> int:
    """Bytes moved at least once: fp8 A and B read (1 byte each), bf16 C written (2 bytes)."""
    return gemm_min_bytes(1, m, n, k, "fp8_e4m3") + (OUTPUT_BYTES - 1) * m * n


def build_fp8_gemm(case: Any, device: Device) -> Workload:
    """The ``Workload`` of a ``GemmCase`` whose dtype is fp8_e4m3 or fp8_e5m2.

    Raises ``UnsupportedConfigError`` off CUDA, below compute capability 8.9, for batch
    > 1 and for k or n not multiples of 16. Inputs are uniform in [-1, 1], quantised
    per tensor; in cold mode several input sets rotate as for other GEMMs.
    """
    import torch  # optional, slow to import; only measuring needs it

    check_fp8_supported(device.kind, device.describe().compute_capability, m=case.m, n=case.n, k=case.k,
                        dtype=case.dtype, batch=case.batch)
    a_dtype, b_dtype = fp8_operand_dtypes(case.dtype)
    m, n, k = case.m, case.n, case.k
    min_bytes = fp8_gemm_min_bytes(m, n, k)
    sets = input_set_count(case.cache_mode, min_bytes, device)
    dev = device.torch_device
    inputs = []
    for s in range(sets):
        a = seeded_uniform((m, k), torch.float32, dev, seed=case.seed * 1000 + 2 * s)
        b_t = seeded_uniform((n, k), torch.float32, dev, seed=case.seed * 1000 + 2 * s + 1)
        a8, scale_a = quantize_per_tensor(a, a_dtype)
        b8_t, scale_b = quantize_per_tensor(b_t, b_dtype)
        out = torch.empty((m, n), dtype=torch.bfloat16, device=dev)
        inputs.append((a8, b8_t.t(), scale_a, scale_b, out))  # b8_t.t(): k x n, column-major
        del a, b_t

    def call(i: int) -> None:
        a8, b8, scale_a, scale_b, out = inputs[i % sets]
        torch._scaled_mm(a8, b8, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16, out=out)

    def check() -> float:
        a8, b8, scale_a, scale_b, out = inputs[0]
        call(0)
        device.synchronize()
        rows = min(m, CHECK_ROWS)
        ref = dequantize(a8[:rows], scale_a) @ dequantize(b8, scale_b)
        return float((out[:rows].double().cpu() - ref).abs().max()) / math.sqrt(k)

    return Workload(kernel=call, check=check, check_tolerance=check_tolerance(case.dtype),
                    flops=gemm_flops(1, m, n, k), min_bytes=min_bytes, input_sets=sets, release=inputs.clear)
