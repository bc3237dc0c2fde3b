"""A controllable clock for tests: stands in for ``time.monotonic``."""

from __future__ import annotations

import threading


class FakeClock:
    """A callable returning seconds that only moves when told to.

    ``advance(s)`` moves it forward. With ``auto_step_s > 0`` every read also moves it
    forward by that much after returning, so that code polling the clock in a loop
    (waiting for a deadline or a counter update) terminates. Thread-safe.
    """

    def __init__(self, start_s: float = 0.0, auto_step_s: float = 0.0) -> None:
        if auto_step_s < 0:
            raise ValueError(f"auto_step_s must be >= 0, got {auto_step_s}")
        self._now_s = float(start_s)
        self.auto_step_s = float(auto_step_s)
        self.reads = 0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Return the current time in seconds (then step forward by ``auto_step_s``)."""
        with self._lock:
            now_s = self._now_s
            self._now_s += self.auto_step_s
            self.reads += 1
            return now_s

    @property
    def now_s(self) -> float:
        """The current time, without counting as a read or stepping."""
        with self._lock:
            return self._now_s

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back (advance({seconds}))")
        with self._lock:
            self._now_s += seconds
