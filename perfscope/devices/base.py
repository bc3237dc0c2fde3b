"""The device abstraction: what every backend (CPU, CUDA) must provide.

A device synchronises, times a batch of kernel calls, and describes itself (static
identity) and its state (clocks, temperature, throttling) at a moment.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

Kernel = Callable[[int], object]
"""One kernel call; the argument is the call's index (used to rotate input sets)."""


@dataclass(frozen=True)
class DeviceDescription:
    """Static identity of a device, recorded as provenance on every row."""

    kind: str  # "cpu" or "cuda"
    name: str
    index: int | None = None
    uuid: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    sm_count: int | None = None
    last_level_cache_bytes: int | None = None
    memory_bytes: int | None = None
    power_limit_w: float | None = None
    compute_capability: str | None = None


@dataclass(frozen=True)
class DeviceState:
    """Clocks, temperature and throttling read at one moment (None where unknown)."""

    clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temperature_c: float | None = None
    throttle_reasons: int | None = None  # NVML's bitmask of clock-event reasons
    throttled: bool | None = None  # True when a reason other than idle/app-clocks is set


class Device(abc.ABC):
    """A place where kernels run and are timed."""

    kind: str
    timing_method: str

    @property
    @abc.abstractmethod
    def torch_device(self) -> str:
        """The torch device string (``"cpu"`` or ``"cuda:N"``)."""

    @abc.abstractmethod
    def describe(self) -> DeviceDescription:
        """Static identity of the device."""

    @abc.abstractmethod
    def read_state(self) -> DeviceState:
        """Clocks, temperature and throttle reasons now."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Wait until all work queued on the device has finished."""

    @abc.abstractmethod
    def time_samples_s(
        self, kernel: Kernel, calls_per_sample: int, samples: int, first_call: int = 0
    ) -> list[float]:
        """Run ``samples`` timed samples of ``calls_per_sample`` back-to-back calls.

        Returns seconds per call for each sample. Call indices continue from
        ``first_call`` so that input sets rotate across samples.
        """

    def free_memory_bytes(self) -> int | None:
        """Memory that a new allocation on this device can use now, in bytes; None if unknown."""
        return None

    def run_untimed(self, kernel: Kernel, calls: int, first_call: int = 0) -> None:
        """Run ``calls`` calls back to back and wait for them (warm-up, energy windows)."""
        for i in range(first_call, first_call + calls):
            kernel(i)
        self.synchronize()

    @property
    def key(self) -> str:
        """A filesystem-safe slug naming the device, used to partition datasets."""
        return slugify(f"{self.kind}-{self.describe().name}")


def slugify(text: str) -> str:
    """Lower-case ``text`` and keep only ``[a-z0-9-]`` (runs of others become one ``-``)."""
    out: list[str] = []
    for ch in text.lower():
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-") or "unknown"
