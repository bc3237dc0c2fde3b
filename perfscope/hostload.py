"""How much of the host's CPU time other processes took during a window.

On a small shared machine one neighbour preempting one of torch's threads can inflate a
kernel's time many-fold while its samples stay tight (they are all slow together), so a
precise median is not enough: the share of the CPUs others used is recorded with each
measurement and a high share marks it noisy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_PROC_STAT = Path("/proc/stat")
MIN_TICKS = 20  # CPU-ticks of capacity a window needs before its share means anything


def _busy_ticks(proc_stat: Path) -> int | None:
    """Busy clock ticks of all CPUs since boot (total minus idle and iowait)."""
    try:
        fields = [int(v) for v in proc_stat.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)


class ForeignLoad:
    """``start()`` then ``share()``: other processes' CPU time over the window, as a share
    of all CPUs (0 = the machine was ours, 1 = every CPU busy with others). None where
    /proc/stat is unavailable."""

    def __init__(self, proc_stat: Path = _PROC_STAT) -> None:
        self._proc_stat = proc_stat
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._cpus = os.cpu_count() or 1
        self._start: tuple[int, float, float] | None = None

    def start(self) -> None:
        """Start a window: read the machine's and this process's CPU times."""
        busy = _busy_ticks(self._proc_stat)
        t = os.times()
        self._start = None if busy is None else (busy, t.user + t.system, time.perf_counter())

    def share(self) -> float | None:
        """Other processes' share of all CPUs since ``start`` (None when it cannot be read)."""
        if self._start is None:
            return None
        busy = _busy_ticks(self._proc_stat)
        if busy is None:
            return None
        busy0, own0, wall0 = self._start
        t = os.times()
        wall_s = time.perf_counter() - wall0
        if wall_s * self._hz * self._cpus < MIN_TICKS:
            return None  # /proc/stat counts whole ticks (10 ms): too short a window to judge

        foreign_s = (busy - busy0) / self._hz - ((t.user + t.system) - own0)
        return min(1.0, max(0.0, foreign_s / (wall_s * self._cpus)))
