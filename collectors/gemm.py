"""GEMM through PyTorch: ``torch.matmul`` (batch 1) and ``torch.bmm`` (batch > 1).

``GemmShape`` is what every GEMM implementation shares (fields, validation, FLOPs,
configuration columns, inputs, check); ``GemmCase`` and the Triton GEMM case build on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from perfscope.collectors.fp8 import build_fp8_gemm
from perfscope.collectors.fp32_math import torch_fp32_math
from perfscope.collectors.inputs import input_set_count, seeded_uniform, torch_dtype
from perfscope.collectors.memory_guard import MemoryNeed, gemm_memory_need
from perfscope.collectors.protocol import Case, Workload, check_cache_mode
from perfscope.devices.base import Device
from perfscope.dtypes import DtypeInfo, bytes_per_element, check_dtype, dtype_info, is_fp8, is_tf32
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.features import gemm_flops, gemm_min_bytes

CHECK_ROWS = 64  # rows of C compared with the float64 reference (keeps the check cheap)


@dataclass(frozen=True)
class GemmShape(Case):
    """The configuration every GEMM implementation shares: C[b] = A[b] @ B[b] with A (m x k),
    B (k x n), inputs uniform in [-1, 1].

    Validates the fields and gives the FLOPs and the configuration columns; an
    implementation adds ``implementation``, ``build`` and its own fields (tiles).
    """

    batch: int
    m: int
    n: int
    k: int
    dtype: str
    cache_mode: str = "warm"
    seed: int = 0
    kernel: str = "gemm"

    def __post_init__(self) -> None:
        _ = self.flops  # validates the sizes (InvalidInputError)
        check_dtype(self.dtype)
        check_cache_mode(self.cache_mode)

    @property
    def flops(self) -> int:
        """FLOPs of this GEMM (2·b·m·n·k)."""
        return gemm_flops(self.batch, self.m, self.n, self.k)

    def config_columns(self) -> dict[str, Any]:
        """The configuration columns of this case's profile row."""
        return {"kernel": self.kernel, "implementation": self.implementation, "dtype": self.dtype,
                "cache_mode": self.cache_mode, "batch": self.batch, "m": self.m, "n": self.n, "k": self.k}

    def memory_need(self, device: Device) -> MemoryNeed:
        """What measuring this shape allocates (the memory guard compares it with free memory)."""
        return gemm_memory_need(self.batch, self.m, self.n, self.k, bytes_per_element(self.dtype),
                                self.cache_mode, device, CHECK_ROWS)

    def make_inputs(self, device: Device) -> list[tuple[Any, Any, Any]]:
        """Input sets (A, B, C) on ``device``, C uninitialised, 2-D for batch 1 and 3-D above:
        one set warm, enough to outgrow the cache cold."""
        import torch  # optional, slow to import; only measuring needs it

        info = dtype_info(self.dtype)
        storage, dev = torch_dtype(info), device.torch_device
        b, m, n, k = self.batch, self.m, self.n, self.k
        set_bytes = info.bytes_per_element * b * (m * k + k * n + m * n)
        lead = () if b == 1 else (b,)
        inputs = []
        for s in range(input_set_count(self.cache_mode, set_bytes, device)):
            a = seeded_uniform((*lead, m, k), storage, dev, seed=self.seed * 1000 + 2 * s)
            bb = seeded_uniform((*lead, k, n), storage, dev, seed=self.seed * 1000 + 2 * s + 1)
            inputs.append((a, bb, torch.empty((*lead, m, n), dtype=storage, device=dev)))
        return inputs

    def normalised_error(self, a: Any, b: Any, c: Any) -> float:
        """max |C - A @ B| / sqrt(k) over the first ``CHECK_ROWS`` rows of every matrix of the
        batch, against float64 on the CPU."""
        rows = min(self.m, CHECK_ROWS)
        ref = a[..., :rows, :].double().cpu() @ b.double().cpu()
        got = c[..., :rows, :].double().cpu()
        return float((got - ref).abs().max()) / math.sqrt(self.k)


