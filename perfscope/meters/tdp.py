"""TDP-based energy estimate, for machines with no energy counter.

energy = tdp_w x utilisation over the window x window duration. This is a model, not a
measurement: the meter says so (``is_estimate = True``, method ``estimate-tdp``) and rows
carry that label so estimated energy is never mixed silently with measured energy.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Protocol, cast

from perfscope.errors import InvalidInputError
from perfscope.meters.base import EnergyMeter, EnergyReading


class UtilisationSource(Protocol):
    """Utilisation of the measured device over a window: ``end(begin())`` in [0, 1]."""

    def begin(self) -> object:
        """Start a window; returns an opaque token."""
        ...

    def end(self, token: object) -> float:
        """Mean utilisation (0 to 1) since ``begin``."""
        ...


def process_cpu_time_s() -> float:
    """User plus system CPU seconds of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ProcessCpuUtilisation:
    """The share of all CPUs this process uses: CPU-time delta / (wall delta x CPU count).

    ``cpu_time_s``, ``clock`` and ``cpu_count`` are injectable for tests.
    """

    def __init__(
        self,
        cpu_time_s: Callable[[], float] = process_cpu_time_s,
        clock: Callable[[], float] = time.perf_counter,
        cpu_count: int | None = None,
    ) -> None:
        self._cpu_time_s = cpu_time_s
        self._clock = clock
        self.cpu_count = cpu_count if cpu_count is not None else (os.cpu_count() or 1)

    def begin(self) -> object:
        """Record CPU time and wall time now."""
        return (self._cpu_time_s(), self._clock())

    def end(self, token: object) -> float:
        """Utilisation since ``begin``, clipped to [0, 1] (0 for an empty window)."""
        cpu0, wall0 = cast(tuple[float, float], token)
        wall_s = self._clock() - wall0
        if wall_s <= 0:
            return 0.0
        return _clip01((self._cpu_time_s() - cpu0) / (wall_s * self.cpu_count))


class ConstantUtilisation:
    """A fixed utilisation (for example 1.0 for a GPU running kernels back to back)."""

    def __init__(self, value: float) -> None:
        if not (0.0 <= value <= 1.0):
            raise InvalidInputError(f"utilisation must be between 0 and 1, got {value}")
        self.value = float(value)

    def begin(self) -> object:
        """Nothing to record."""
        return None

    def end(self, token: object) -> float:
        """The fixed value."""
        return self.value


def _clip01(value: float) -> float:
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


class TdpEstimateMeter(EnergyMeter):
    """Estimated energy: ``tdp_w`` x utilisation over the window x its duration.

    ``utilisation`` defaults to ``ProcessCpuUtilisation`` (the CPU case) sharing this
    meter's ``clock`` (seconds, default ``time.perf_counter``).
    """

    method = "estimate-tdp"
    is_estimate = True
    min_window_s = 0.1  # os.times() advances in clock ticks (10 ms)

    def __init__(
        self,
        tdp_w: float,
        utilisation: UtilisationSource | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(tdp_w, (int, float)) or not math.isfinite(tdp_w) or tdp_w <= 0:
            raise InvalidInputError(f"the TDP must be a positive number of watts, got {tdp_w!r}", parameter="tdp_w")
        self.tdp_w = float(tdp_w)
        self._clock: Callable[[], float] = clock if clock is not None else time.perf_counter
        self.utilisation: UtilisationSource = (
            utilisation if utilisation is not None else ProcessCpuUtilisation(clock=self._clock)
        )

    def begin(self) -> object:
        """Start the window: wall time and the utilisation source's token."""
        return (self._clock(), self.utilisation.begin())

    def end(self, token: object) -> EnergyReading:
        """Estimated energy of the window."""
        start_s, util_token = cast(tuple[float, object], token)
        utilisation = _clip01(self.utilisation.end(util_token))
        duration_s = self._clock() - start_s
        return EnergyReading(energy_j=self.tdp_w * utilisation * duration_s,
                             duration_s=duration_s)
