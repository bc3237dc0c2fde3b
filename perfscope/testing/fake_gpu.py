"""One fake GPU for ``FakeNvml``: its table, the records NVML returns, and its energy physics.

Power is a constant or a function of the clock's time; energy is its integral
(trapezoids for a function), and the energy counter, like a real one, moves only every
``counter_update_s`` of clock time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from perfscope.testing.nvml_codes import NVML_SUCCESS

_MAX_INTEGRATION_STEPS = 10_000
_INTEGRATION_STEP_S = 0.001

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


def power_w_at(gpu: FakeGpu, t_s: float) -> float:
    """The power draw of ``gpu`` at clock time ``t_s``, in watts."""
    power = gpu.power_w
    return float(power(t_s)) if callable(power) else float(power)


def energy_mj_between(gpu: FakeGpu, start_s: float, end_s: float) -> float:
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
        total += 0.5 * (power_w_at(gpu, t0) + power_w_at(gpu, t0 + h)) * h
    return 1000.0 * total


class EnergyCounter:
    """The energy counter of one GPU: the energy at ``time_s``, the last update read."""

    def __init__(self, start_s: float, initial_mj: float) -> None:
        self.origin_s = start_s
        self.time_s = start_s
        self.energy_mj = float(initial_mj)

    def read_mj(self, gpu: FakeGpu, now_s: float) -> int:
        """The counter at ``now_s``: the energy at the last update (every ``counter_update_s``)."""
        if gpu.counter_update_s > 0:
            updates = math.floor((now_s - self.origin_s) / gpu.counter_update_s)
            last_update_s = self.origin_s + updates * gpu.counter_update_s
        else:
            last_update_s = now_s
        if last_update_s > self.time_s:
            self.energy_mj += energy_mj_between(gpu, self.time_s, last_update_s)
            self.time_s = last_update_s
        return int(self.energy_mj)

    def true_mj(self, gpu: FakeGpu, now_s: float) -> float:
        """The exact energy at ``now_s`` (not quantised to counter updates)."""
        return self.energy_mj + energy_mj_between(gpu, self.time_s, now_s)
