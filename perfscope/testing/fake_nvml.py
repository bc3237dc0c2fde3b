"""A fake ``pynvml`` module: per-GPU tables and an energy counter driven by a clock.

    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = NvmlCounterMeter(nvml=nvml, clock=clock)
    token = meter.begin(); clock.advance(2.0); meter.end(token).energy_j  # ~500 J

Like the real library, every query raises ``NVMLError(NVML_ERROR_UNINITIALIZED)``
until ``nvmlInit()`` has been called (``require_init=False`` lifts that), and the
energy counter only moves every ``counter_update_s`` of clock time.
``fail(fn_name, code)`` makes one function raise a chosen NVML error.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Return codes and constants, with pynvml's values.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

NVML_FI_DEV_POWER_INSTANT = 186
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0

CLOCKS_EVENT_REASON_GPU_IDLE = 0x1
CLOCKS_EVENT_REASON_APPLICATIONS_CLOCKS_SETTING = 0x2
CLOCKS_EVENT_REASON_SW_POWER_CAP = 0x4
CLOCKS_EVENT_REASON_HW_SLOWDOWN = 0x8
CLOCKS_EVENT_REASON_SW_THERMAL_SLOWDOWN = 0x20
CLOCKS_EVENT_REASON_HW_THERMAL_SLOWDOWN = 0x40

_ERROR_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

_MAX_INTEGRATION_STEPS = 10_000
_INTEGRATION_STEP_S = 0.001


class NVMLError(Exception):
    """The fake's ``NVMLError``: like pynvml's, it carries the return code in ``value``."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _ERROR_STRINGS.get(self.value, f"NVML Error with code {self.value}")


PowerSpec = float | Callable[[float], float]
"""Watts: a constant, or a function of the clock's time in seconds."""


@dataclass
class FakeGpu:
    """One fake GPU's table. Fields may be changed while a test runs.

    ``power_w`` is a constant or a function of the clock's time (seconds, as the
    clock reports it). A changed constant counts from the last counter update read.
    """

    name: str = "NVIDIA Fake GPU"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    power_w: PowerSpec = 250.0
    power_limit_w: float = 300.0
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    temperature_c: int = 45
    throttle_reasons: int = 0
    energy_counter_supported: bool = True
    field_values_supported: bool = True
    counter_update_s: float = 0.1
    initial_energy_mj: int = 1_000_000_000
    utilization_gpu_pct: int = 0
    utilization_memory_pct: int = 0
    persistence_mode: int = 1  # 1 enabled, 0 disabled; None: not supported (as on Windows)
    max_sm_clock_mhz: int = 1980


@dataclass(frozen=True)
class FakeHandle:
    """A device handle as returned by ``nvmlDeviceGetHandleByIndex``."""

    index: int
    owner_id: int


@dataclass
class FakeFieldValueUnion:
    """The ``value`` union of a field value; the fake fills the member NVML would."""

    uiVal: int = 0
    ullVal: int = 0
    dVal: float = 0.0


@dataclass
class FakeFieldValue:
    """One entry returned by ``nvmlDeviceGetFieldValues``."""

    fieldId: int
    scopeId: int = 0
    nvmlReturn: int = NVML_SUCCESS
    value: FakeFieldValueUnion | None = None
    timestamp: int = 0


@dataclass(frozen=True)
class FakeUtilization:
    """What ``nvmlDeviceGetUtilizationRates`` returns (percent)."""

    gpu: int
    memory: int


class _EnergyState:
    """The energy of one GPU at ``time_s``, the last counter update read."""

    def __init__(self, start_s: float, initial_mj: float) -> None:
        self.origin_s = start_s
        self.time_s = start_s
        self.energy_mj = float(initial_mj)


