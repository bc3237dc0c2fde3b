"""The energy-meter abstraction: measure one window and say how it was measured."""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one window, and how long the window lasted."""

    energy_j: float
    duration_s: float

    @property
    def power_avg_w(self) -> float:
        """Average power over the window (W)."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else float("nan")


class EnergyMeter(abc.ABC):
    """Measures the energy of one window: ``token = begin(); ...; reading = end(token)``.

    Subclasses set ``method`` (recorded in each row's ``energy_method``),
    ``is_estimate`` (True only for modelled, not measured, energy) and
    ``min_window_s`` (the shortest window that gives a trustworthy reading, for
    example ten updates of a counter that updates every 100 ms).
    """

    method: str = "none"
    is_estimate: bool = False
    min_window_s: float = 0.0

    @abc.abstractmethod
    def begin(self) -> object:
        """Start a window; returns an opaque token for ``end``."""

    @abc.abstractmethod
    def end(self, token: object) -> EnergyReading:
        """Finish the window started by ``begin``.

        Raises ``MeasurementError`` when the window cannot be trusted (too short for
        the counter's update period, no counter update seen).
        """

    def close(self) -> None:
        """Release resources (threads, library handles); nothing to release by default."""
        return None
