"""Measuring one configuration (docs/measurement.md), the same for every kernel family.

A family provides a *case* (its configuration columns and how to build a
``Workload`` on a device); this module checks the result, times it, meters its
energy and records provenance into one ``Measurement`` row. Failures become rows
with a status and a reason so that a sweep goes on.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from perfscope.collectors.fp32_math import row_fp32_math
from perfscope.collectors.memory_guard import DEFAULT_MAX_MEMORY_SHARE, TOO_LARGE_STATUS, too_large_reason
from perfscope.devices.base import Device, DeviceState, Kernel
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.meters.base import EnergyMeter
from perfscope.meters.window import measure_energy
from perfscope.provenance import host_provenance
from perfscope.schema import Measurement, config_id
from perfscope.timing import TimingPolicy, TimingResult, measure


@dataclass
class Workload:
    """A configuration built on a device, ready to check and time."""

    kernel: Kernel  # kernel(i) runs one call on input set i % input_sets
    check: Callable[[], float]  # returns the normalised error of call 0's result
    check_tolerance: float
    flops: int
    min_bytes: int
    input_sets: int = 1
    release: Callable[[], None] = field(default=lambda: None)
    fp32_math: str | None = None  # ieee or tf32 as set while built (collectors.fp32_math); None: unknown


class Case(Protocol):
    """One configuration of a kernel family.

    A collector's case must subclass this explicitly (``class GemmCase(Case)``): ``run_sweep``
    calls ``for_device`` on every case, and the default comes from here.
    """

    kernel: str

    def config_columns(self) -> dict[str, Any]:
        """The configuration columns (a subset of ``schema.CONFIG_COLUMNS``)."""

    def build(self, device: Device) -> Workload:
        """Allocate inputs on ``device``; raise ``UnsupportedConfigError`` if it cannot run."""

    def for_device(self, device_kind: str) -> Case:
        """The case as measured on a ``device_kind`` device (``Device.kind``).

        A case with settings that apply on some devices only (cuDNN's autotuner) drops
        them elsewhere, so that two cases which run alike there get one config id.
        By default a case is the same everywhere: itself.
        """
        return self


CACHE_MODES = ("warm", "cold")  # inputs reused, or rotated through sets that outgrow the last-level cache


def check_cache_mode(cache_mode: str) -> None:
    """``InvalidInputError`` unless ``cache_mode`` is one of ``CACHE_MODES``."""
    if cache_mode not in CACHE_MODES:
        raise InvalidInputError(f"cache mode must be warm or cold, got {cache_mode!r}")


@dataclass(frozen=True)
class RunContext:
    """What every row of one sweep shares."""

    run_id: str
    device: Device
    meter: EnergyMeter
    policy: TimingPolicy = TimingPolicy()
    energy_window_s: float | None = None
    max_memory_share: float = DEFAULT_MAX_MEMORY_SHARE  # of free memory a configuration may need (memory guard)


def case_config_id(case: Case) -> str:
    """The stable config id of a case."""
    return config_id(case.config_columns())


def measure_case(case: Case, ctx: RunContext) -> tuple[Measurement, TimingResult | None]:
    """Measure one case and return its row (and the raw timing when it was timed)."""
    device = ctx.device
    threads = torch_threads()
    before = device.read_state()
    status, reason = "ok", None
    timing = energy = None
    workload: Workload | None = None
    error: float | None = None
    try:
        too_large = too_large_reason(case, device, ctx.max_memory_share)
        if too_large is not None:  # refused before anything is allocated; the sweep goes on
            raise _TooLarge(too_large)
        workload = case.build(device)
        error = workload.check()
        if not error <= workload.check_tolerance:  # also catches NaN
            status = "check_failed"
            reason = (f"result differs from the float64 reference: error {error:.3g} > "
                      f"tolerance {workload.check_tolerance:.3g}")
        else:
            timing = measure(device, workload.kernel, ctx.policy)
            energy = measure_energy(device, workload.kernel, ctx.meter, timing.median_s,
                                    first_call=timing.calls_made, window_s=ctx.energy_window_s)
    except _TooLarge as exc:
        status, reason = TOO_LARGE_STATUS, str(exc)
    except UnsupportedConfigError as exc:
        status, reason = "unsupported", str(exc)
    except Exception as exc:  # the sweep goes on; the row says what happened
        status = "oom" if _is_out_of_memory(exc) else "error"
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    finally:
        if workload is not None:
            workload.release()
        restore_torch_threads(threads)
    after = device.read_state()
    row = _row(case, ctx, status, reason, workload, error, timing, energy, before, after)
    return row, timing


class _TooLarge(Exception):
    """A configuration the memory guard refused (becomes a ``too_large`` row)."""


def torch_threads() -> int | None:
    """torch's intra-op thread count, or None when torch is not imported."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def restore_torch_threads(threads: int | None) -> None:
    """Put torch's intra-op thread count back to ``threads`` (from ``torch_threads()``):
    numba's OpenMP layer resets the shared libgomp setting when it starts its pool, which
    would silently change every later row. ``measure_case`` does this after every case;
    a case that starts numba also does it in its workload's ``release``."""
    torch = sys.modules.get("torch")
    if threads is not None and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _row(case: Case, ctx: RunContext, status: str, reason: str | None, workload: Workload | None,
         error: float | None, timing: TimingResult | None, energy: Any,
         before: DeviceState, after: DeviceState) -> Measurement:
    device = ctx.device
    desc = device.describe()
    config = case.config_columns()
    values: dict[str, Any] = dict(config)
    values.update(host_provenance())
    values.update(
        run_id=ctx.run_id,
        config_id=config_id(config),
        measured_at=datetime.now(timezone.utc),
        device_key=device.key,
        status=status,
        reason=reason,
        device_kind=desc.kind,
        device_name=desc.name,
        device_index=desc.index,
        gpu_uuid=desc.uuid,
        driver_version=desc.driver_version,
        compute_capability=desc.compute_capability,
        sm_count=desc.sm_count,
        last_level_cache_bytes=desc.last_level_cache_bytes,
        power_limit_w=desc.power_limit_w,
        clock_mhz_before=before.clock_mhz,
        clock_mhz_after=after.clock_mhz,
        mem_clock_mhz_before=before.mem_clock_mhz,
        mem_clock_mhz_after=after.mem_clock_mhz,
        temperature_c_before=before.temperature_c,
        temperature_c_after=after.temperature_c,
        throttle_reasons_before=before.throttle_reasons,
        throttle_reasons_after=after.throttle_reasons,
        throttled=_any_true(before.throttled, after.throttled),
    )
    if desc.cuda_version:
        values["cuda_version"] = desc.cuda_version
    if workload is not None:
        values.update(flops=workload.flops, min_bytes=workload.min_bytes,
                      input_sets=workload.input_sets, check_tolerance=workload.check_tolerance,
                      fp32_math=row_fp32_math(str(config.get("dtype")), workload.fp32_math))
    if error is not None and math.isfinite(error):
        values["check_max_abs_err"] = error
    if timing is not None:
        values.update(_timing_columns(timing))
        if workload is not None and timing.median_s > 0:
            values["achieved_flops_per_s"] = workload.flops / timing.median_s
            values["achieved_bytes_per_s"] = workload.min_bytes / timing.median_s
    if energy is not None:
        values.update(
            energy_method=energy.energy_method,
            energy_is_estimate=energy.energy_is_estimate,
            energy_gross_j=energy.energy_gross_j,
            energy_net_j=energy.energy_net_j,
            power_avg_w=energy.power_avg_w,
            power_idle_w=energy.power_idle_w,
            energy_window_s=energy.energy_window_s,
            energy_calls=energy.energy_calls,
            energy_reason=energy.energy_reason,
        )
    else:
        values.update(energy_method=ctx.meter.method, energy_is_estimate=ctx.meter.is_estimate,
                      energy_reason="not measured: the configuration was not timed")
    return Measurement(**values)


def _timing_columns(t: TimingResult) -> dict[str, Any]:
    low, high = t.median_ci_s
    return {
        "timing_method": t.method,
        "warmup_s": t.warmup_s,
        "time_median_ms": t.median_s * 1e3,
        "time_p10_ms": t.quantile_s(0.10) * 1e3,
        "time_p90_ms": t.quantile_s(0.90) * 1e3,
        "time_iqr_ms": t.iqr_s * 1e3,
        "time_mean_ms": t.mean_s * 1e3,
        "time_ci_low_ms": low * 1e3,
        "time_ci_high_ms": high * 1e3,
        "time_ci_rel": t.ci_rel,
        "samples_n": len(t.samples_s),
        "calls_per_sample": t.calls_per_sample,
        "samples_ms": [s * 1e3 for s in t.samples_s],
        "stopped_by": t.stopped_by,
        "noisy": t.noisy,
        "foreign_cpu_share": t.foreign_cpu_share,
    }


def _any_true(*flags: bool | None) -> bool | None:
    known = [f for f in flags if f is not None]
    return any(known) if known else None
