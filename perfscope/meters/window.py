"""The energy protocol of one configuration (docs/measurement.md, step 5).

Idle power is measured first (device synchronised, sleeping), then the kernel runs back
to back through ``device.run_untimed`` for a window long enough for the meter, and the
meter's reading is divided by the call count. Gross energy per call is the reading per
call; net energy per call subtracts idle power times the measured time per call.

A meter that cannot be trusted for this window (``MeasurementError``) or stops being
usable does not stop a sweep: the result carries the reason in ``energy_reason``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from perfscope.devices.base import Device, Kernel
from perfscope.errors import InvalidInputError, MeasurementError, MeterUnavailableError, NvmlError
from perfscope.meters.base import EnergyMeter, EnergyReading
from perfscope.meters.null import NullMeter

DEFAULT_WINDOW_S = 0.25
DEFAULT_IDLE_S = 0.25
MAX_RETRIES = 3

_METER_ERRORS = (MeasurementError, MeterUnavailableError, NvmlError)


@dataclass
class EnergyResult:
    """The energy columns of one row (names match ``perfscope.schema``'s fields).

    Energies are per call. ``energy_reason`` is None when everything was measured; it
    says why when energy (or idle power, and so net energy) is missing.
    """

    energy_method: str
    energy_is_estimate: bool = False
    energy_gross_j: float | None = None
    energy_net_j: float | None = None
    power_avg_w: float | None = None
    power_idle_w: float | None = None
    energy_window_s: float | None = None
    energy_calls: int | None = None
    energy_reason: str | None = None

    def as_row(self) -> dict[str, object]:
        """The fields as a dict, ready to merge into a row."""
        return dataclasses.asdict(self)


def measure_energy(
    device: Device,
    kernel: Kernel,
    meter: EnergyMeter,
    per_call_s: float,
    first_call: int = 0,
    window_s: float | None = None,
    idle_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
) -> EnergyResult:
    """Measure idle power, then the energy per call of ``kernel`` over one window.

    ``per_call_s`` is the timed latency of one call; the window runs
    ``ceil(window_s / per_call_s)`` calls, ``window_s`` defaulting to
    ``max(1.2 * meter.min_window_s, 0.25)`` and the idle window ``idle_s`` to the same.
    A window shorter than ``meter.min_window_s`` is retried with twice the calls (at most
    three times). ``sleep`` and ``clock`` (seconds; used only to tell whether a window
    the meter rejected was too short) are injectable for tests.
    """
    if isinstance(meter, NullMeter):
        return EnergyResult(energy_method=meter.method, energy_reason=meter.reason)
    if not (math.isfinite(per_call_s) and per_call_s > 0):
        raise InvalidInputError(f"per_call_s must be a positive time, got {per_call_s!r}")
    if window_s is None:
        # 20% margin: a kernel slightly faster than its timed median must not fall
        # just short of the meter's minimum window and cost a retry
        window_s = max(1.2 * meter.min_window_s, DEFAULT_WINDOW_S)
    if idle_s is None:
        idle_s = max(meter.min_window_s, DEFAULT_IDLE_S)
    result = EnergyResult(energy_method=meter.method, energy_is_estimate=meter.is_estimate)

    idle_reason: str | None = None
    try:
        result.power_idle_w = _idle_power_w(device, meter, idle_s, sleep)
    except MeterUnavailableError as exc:
        result.energy_reason = str(exc)
        return result
    except _METER_ERRORS as exc:
        idle_reason = f"idle power not measured: {exc}"

    calls = max(1, math.ceil(window_s / per_call_s - 1e-9))
    next_call = first_call
    retries = 0
    while True:
        device.synchronize()
        start_s = clock()
        try:
            reading = _kernel_window(device, kernel, meter, calls, next_call)
        except _METER_ERRORS as exc:
            too_short = clock() - start_s < meter.min_window_s
            if too_short and retries < MAX_RETRIES and not isinstance(exc, MeterUnavailableError):
                next_call += calls
                calls *= 2
                retries += 1
                continue
            result.energy_reason = str(exc)
            return result
        if reading.duration_s >= meter.min_window_s:
            break
        if retries >= MAX_RETRIES:
            result.energy_reason = (
                f"energy window of {calls} calls lasted {reading.duration_s:.3g} s, shorter "
                f"than the {meter.min_window_s:g} s the {meter.method} meter needs, after "
                f"{MAX_RETRIES} retries"
            )
            return result
        next_call += calls
        calls *= 2
        retries += 1

    per_call_window_s = reading.duration_s / calls
    result.energy_gross_j = reading.energy_j / calls
    result.power_avg_w = reading.power_avg_w
    result.energy_window_s = reading.duration_s
    result.energy_calls = calls
    if result.power_idle_w is not None:
        result.energy_net_j = result.energy_gross_j - result.power_idle_w * per_call_window_s
    result.energy_reason = idle_reason
    return result


def _idle_power_w(
    device: Device, meter: EnergyMeter, idle_s: float, sleep: Callable[[float], None]
) -> float:
    """Mean power over ``idle_s`` seconds of sleeping with the device synchronised."""
    device.synchronize()
    token = meter.begin()
    sleep(idle_s)
    reading = meter.end(token)
    if reading.duration_s <= 0:
        raise MeasurementError(f"idle window lasted {reading.duration_s:g} s")
    return reading.power_avg_w


def _kernel_window(
    device: Device, kernel: Kernel, meter: EnergyMeter, calls: int, first_call: int
) -> EnergyReading:
    """Read the meter around ``calls`` back-to-back calls (``run_untimed`` synchronises)."""
    token = meter.begin()
    try:
        device.run_untimed(kernel, calls, first_call)
    except BaseException:
        _abandon(meter, token)
        raise
    return meter.end(token)


def _abandon(meter: EnergyMeter, token: object) -> None:
    """Close a window whose kernel failed, so sampling threads stop; ignore its reading."""
    try:
        meter.end(token)
    except Exception:  # noqa: BLE001 - the kernel's exception is the one that matters
        pass
