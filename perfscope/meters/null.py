"""The null meter: stands for "no energy here" and carries the reason why."""

from __future__ import annotations

from perfscope.errors import MeterUnavailableError
from perfscope.meters.base import EnergyMeter, EnergyReading


class NullMeter(EnergyMeter):
    """A meter that cannot measure; ``reason`` goes to the row's ``energy_reason``.

    ``begin`` and ``end`` raise ``MeterUnavailableError(reason)``.
    """

    method = "none"
    is_estimate = False
    min_window_s = 0.0

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def begin(self) -> object:
        """Always raises ``MeterUnavailableError`` with the reason."""
        raise MeterUnavailableError(self.reason)

    def end(self, token: object) -> EnergyReading:
        """Always raises ``MeterUnavailableError`` with the reason."""
        raise MeterUnavailableError(self.reason)

    def __repr__(self) -> str:
        return f"NullMeter(reason={self.reason!r})"
