"""A fake ``torch.cuda`` for testing CUDA timing code on machines without a GPU.

Events record the fake clock's time; a "kernel" that advances the clock takes that
long. As with real CUDA, an event recorded since the last ``synchronize`` is still
pending, and ``elapsed_time`` on it raises, so code that forgets to synchronise fails.

    clock = FakeClock()
    cuda = FakeCuda(clock, [FakeDeviceProperties()])
    device = CudaDevice(0, nvml=FakeNvml(clock=clock), cuda=cuda)
    device.time_samples_s(lambda i: clock.advance(0.002), calls_per_sample=5, samples=3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FakeDeviceProperties:
    """What ``torch.cuda.get_device_properties`` reports (the fields perfscope reads)."""

    name: str = "NVIDIA Fake GPU"
    multi_processor_count: int = 132
    L2_cache_size: int = 50 * 1024 * 1024
    total_memory: int = 80 * 1024**3
    major: int = 9
    minor: int = 0
    uuid: str | None = None  # torch reports it without NVML's "GPU-" prefix


class FakeEvent:
    """A ``torch.cuda.Event`` that records the owning ``FakeCuda``'s clock."""

    _owner: FakeCuda

    def __init__(
        self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False
    ) -> None:
        self.enable_timing = enable_timing
        self.time_s: float | None = None
        self.device: int | None = None
        self._generation = -1
        self._done = False

    def record(self, stream: Any = None) -> None:
        """Record the clock's time now, on the current device."""
        owner = self._owner
        self.time_s = owner.clock()
        self.device = owner.current_device()
        self._generation = owner.sync_count
        self._done = False
        owner.recorded_events += 1

    def query(self) -> bool:
        """True once the event has completed (after a synchronize)."""
        return self._done or (
            self.time_s is not None and self._owner.sync_count > self._generation
        )

    def synchronize(self) -> None:
        """Wait for this event."""
        if self.time_s is None:
            raise RuntimeError("event was never recorded")
        self._done = True

    def elapsed_time(self, end_event: FakeEvent) -> float:
        """Milliseconds from this event to ``end_event``; both must be complete."""
        for event in (self, end_event):
            if not event.enable_timing:
                raise RuntimeError("elapsed_time needs events created with enable_timing=True")
            if event.time_s is None:
                raise RuntimeError("elapsed_time on an event that was never recorded")
            if not event.query():
                raise RuntimeError("CUDA error: device not ready (synchronize first)")
        if self.device != end_event.device:
            raise RuntimeError("events were recorded on different devices")
        assert self.time_s is not None and end_event.time_s is not None
        return (end_event.time_s - self.time_s) * 1000.0


class FakeCuda:
    """An object usable in place of ``torch.cuda``, with one entry per fake device.

    ``available=False`` simulates torch without CUDA support. ``sync_count`` counts
    ``synchronize`` calls; ``Event`` is a class bound to this instance's clock.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        devices: list[FakeDeviceProperties] | None = None,
        *,
        available: bool = True,
    ) -> None:
        self.clock = clock
        self.devices = list(devices) if devices is not None else [FakeDeviceProperties()]
        self.available = available
        self.sync_count = 0
        self.recorded_events = 0
        self._current = 0
        # free bytes per device as mem_get_info reports them (default: all of total_memory)
        self.free_memory = [d.total_memory for d in self.devices]
        self.Event: type[FakeEvent] = type("Event", (FakeEvent,), {"_owner": self})

    def is_available(self) -> bool:
        return self.available and bool(self.devices)

    def device_count(self) -> int:
        return len(self.devices) if self.available else 0

    def _check(self, index: int) -> int:
        if not self.is_available():
            raise RuntimeError("Found no NVIDIA driver on your system")
        if not 0 <= index < len(self.devices):
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")
        return index

    def get_device_properties(self, device: int) -> FakeDeviceProperties:
        return self.devices[self._check(device)]

    def current_device(self) -> int:
        return self._current

    def set_device(self, device: int) -> None:
        self._current = self._check(device)

    @contextlib.contextmanager
    def device(self, device: int) -> Iterator[None]:
        """Make ``device`` current inside the block (like ``torch.cuda.device``)."""
        previous = self._current
        self._current = self._check(device)
        try:
            yield
        finally:
            self._current = previous

    def mem_get_info(self, device: int | None = None) -> tuple[int, int]:
        """(free, total) bytes of ``device`` (the current one by default), like torch's."""
        index = self._check(self._current if device is None else device)
        return self.free_memory[index], self.devices[index].total_memory

    def synchronize(self, device: int | None = None) -> None:
        """Complete every recorded event."""
        if device is not None:
            self._check(device)
        self.sync_count += 1