@dataclass(frozen=True)
class GemmCase(GemmShape):
    """GEMM through PyTorch: ``torch.matmul`` (batch 1), ``torch.bmm`` (batch > 1), fp8 by ``torch._scaled_mm``."""

    @property
    def implementation(self) -> str:
        """The torch call that runs this case (matmul, bmm or _scaled_mm for fp8)."""
        if is_fp8(self.dtype):
            return "torch._scaled_mm"
        return "torch.matmul" if self.batch == 1 else "torch.bmm"

    def build(self, device: Device) -> Workload:
        """Inputs and the torch call on ``device``."""
        import torch  # optional, slow to import; only measuring needs it

        info = dtype_info(self.dtype)
        check_device_supports(info, device)
        if is_fp8(info.name):
            return build_fp8_gemm(self, device)
        if device.kind == "cuda":
            # tf32 is fp32 storage with tensor-core multiplies; plain fp32 must not use it
            torch.backends.cuda.matmul.allow_tf32 = is_tf32(self.dtype)
        inputs = self.make_inputs(device)
        sets = len(inputs)
        op = torch.matmul if self.batch == 1 else torch.bmm

        def call(i: int) -> None:
            a, b, c = inputs[i % sets]
            op(a, b, out=c)

        def check() -> float:
            call(0)
            device.synchronize()
            return self.normalised_error(*inputs[0])

        return Workload(kernel=call, check=check, check_tolerance=info.check_tolerance, flops=self.flops,
                        min_bytes=gemm_min_bytes(self.batch, self.m, self.n, self.k, self.dtype),
                        input_sets=sets, release=inputs.clear, fp32_math=torch_fp32_math(device.kind))


def check_device_supports(info: DtypeInfo, device: Device) -> None:
    """``UnsupportedConfigError`` for a dtype that needs CUDA, or a newer GPU, than ``device``."""
    if info.cuda_only and device.kind != "cuda":
        raise UnsupportedConfigError(f"{info.name} needs a CUDA GPU (compute capability >= "
                                     f"{'.'.join(map(str, info.min_compute_capability))}); this is a {device.kind}")
    if device.kind == "cuda" and info.min_compute_capability:
        cc = device.describe().compute_capability
        if cc and tuple(int(x) for x in cc.split(".")) < info.min_compute_capability:
            raise UnsupportedConfigError(f"{info.name} needs compute capability >= "
                                         f"{'.'.join(map(str, info.min_compute_capability))}; this GPU has {cc}")


GEMM_AXES = ("sizes", "shapes", "m", "n", "k", "batch", "dtype", "cache")


def cases_from_axes(axes: dict[str, list[Any]], *, seed: int = 0) -> list[GemmCase]:
    """The grid: square ``sizes``, explicit ``shapes`` [m, n, k] and the product of
    ``m`` x ``n`` x ``k``, times ``batch`` x ``dtype`` x ``cache`` (defaults 1, fp32, warm)."""
    unknown = set(axes) - set(GEMM_AXES)
    if unknown:
        raise InvalidInputError(f"unknown gemm axes {sorted(unknown)}: use {', '.join(GEMM_AXES)}")
    shapes = [(s, s, s) for s in axes.get("sizes", [])] + [tuple(s) for s in axes.get("shapes", [])]
    if any(key in axes for key in ("m", "n", "k")):
        missing = [key for key in ("m", "n", "k") if key not in axes]
        if missing:
            raise InvalidInputError(f"gemm axes m, n and k go together; missing {missing}")
        shapes += [(m, n, k) for m in axes["m"] for n in axes["n"] for k in axes["k"]]
    if not shapes:
        raise InvalidInputError("no GEMM shapes: give sizes, shapes or m/n/k")
    for shape in shapes:
        if len(shape) != 3:
            raise InvalidInputError(f"a GEMM shape has three sizes m, n, k; got {list(shape)!r}")
    return [GemmCase(batch=b, m=m, n=n, k=k, dtype=d, cache_mode=c, seed=seed)
            for (m, n, k) in shapes for b in axes.get("batch", [1]) for d in axes.get("dtype", ["fp32"])
            for c in axes.get("cache", ["warm"])]
