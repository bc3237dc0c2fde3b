"""NVML sampled-power meter: a thread samples power, energy is its time integral.

For GPUs without the energy counter. The instant power field
(``nvmlDeviceGetFieldValues`` with ``NVML_FI_DEV_POWER_INSTANT``) is preferred over
``nvmlDeviceGetPowerUsage``, which on Ampere and newer is a one-second average and so
smears short windows; ``power_source`` says which one a meter uses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from perfscope.errors import MeasurementError, NvmlNotSupportedError, PerfscopeError
from perfscope.meters.base import EnergyReading
from perfscope.meters.nvml_base import NvmlMeter
from perfscope.nvml import nvml_call

NVML_FI_DEV_POWER_INSTANT = 186
NVML_SUCCESS = 0

POWER_SOURCE_FIELD = "field-instant"
"""Power read from ``nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)``."""
POWER_SOURCE_USAGE = "power-usage"
"""Power read from ``nvmlDeviceGetPowerUsage`` (a 1 s average on Ampere and newer)."""

MIN_SAMPLES_PER_WINDOW = 10
MIN_WINDOW_FLOOR_S = 0.1


def integrate_power_j(times_s: Sequence[float], powers_w: Sequence[float]) -> float:
    """Energy in joules of power samples ``(times_s[i], powers_w[i])``, trapezoid rule.

    Times must not decrease. Raises ``MeasurementError`` for fewer than two samples and
    ``ValueError`` for sequences of different lengths or times going backwards.
    """
    if len(times_s) != len(powers_w):
        raise ValueError(
            f"times_s and powers_w differ in length ({len(times_s)} != {len(powers_w)})"
        )
    if len(times_s) < 2:
        raise MeasurementError(
            f"need at least 2 power samples to integrate energy, got {len(times_s)}; "
            f"lengthen the energy window or shorten the sampling interval"
        )
    energy_j = 0.0
    for i in range(1, len(times_s)):
        dt_s = times_s[i] - times_s[i - 1]
        if dt_s < 0:
            raise ValueError(f"sample times go backwards at index {i} ({dt_s} s)")
        energy_j += 0.5 * (powers_w[i] + powers_w[i - 1]) * dt_s
    return energy_j


class _Window:
    """One measurement window: its samples and the thread that takes them."""

    def __init__(self, meter_id: int) -> None:
        self.meter_id = meter_id
        self.times_s: list[float] = []
        self.powers_w: list[float] = []
        self.stop = threading.Event()
        self.error: Exception | None = None
        self.thread: threading.Thread | None = None
        self.finished = False


class NvmlSampledMeter(NvmlMeter):
    """Energy of one GPU by sampling its power every ``interval_s`` in a daemon thread.

    ``nvml`` defaults to the lazily loaded ``pynvml`` and ``clock`` (seconds) to
    ``time.monotonic``. A window takes one sample at ``begin``, samples in the
    background while it is open, and one more at ``end``; the energy is the
    trapezoid integral over them. The constructor reads power once, so a GPU that
    reports no power at all fails here (``NvmlNotSupportedError``).
    """

    method = "nvml-sampled"
    is_estimate = False

    def __init__(
        self,
        handle_index: int = 0,
        nvml: Any = None,
        clock: Callable[[], float] | None = None,
        interval_s: float = 0.01,
    ) -> None:
        super().__init__(handle_index, nvml, clock, interval_s, "interval_s")
        self.interval_s = float(interval_s)
        self.min_window_s = max(MIN_WINDOW_FLOOR_S, MIN_SAMPLES_PER_WINDOW * self.interval_s)
        self.power_source = self._detect_power_source()
        self.last_sample_count = 0
        self._windows: set[_Window] = set()
        self._windows_lock = threading.Lock()

    # ----- power ---------------------------------------------------------------------

    def _field_power_w(self) -> float | None:
        """Instant power from the field value, or None when the field is unsupported."""
        field_id = getattr(self._nvml, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)
        values = nvml_call(self._nvml, "nvmlDeviceGetFieldValues", self._handle, [field_id])
        value = values[0]
        if value.nvmlReturn != NVML_SUCCESS:
            return None
        return value.value.uiVal / 1000.0

    def _detect_power_source(self) -> str:
        try:
            if self._field_power_w() is not None:
                return POWER_SOURCE_FIELD
        except NvmlNotSupportedError:
            pass
        nvml_call(self._nvml, "nvmlDeviceGetPowerUsage", self._handle)
        return POWER_SOURCE_USAGE

    def read_power_w(self) -> float:
        """One power reading in watts from ``power_source``."""
        if self.power_source == POWER_SOURCE_FIELD:
            power_w = self._field_power_w()
            if power_w is None:
                raise MeasurementError(
                    f"GPU {self.handle_index} stopped reporting the instant power field"
                )
            return power_w
        return nvml_call(self._nvml, "nvmlDeviceGetPowerUsage", self._handle) / 1000.0

    def _sample(self, window: _Window) -> None:
        time_s = self._clock()
        power_w = self.read_power_w()
        window.times_s.append(time_s)
        window.powers_w.append(power_w)

    def _run(self, window: _Window) -> None:
        try:
            while not window.stop.wait(self.interval_s):
                self._sample(window)
        except Exception as exc:  # reported by end()
            window.error = exc

    # ----- windows -------------------------------------------------------------------

    def begin(self) -> object:
        """Take a first sample and start the sampling thread."""
        window = _Window(id(self))
        self._sample(window)
        window.thread = threading.Thread(
            target=self._run, args=(window,), name="perfscope-nvml-sampler", daemon=True
        )
        with self._windows_lock:
            self._windows.add(window)
        window.thread.start()
        return window

    def _stop(self, window: _Window) -> None:
        window.stop.set()
        if window.thread is not None:
            window.thread.join()
        with self._windows_lock:
            self._windows.discard(window)

    def end(self, token: object) -> EnergyReading:
        """Stop sampling, take a last sample and integrate.

        Raises ``MeasurementError`` when sampling failed, fewer than two samples were
        taken, or the window is shorter than ``min_window_s``.
        """
        if not isinstance(token, _Window) or token.meter_id != id(self) or token.finished:
            raise TypeError("end() needs an open token returned by this meter's begin()")
        self._stop(token)
        token.finished = True
        if token.error is not None:
            raise MeasurementError(
                f"power sampling of GPU {self.handle_index} failed during the window: "
                f"{token.error}"
            ) from token.error
        try:
            self._sample(token)
        except PerfscopeError as exc:
            raise MeasurementError(
                f"power sampling of GPU {self.handle_index} failed at the end of the "
                f"window: {exc}"
            ) from exc
        self.last_sample_count = len(token.times_s)
        energy_j = integrate_power_j(token.times_s, token.powers_w)
        duration_s = token.times_s[-1] - token.times_s[0]
        if duration_s < self.min_window_s:
            raise MeasurementError(
                f"window of {duration_s * 1e3:.0f} ms is shorter than the "
                f"{self.min_window_s * 1e3:.0f} ms sampled power needs ({self.last_sample_count} "
                f"samples at ~{self.interval_s * 1e3:.0f} ms); lengthen the energy window"
            )
        return EnergyReading(energy_j=energy_j, duration_s=duration_s)

    def close(self) -> None:
        """Stop any sampling threads still running."""
        with self._windows_lock:
            windows = list(self._windows)
        for window in windows:
            self._stop(window)