class FakeNvml:
    """An object usable in place of the ``pynvml`` module, backed by ``FakeGpu`` tables.

    ``clock`` (default ``time.monotonic``) drives the energy counter and the time
    passed to ``power_w`` functions. ``library_present=False`` simulates a machine
    without the driver's library: ``nvmlInit`` raises ``NVML_ERROR_LIBRARY_NOT_FOUND``.
    ``calls`` counts calls per function name; ``init_count`` counts ``nvmlInit`` calls.
    """

    NVMLError = NVMLError

    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN
    NVML_FI_DEV_POWER_INSTANT = NVML_FI_DEV_POWER_INSTANT
    NVML_CLOCK_GRAPHICS = NVML_CLOCK_GRAPHICS
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    nvmlClocksEventReasonGpuIdle = CLOCKS_EVENT_REASON_GPU_IDLE
    nvmlClocksEventReasonApplicationsClocksSetting = (
        CLOCKS_EVENT_REASON_APPLICATIONS_CLOCKS_SETTING
    )
    nvmlClocksEventReasonSwPowerCap = CLOCKS_EVENT_REASON_SW_POWER_CAP
    nvmlClocksEventReasonHwSlowdown = CLOCKS_EVENT_REASON_HW_SLOWDOWN
    nvmlClocksEventReasonSwThermalSlowdown = CLOCKS_EVENT_REASON_SW_THERMAL_SLOWDOWN
    nvmlClocksEventReasonHwThermalSlowdown = CLOCKS_EVENT_REASON_HW_THERMAL_SLOWDOWN

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        clock: Callable[[], float] | None = None,
        library_present: bool = True,
        driver_version: str = "550.54.15",
        cuda_driver_version: int = 12040,
        require_init: bool = True,
    ) -> None:
        self.gpus: list[FakeGpu] = list(gpus) if gpus is not None else [FakeGpu()]
        self.clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self.library_present = library_present
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.require_init = require_init
        self.init_count = 0
        self.calls: Counter[str] = Counter()
        self._init_refs = 0
        self._failures: dict[str, list[int | None]] = {}
        self._lock = threading.RLock()
        start_s = self.clock()
        self._energy = [_EnergyState(start_s, g.initial_energy_mj) for g in self.gpus]

    # ----- test controls -------------------------------------------------------------

    def fail(self, fn_name: str, code: int, times: int | None = None) -> None:
        """Make ``fn_name`` raise ``NVMLError(code)`` (``times`` calls, or until cleared)."""
        if not callable(getattr(self, fn_name, None)) or not fn_name.startswith("nvml"):
            raise ValueError(f"FakeNvml has no NVML function {fn_name!r}")
        with self._lock:
            self._failures[fn_name] = [code, times]

    def clear_failures(self) -> None:
        """Undo every ``fail``."""
        with self._lock:
            self._failures.clear()

    def true_energy_mj(self, index: int = 0) -> float:
        """The exact energy of GPU ``index`` now (not quantised to counter updates)."""
        with self._lock:
            state = self._energy[index]
            return state.energy_mj + self._energy_mj(
                self.gpus[index], state.time_s, self.clock()
            )

    # ----- internals -----------------------------------------------------------------

    def _enter(self, fn_name: str, *, needs_init: bool = True) -> None:
        with self._lock:
            self.calls[fn_name] += 1
            failure = self._failures.get(fn_name)
            if failure is not None:
                code, remaining = failure
                if remaining is not None:
                    if remaining <= 1:
                        del self._failures[fn_name]
                    else:
                        failure[1] = remaining - 1
                raise NVMLError(int(code))  # type: ignore[arg-type]
            if needs_init and self.require_init and self._init_refs <= 0:
                raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any) -> tuple[int, FakeGpu]:
        if (
            not isinstance(handle, FakeHandle)
            or handle.owner_id != id(self)
            or not 0 <= handle.index < len(self.gpus)
        ):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return handle.index, self.gpus[handle.index]

    def _power_w(self, gpu: FakeGpu, t_s: float) -> float:
        power = gpu.power_w
        return float(power(t_s)) if callable(power) else float(power)

    def _energy_mj(self, gpu: FakeGpu, start_s: float, end_s: float) -> float:
        """Energy of ``gpu`` between two times, in mJ (trapezoids for a power function)."""
        dt = end_s - start_s
        if dt <= 0:
            return 0.0
        if not callable(gpu.power_w):
            return 1000.0 * float(gpu.power_w) * dt
        steps = min(_MAX_INTEGRATION_STEPS, max(1, math.ceil(dt / _INTEGRATION_STEP_S)))
        h = dt / steps
        total = 0.0
        for k in range(steps):
            t0 = start_s + k * h
            total += 0.5 * (self._power_w(gpu, t0) + self._power_w(gpu, t0 + h)) * h
        return 1000.0 * total

    # ----- library -------------------------------------------------------------------

    def nvmlInit(self) -> None:
        """Initialise (fails with ``NVML_ERROR_LIBRARY_NOT_FOUND`` without the library)."""
        self._enter("nvmlInit", needs_init=False)
        if not self.library_present:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        with self._lock:
            self.init_count += 1
            self._init_refs += 1

    def nvmlShutdown(self) -> None:
        """Undo one ``nvmlInit``."""
        self._enter("nvmlShutdown")
        with self._lock:
            self._init_refs -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    # ----- devices -------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(index, id(self))

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        self._enter("nvmlDeviceGetName")
        return self._gpu(handle)[1].name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        self._enter("nvmlDeviceGetUUID")
        return self._gpu(handle)[1].uuid

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        """Energy since the driver loaded, in mJ; moves only every ``counter_update_s``."""
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        index, gpu = self._gpu(handle)
        if not gpu.energy_counter_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        with self._lock:
            state = self._energy[index]
            now_s = self.clock()
            if gpu.counter_update_s > 0:
                updates = math.floor((now_s - state.origin_s) / gpu.counter_update_s)
                last_update_s = state.origin_s + updates * gpu.counter_update_s
            else:
                last_update_s = now_s
            # The reported value is the energy at the last update, kept in ``state``.
            if last_update_s > state.time_s:
                state.energy_mj += self._energy_mj(gpu, state.time_s, last_update_s)
                state.time_s = last_update_s
            return int(state.energy_mj)

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        """Power draw in mW (the fake reports the instant value)."""
        self._enter("nvmlDeviceGetPowerUsage")
        _, gpu = self._gpu(handle)
        return int(round(1000.0 * self._power_w(gpu, self.clock())))

    def nvmlDeviceGetFieldValues(
        self, handle: FakeHandle, field_ids: list[int | tuple[int, int]]
    ) -> list[FakeFieldValue]:
        """Field values; only ``NVML_FI_DEV_POWER_INSTANT`` (mW in ``value.uiVal``)."""
        self._enter("nvmlDeviceGetFieldValues")
        _, gpu = self._gpu(handle)
        now_s = self.clock()
        out: list[FakeFieldValue] = []
        for field in field_ids:
            field_id, scope_id = field if isinstance(field, tuple) else (field, 0)
            entry = FakeFieldValue(
                fieldId=field_id, scopeId=scope_id, timestamp=int(now_s * 1e6)
            )
            if field_id == NVML_FI_DEV_POWER_INSTANT and gpu.field_values_supported:
                mw = int(round(1000.0 * self._power_w(gpu, now_s)))
                entry.value = FakeFieldValueUnion(uiVal=mw, ullVal=mw)
            else:
                entry.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
                entry.value = FakeFieldValueUnion()
            out.append(entry)
        return out

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, clock_type: int) -> int:
        self._enter("nvmlDeviceGetClockInfo")
        _, gpu = self._gpu(handle)
        if clock_type in (NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM):
            return gpu.sm_clock_mhz
        if clock_type == NVML_CLOCK_MEM:
            return gpu.mem_clock_mhz
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature")
        _, gpu = self._gpu(handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature_c

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        """The enforced power limit in mW."""
        self._enter("nvmlDeviceGetEnforcedPowerLimit")
        return int(round(1000.0 * self._gpu(handle)[1].power_limit_w))

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetCurrentClocksEventReasons")
        return self._gpu(handle)[1].throttle_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:
        self._enter("nvmlDeviceGetCurrentClocksThrottleReasons")
        return self._gpu(handle)[1].throttle_reasons

    def nvmlDeviceGetPersistenceMode(self, handle: FakeHandle) -> int:
        """1 when persistence mode is on, 0 when off (``NOT_SUPPORTED`` when None)."""
        self._enter("nvmlDeviceGetPersistenceMode")
        mode = self._gpu(handle)[1].persistence_mode
        if mode is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return mode

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeHandle, clock_type: int) -> int:
        """The highest clock of ``clock_type`` in MHz (the SM clock's; memory as now)."""
        self._enter("nvmlDeviceGetMaxClockInfo")
        _, gpu = self._gpu(handle)
        if clock_type in (NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM):
            return gpu.max_sm_clock_mhz
        if clock_type == NVML_CLOCK_MEM:
            return gpu.mem_clock_mhz
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> FakeUtilization:
        self._enter("nvmlDeviceGetUtilizationRates")
        _, gpu = self._gpu(handle)
        return FakeUtilization(gpu=gpu.utilization_gpu_pct, memory=gpu.utilization_memory_pct)
