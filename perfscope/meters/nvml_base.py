"""What the NVML meters share: a positive period, an injected clock and NVML, one handle."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from perfscope.errors import InvalidInputError
from perfscope.meters.base import EnergyMeter
from perfscope.nvml import load_nvml, nvml_call


class NvmlMeter(EnergyMeter):
    """Base of the NVML meters: checks ``period_s`` (named ``period_name`` in the error),
    keeps ``clock`` (default ``time.monotonic``), loads NVML lazily (``nvml`` injects a
    fake) and opens the handle of GPU ``handle_index``."""

    def __init__(self, handle_index: int, nvml: Any, clock: Callable[[], float] | None, period_s: float,
                 period_name: str) -> None:
        if not period_s > 0:
            raise InvalidInputError(f"{period_name} must be a positive number of seconds, got {period_s!r}")
        self.handle_index = handle_index
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._nvml = load_nvml(nvml)
        self._handle = nvml_call(self._nvml, "nvmlDeviceGetHandleByIndex", handle_index)
