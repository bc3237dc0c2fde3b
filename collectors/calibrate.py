"""``perfscope calibrate``: measure a device's achieved peaks instead of trusting a spec sheet.

Three measurements, each with the perfscope timing harness (``perfscope.timing.measure``)
and each recorded with its method, raw timing statistics and status:

* achieved peak FLOP/s per dtype: one large square GEMM (``GemmCase``: torch.matmul;
  fp8 through ``torch._scaled_mm`` on CUDA), checked once against a float64 reference,
  FLOPs (2·n³) over the median call time;
* memory bandwidth: a large device-to-device copy (``dst.copy_(src)``, 256 MiB or 8x
  the last-level cache, whichever is larger), counted as read + write bytes;
* launch overhead: a 1-element ``torch.add`` into a preallocated output, the floor
  that small kernels hit (dispatch plus launch), median time per back-to-back call.

The result is a ``DeviceProfile`` (``source = "calibrated"``, ``perfscope.devices.profile``)
that the roofline features accept wherever they accept a ``DeviceSpec``. This module only
measures: ``perfscope.devices.registry`` saves the profile (``save_profile``), finds it
again and prefers it over the spec table.

The local CPU is never in the spec table: its figures must be measured here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from perfscope.collectors.fp8 import build_fp8_gemm
from perfscope.collectors.gemm import GemmCase
from perfscope.collectors.inputs import seeded_uniform
from perfscope.devices import select_device
from perfscope.devices.base import Device
from perfscope.devices.profile import CalibrationMeasurement, DeviceProfile
from perfscope.devices.registry import find_device_spec
from perfscope.dtypes import DTYPES, check_dtype, is_fp8
from perfscope.errors import InvalidInputError, MeasurementError, UnsupportedConfigError
from perfscope.provenance import host_provenance
from perfscope.timing import TimingPolicy, measure

# Default GEMM sizes (n for an n x n x n product). On this project's 2-core CPU, fp32
# reaches ~45 GFLOP/s at 2048 while bf16/fp16 run ~1 GFLOP/s (no native half-precision
# matmul path): 512 keeps each of those calls near 0.3 s, so calibrate ends in ~30 s.
CPU_GEMM_SIZES = {"fp32": 2048, "bf16": 512, "fp16": 512}
CUDA_GEMM_SIZE = 8192  # 1.1 TFLOP per call: long enough on any GPU in the spec table
COPY_BYTES_MIN = 256 * 2**20  # per buffer; at least 8x the last-level cache
LAUNCH_ELEMENTS = 1

CALIBRATE_POLICY = TimingPolicy(warmup_s=0.3, min_time_s=0.5, budget_s=4.0, target_ci_rel=0.02, min_samples=7)
"""Timing policy of each calibrate measurement (a 2% interval on the median, <= 4 s each)."""

Notify = Callable[[str], None]


# ---- measuring -------------------------------------------------------------------------

def calibrate(device: Device | str = "auto", *, dtypes: Sequence[str] | None = None,
              policy: TimingPolicy | None = None, gemm_sizes: Mapping[str, int] | None = None,
              copy_bytes: int | None = None, notify: Notify | None = None) -> DeviceProfile:
    """Measure ``device``'s achieved peak FLOP/s per dtype, memory bandwidth and launch overhead.

    ``device`` is a ``Device`` or a device string (auto, cpu, cuda, cuda:N). ``dtypes``
    defaults to every dtype the device kind can run (CPU: fp32, bf16, fp16); a dtype the
    device refuses is recorded as ``unsupported`` and gets no peak. ``gemm_sizes`` maps
    a dtype to n of its n x n x n GEMM (defaults: ``CPU_GEMM_SIZES`` / ``CUDA_GEMM_SIZE``),
    ``copy_bytes`` is the size of each copy buffer and ``policy`` the timing policy of
    every measurement (default ``CALIBRATE_POLICY``). ``notify`` receives progress lines.
    """
    try:
        import torch  # noqa: F401  (every measurement runs through torch)
    except ImportError as exc:
        raise ImportError("perfscope calibrate needs torch: install a CPU build (see README) "
                          "or `pip install perfscope[cuda]` on a GPU host") from exc

    start = time.perf_counter()
    say = notify or (lambda _message: None)
    dev = select_device(device, notify=say) if isinstance(device, str) else device
    policy = policy or CALIBRATE_POLICY
    chosen = list(dtypes) if dtypes is not None else _default_dtypes(dev)
    for d in chosen:
        check_dtype(d)
    desc = dev.describe()
    measurements: list[CalibrationMeasurement] = []
    for d in chosen:
        size = _gemm_size(dev, d, gemm_sizes)
        say(f"GEMM {size}x{size}x{size} {d} ...")
        measurements.append(_measure_gemm(dev, d, size, policy))
        say(_describe(measurements[-1]))
    copy_size = copy_bytes if copy_bytes is not None else _default_copy_bytes(dev)
    say(f"copy {copy_size / 2**20:.4g} MiB ...")
    measurements.append(_measure_copy(dev, copy_size, policy))
    say(_describe(measurements[-1]))
    say("1-element add (launch floor) ...")
    measurements.append(_measure_launch(dev, policy))
    say(_describe(measurements[-1]))

    peaks = {m.dtype: m.value for m in measurements
             if m.quantity == "peak_flops_per_s" and m.status == "ok" and m.dtype and m.value}
    bandwidth = _ok_value(measurements, "mem_bandwidth_bytes_per_s")
    launch = _ok_value(measurements, "launch_overhead_s")
    if launch is None:
        failed = [m for m in measurements if m.quantity == "launch_overhead_s"]
        raise MeasurementError(f"could not measure the launch floor on {dev.key}: "
                                     f"{failed[0].reason if failed else 'not run'}")
    provenance = host_provenance()
    sm_count = desc.sm_count if dev.kind == "cuda" else provenance.get("threads")
    spec = find_device_spec(desc.name) if dev.kind == "cuda" else None
    return DeviceProfile(
        device_key=dev.key,
        name=desc.name,
        kind=dev.kind,
        peaks_flops_per_s=peaks,
        mem_bandwidth_bytes_per_s=bandwidth,
        launch_overhead_s=launch,
        sm_count=int(sm_count) if sm_count else None,
        l2_bytes=desc.last_level_cache_bytes,
        memory_bytes=desc.memory_bytes,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        calibrate_s=time.perf_counter() - start,
        measurements=tuple(measurements),
        description=asdict(desc),
        provenance=dict(provenance),
        spec_id=spec.device_id if spec else None,
    )


def _default_dtypes(device: Device) -> list[str]:
    if device.kind == "cuda":
        return list(DTYPES)  # the ones this GPU or the collector cannot run are recorded as unsupported
    return [name for name, info in DTYPES.items() if not info.cuda_only]


def _gemm_size(device: Device, dtype: str, sizes: Mapping[str, int] | None) -> int:
    if sizes and dtype in sizes:
        size = sizes[dtype]
        if not isinstance(size, int) or size < 1:
            raise InvalidInputError(f"calibrate GEMM size for {dtype} must be a positive integer, got {size!r}")
        return size
    if device.kind == "cuda":
        return CUDA_GEMM_SIZE
    return CPU_GEMM_SIZES.get(dtype, CPU_GEMM_SIZES["fp32"])


def _default_copy_bytes(device: Device) -> int:
    desc = device.describe()
    size = max(COPY_BYTES_MIN, 8 * (desc.last_level_cache_bytes or 0))
    if desc.memory_bytes:  # two buffers must fit comfortably
        size = min(size, desc.memory_bytes // 8)
    return int(size)


def _measure_gemm(device: Device, dtype: str, size: int, policy: TimingPolicy) -> CalibrationMeasurement:
    case = GemmCase(batch=1, m=size, n=size, k=size, dtype=dtype)
    op = "torch._scaled_mm (per-tensor scales, bf16 output)" if is_fp8(dtype) else "torch.matmul"
    method = f"{op} {size}x{size}x{size} {dtype}, warm inputs, 2*n^3 FLOPs / median call time"
    return _run(device, "peak_flops_per_s", dtype, method, policy, lambda: _gemm_workload(case, device))


def _gemm_workload(case: Any, device: Device) -> tuple[Callable[[int], object], Callable[[], float], float, float,
                                                          Callable[[], None]]:
    if is_fp8(case.dtype):
        workload = build_fp8_gemm(case, device)
    else:
        workload = case.build(device)
    return workload.kernel, workload.check, workload.check_tolerance, float(workload.flops), workload.release


def _measure_copy(device: Device, copy_bytes: int, policy: TimingPolicy) -> CalibrationMeasurement:
    elements = max(1, copy_bytes // 4)
    method = (f"dst.copy_(src), fp32 {elements * 4 / 2**20:.4g} MiB per buffer, "
              "read + write bytes / median call time")

    def build() -> tuple[Any, ...]:
        import torch  # optional, slow to import; only measuring needs it

        src = seeded_uniform((elements,), torch.float32, device.torch_device, seed=7)
        dst = torch.empty_like(src)
        buffers = [src, dst]

        def check() -> float:
            dst.copy_(src)
            device.synchronize()
            return 0.0 if torch.equal(dst, src) else math.inf

        return (lambda _i: dst.copy_(src)), check, 0.0, float(2 * elements * 4), buffers.clear

    return _run(device, "mem_bandwidth_bytes_per_s", None, method, policy, build)


def _measure_launch(device: Device, policy: TimingPolicy) -> CalibrationMeasurement:
    method = (f"torch.add of {LAUNCH_ELEMENTS}-element fp32 tensors into a preallocated output, "
              "median time per back-to-back call")

    def build() -> tuple[Any, ...]:
        import torch  # optional, slow to import; only measuring needs it

        a = seeded_uniform((LAUNCH_ELEMENTS,), torch.float32, device.torch_device, seed=11)
        b = seeded_uniform((LAUNCH_ELEMENTS,), torch.float32, device.torch_device, seed=12)
        c = torch.empty_like(a)

        def check() -> float:
            torch.add(a, b, out=c)
            device.synchronize()
            return float((c - (a + b)).abs().max())

        return (lambda _i: torch.add(a, b, out=c)), check, 0.0, None, lambda: None

    return _run(device, "launch_overhead_s", None, method, policy, build)


def _run(device: Device, quantity: str, dtype: str | None, method: str, policy: TimingPolicy,
         build: Callable[[], tuple[Any, ...]]) -> CalibrationMeasurement:
    """Build, check once, time with the harness; failures become a measurement with a status."""
    start = time.perf_counter()
    release: Callable[[], None] = lambda: None  # noqa: E731
    base = {"quantity": quantity, "dtype": dtype, "method": method}
    try:
        kernel, check, tolerance, work, release = build()
        error = check()
        if not error <= tolerance:  # also catches NaN
            return CalibrationMeasurement(**base, status="check_failed", check_max_abs_err=_finite(error),
                                          reason=f"result differs from the reference: {error:.3g} > {tolerance:.3g}",
                                          elapsed_s=time.perf_counter() - start)
        timing = measure(device, kernel, policy)
    except UnsupportedConfigError as exc:
        return CalibrationMeasurement(**base, status="unsupported", reason=str(exc),
                                      elapsed_s=time.perf_counter() - start)
    except Exception as exc:  # calibrate goes on: the profile says what failed
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return CalibrationMeasurement(**base, status="error", reason=reason, elapsed_s=time.perf_counter() - start)
    finally:
        release()
    median = timing.median_s
    if quantity == "launch_overhead_s":
        value = median
    else:
        value = work / median if median > 0 else None
    return CalibrationMeasurement(
        **base, status="ok", value=value, work_per_call=work, timing_method=timing.method,
        time_median_s=median, time_p10_s=timing.quantile_s(0.10), time_p90_s=timing.quantile_s(0.90),
        time_ci_rel=timing.ci_rel, samples_n=len(timing.samples_s), calls_per_sample=timing.calls_per_sample,
        stopped_by=timing.stopped_by, noisy=timing.noisy, check_max_abs_err=_finite(error),
        elapsed_s=time.perf_counter() - start)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _ok_value(measurements: Sequence[CalibrationMeasurement], quantity: str) -> float | None:
    for m in measurements:
        if m.quantity == quantity and m.status == "ok":
            return m.value
    return None


def _describe(m: CalibrationMeasurement) -> str:
    label = f"{m.quantity}{f' {m.dtype}' if m.dtype else ''}"
    if m.status != "ok" or m.value is None:
        return f"{label}: {m.status} ({m.reason})"
    if m.quantity == "peak_flops_per_s":
        text = f"{m.value / 1e9:.2f} GFLOP/s"
    elif m.quantity == "mem_bandwidth_bytes_per_s":
        text = f"{m.value / 1e9:.2f} GB/s"
    else:
        text = f"{m.value * 1e6:.2f} us"
    return f"{label}: {text} (median of {m.samples_n} samples, ci +-{(m.time_ci_rel or 0) * 100:.1f}%)"
