"""A fake ``pynvml`` module: per-GPU tables and an energy counter driven by a clock.

    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = NvmlCounterMeter(nvml=nvml, clock=clock)
    token = meter.begin(); clock.advance(2.0); meter.end(token).energy_j  # ~500 J

Like the real library, every query raises ``NVMLError(NVML_ERROR_UNINITIALIZED)``
until ``nvmlInit()`` has been called (``require_init=False`` lifts that), and the
energy counter only moves every ``counter_update_s`` of clock time.
``fail(fn_name, code)`` makes one function raise a chosen NVML error.

The return codes live in ``perfscope.testing.nvml_codes``, the GPU table and its
energy physics in ``perfscope.testing.fake_gpu``; both are re-exported here.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from perfscope.testing.fake_gpu import (
    EnergyCounter,
    FakeFieldValue,
    FakeFieldValueUnion,
    FakeGpu,
    FakeHandle,
    FakeUtilization,
    PowerSpec,
    power_w_at,
)
from perfscope.testing.nvml_codes import (
    CLOCKS_EVENT_REASON_APPLICATIONS_CLOCKS_SETTING,
    CLOCKS_EVENT_REASON_GPU_IDLE,
    CLOCKS_EVENT_REASON_HW_SLOWDOWN,
    CLOCKS_EVENT_REASON_HW_THERMAL_SLOWDOWN,
    CLOCKS_EVENT_REASON_SW_POWER_CAP,
    CLOCKS_EVENT_REASON_SW_THERMAL_SLOWDOWN,
    NVML_CLOCK_GRAPHICS,
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_FUNCTION_NOT_FOUND,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNINITIALIZED,
    NVML_ERROR_UNKNOWN,
    NVML_FI_DEV_POWER_INSTANT,
    NVML_SUCCESS,
    NVML_TEMPERATURE_GPU,
    NVMLError,
)

__all__ = [
    "CLOCKS_EVENT_REASON_APPLICATIONS_CLOCKS_SETTING", "CLOCKS_EVENT_REASON_GPU_IDLE",
    "CLOCKS_EVENT_REASON_HW_SLOWDOWN", "CLOCKS_EVENT_REASON_HW_THERMAL_SLOWDOWN", "CLOCKS_EVENT_REASON_SW_POWER_CAP",
    "CLOCKS_EVENT_REASON_SW_THERMAL_SLOWDOWN", "NVML_CLOCK_GRAPHICS", "NVML_CLOCK_MEM", "NVML_CLOCK_SM",
    "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_INVALID_ARGUMENT", "NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_NO_PERMISSION", "NVML_ERROR_NOT_FOUND",
    "NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_UNINITIALIZED", "NVML_ERROR_UNKNOWN", "NVML_FI_DEV_POWER_INSTANT",
    "NVML_SUCCESS", "NVML_TEMPERATURE_GPU", "FakeFieldValue", "FakeFieldValueUnion", "FakeGpu", "FakeHandle",
    "FakeNvml", "FakeUtilization", "NVMLError", "PowerSpec",
]


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
        self._energy = [EnergyCounter(start_s, g.initial_energy_mj) for g in self.gpus]

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
            return self._energy[index].true_mj(self.gpus[index], self.clock())

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
            return self._energy[index].read_mj(gpu, self.clock())

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        """Power draw in mW (the fake reports the instant value)."""
        self._enter("nvmlDeviceGetPowerUsage")
        _, gpu = self._gpu(handle)
        return int(round(1000.0 * power_w_at(gpu, self.clock())))

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
                mw = int(round(1000.0 * power_w_at(gpu, now_s)))
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
