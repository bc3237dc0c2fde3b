"""GEMM through PyTorch: ``torch.matmul`` (batch 1) and ``torch.bmm`` (batch > 1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from perfscope.devices.base import Device
from perfscope.dtypes import dtype_info
from perfscope.errors import UnsupportedConfigError, UserInputError
from perfscope.features import gemm_flops, gemm_min_bytes
from perfscope.collectors.inputs import input_set_count, seeded_uniform, torch_dtype
from perfscope.collectors.protocol import Workload

CHECK_ROWS = 64  # rows of C compared with the float64 reference (keeps the check cheap)


@dataclass(frozen=True)
class GemmCase:
    """C[b] = A[b] @ B[b] with A (m x k), B (k x n), inputs uniform in [-1, 1]."""

    batch: int
    m: int
    n: int
    k: int
    dtype: str
    cache_mode: str = "warm"
    seed: int = 0
    kernel: str = "gemm"

    def __post_init__(self) -> None:
        for name in ("batch", "m", "n", "k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserInputError(f"gemm {name} must be a positive integer, got {value!r}")
        dtype_info(self.dtype)
        if self.cache_mode not in ("warm", "cold"):
            raise UserInputError(f"cache mode must be warm or cold, got {self.cache_mode!r}")

    @property
    def implementation(self) -> str:
        if self.dtype.startswith("fp8"):
            return "torch._scaled_mm"
        return "torch.matmul" if self.batch == 1 else "torch.bmm"

    def config_columns(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "implementation": self.implementation, "dtype": self.dtype,
                "cache_mode": self.cache_mode, "batch": self.batch, "m": self.m, "n": self.n, "k": self.k}

    def build(self, device: Device) -> Workload:
        import torch

        info = dtype_info(self.dtype)
        _check_supported(info, device)
        if info.name.startswith("fp8"):
            from perfscope.collectors.fp8 import build_fp8_gemm

            return build_fp8_gemm(self, device)
        if device.kind == "cuda":
            # tf32 is fp32 storage with tensor-core multiplies; plain fp32 must not use it
            torch.backends.cuda.matmul.allow_tf32 = self.dtype == "tf32"
        storage = torch_dtype(info)
        b, m, n, k = self.batch, self.m, self.n, self.k
        set_bytes = info.bytes_per_element * b * (m * k + k * n + m * n)
        sets = input_set_count(self.cache_mode, set_bytes, device)
        shape_a = (m, k) if b == 1 else (b, m, k)
        shape_b = (k, n) if b == 1 else (b, k, n)
        shape_c = (m, n) if b == 1 else (b, m, n)
        dev = device.torch_device
        inputs = []
        for s in range(sets):
            a = seeded_uniform(shape_a, storage, dev, seed=self.seed * 1000 + 2 * s)
            bb = seeded_uniform(shape_b, storage, dev, seed=self.seed * 1000 + 2 * s + 1)
            c = torch.empty(shape_c, dtype=storage, device=dev)
            inputs.append((a, bb, c))
        op = torch.matmul if b == 1 else torch.bmm

        def call(i: int) -> None:
            a, bb, c = inputs[i % sets]
            op(a, bb, out=c)

        def check() -> float:
            a, bb, c = inputs[0]
            call(0)
            device.synchronize()
            rows = min(m, CHECK_ROWS)
            ref = a[..., :rows, :].double().cpu() @ bb.double().cpu()
            got = c[..., :rows, :].double().cpu()
            return float((got - ref).abs().max()) / math.sqrt(k)

        return Workload(kernel=call, check=check, check_tolerance=info.check_tolerance,
                        flops=gemm_flops(b, m, n, k), min_bytes=gemm_min_bytes(b, m, n, k, self.dtype),
                        input_sets=sets, release=inputs.clear)


def _check_supported(info: Any, device: Device) -> None:
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
        raise UserInputError(f"unknown gemm axes {sorted(unknown)}: use {', '.join(GEMM_AXES)}")
    shapes = [(s, s, s) for s in axes.get("sizes", [])] + [tuple(s) for s in axes.get("shapes", [])]
    if any(key in axes for key in ("m", "n", "k")):
        missing = [key for key in ("m", "n", "k") if key not in axes]
        if missing:
            raise UserInputError(f"gemm axes m, n and k go together; missing {missing}")
        shapes += [(m, n, k) for m in axes["m"] for n in axes["n"] for k in axes["k"]]
    if not shapes:
        raise UserInputError("no GEMM shapes: give sizes, shapes or m/n/k")
    for shape in shapes:
        if len(shape) != 3:
            raise UserInputError(f"a GEMM shape has three sizes m, n, k; got {list(shape)!r}")
    return [GemmCase(batch=b, m=m, n=n, k=k, dtype=d, cache_mode=c, seed=seed)
            for (m, n, k) in shapes for b in axes.get("batch", [1]) for d in axes.get("dtype", ["fp32"])
            for c in axes.get("cache", ["warm"])]
