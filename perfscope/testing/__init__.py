"""Fakes for testing perfscope (and code built on it) without GPUs or root access."""

from __future__ import annotations

from perfscope.testing.clock import FakeClock
from perfscope.testing.fake_cuda import FakeCuda, FakeDeviceProperties
from perfscope.testing.fake_nvml import FakeGpu, FakeNvml
from perfscope.testing.fake_powercap import FakePowercap

__all__ = [
    "FakeClock",
    "FakeCuda",
    "FakeDeviceProperties",
    "FakeGpu",
    "FakeNvml",
    "FakePowercap",
]
