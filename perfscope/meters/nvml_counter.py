"""NVML energy-counter meter: deltas of ``nvmlDeviceGetTotalEnergyConsumption``.

The counter (Volta and newer) reports millijoules since the driver loaded but only
moves every 20 to 100 ms, so a window's energy is uncertain by about one update. A
window must therefore span at least ten updates (``min_window_s``), which keeps that
error near 10 % or below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perfscope.errors import MeasurementError
from perfscope.meters.base import EnergyReading
from perfscope.meters.nvml_base import NvmlMeter
from perfscope.nvml import nvml_call

MIN_COUNTER_UPDATES = 10
"""A window must span this many counter updates to be trusted."""

_MJ_PER_J = 1000.0


@dataclass(frozen=True)
class _CounterToken:
    meter_id: int
    energy_mj: int
    time_s: float


class NvmlCounterMeter(NvmlMeter):
    """Energy of one GPU from NVML's total-energy counter.

    ``nvml`` defaults to the lazily loaded ``pynvml`` and ``clock`` (seconds) to
    ``time.monotonic``. ``counter_update_s`` is the counter's update period (about
    100 ms on current GPUs; shorter on some). The constructor reads the counter once,
    so ``NvmlNotSupportedError`` (GPUs older than Volta) is raised here and callers can
    fall back to :class:`~perfscope.meters.nvml_sampled.NvmlSampledMeter`.
    """

    method = "nvml-counter"
    is_estimate = False

    def __init__(
        self,
        handle_index: int = 0,
        nvml: Any = None,
        clock: Callable[[], float] | None = None,
        counter_update_s: float = 0.1,
    ) -> None:
        super().__init__(handle_index, nvml, clock, counter_update_s, "counter_update_s")
        self.counter_update_s = float(counter_update_s)
        self.min_window_s = MIN_COUNTER_UPDATES * self.counter_update_s
        self._read_mj()  # support check: NvmlNotSupportedError propagates

    def _read_mj(self) -> int:
        return int(nvml_call(self._nvml, "nvmlDeviceGetTotalEnergyConsumption", self._handle))

    def begin(self) -> object:
        """Read the counter and the clock."""
        energy_mj = self._read_mj()
        return _CounterToken(id(self), energy_mj, self._clock())

    def end(self, token: object) -> EnergyReading:
        """Read the counter again; raises ``MeasurementError`` for an untrustworthy window."""
        if not isinstance(token, _CounterToken) or token.meter_id != id(self):
            raise TypeError("end() needs the token returned by this meter's begin()")
        energy_mj = self._read_mj()
        end_s = self._clock()
        duration_s = end_s - token.time_s
        update_ms = self.counter_update_s * 1e3
        if duration_s < self.min_window_s:
            raise MeasurementError(
                f"window of {duration_s * 1e3:.0f} ms spans fewer than "
                f"{MIN_COUNTER_UPDATES} counter updates (update period ~{update_ms:.0f} ms); "
                f"lengthen the energy window to at least {self.min_window_s * 1e3:.0f} ms"
            )
        delta_mj = energy_mj - token.energy_mj
        if delta_mj <= 0:
            raise MeasurementError(
                f"NVML energy counter of GPU {self.handle_index} did not increase over a "
                f"{duration_s * 1e3:.0f} ms window (change {delta_mj} mJ); the driver may "
                f"have been reloaded or the counter may update less often than "
                f"~{update_ms:.0f} ms: lengthen the window or use the nvml-sampled meter"
            )
        return EnergyReading(energy_j=delta_mj / _MJ_PER_J, duration_s=duration_s)
