"""The host CPU as a device: timed with ``time.perf_counter_ns`` around batches."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from perfscope.devices.base import Device, DeviceDescription, DeviceState, Kernel

_SYS_CPU = Path("/sys/devices/system/cpu")


class CpuDevice(Device):
    """The CPU this process runs on. Work is synchronous, so ``synchronize`` is a no-op."""

    kind = "cpu"
    timing_method = "perf_counter_ns-batched"

    def __init__(self, sys_root: Path = _SYS_CPU, proc_cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
        self._sys_root = sys_root
        self._proc_cpuinfo = proc_cpuinfo
        self._description: DeviceDescription | None = None

    @property
    def torch_device(self) -> str:
        """The torch device string (``cpu``)."""
        return "cpu"

    def free_memory_bytes(self) -> int | None:
        """Memory available to a new allocation (MemAvailable), in bytes; None where unknown."""
        return mem_available_bytes()

    def describe(self) -> DeviceDescription:
        """What this CPU is (model, cores, threads), read once."""
        if self._description is None:
            self._description = DeviceDescription(
                kind="cpu",
                name=cpu_model_name(self._proc_cpuinfo),
                last_level_cache_bytes=last_level_cache_bytes(self._sys_root),
                memory_bytes=_memory_bytes(),
            )
        return self._description

    def read_state(self) -> DeviceState:
        """The CPU's current clock."""
        return DeviceState(clock_mhz=cpu_clock_mhz(self._sys_root, self._proc_cpuinfo))

    def synchronize(self) -> None:
        """Nothing to wait for: CPU kernels return when done."""
        return None

    def time_samples_s(
        self, kernel: Kernel, calls_per_sample: int, samples: int, first_call: int = 0
    ) -> list[float]:
        """Wall time per call of ``samples`` batches of ``calls_per_sample`` calls (perf_counter)."""
        out: list[float] = []
        call = first_call
        clock = time.perf_counter_ns
        for _ in range(samples):
            start_ns = clock()
            for i in range(call, call + calls_per_sample):
                kernel(i)
            out.append((clock() - start_ns) * 1e-9 / calls_per_sample)
            call += calls_per_sample
        return out


def cpu_model_name(proc_cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        for line in proc_cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def last_level_cache_bytes(sys_root: Path = _SYS_CPU) -> int | None:
    """Size of the largest cache level cpu0 sees (sysfs), or None when unknown."""
    best: tuple[int, int] | None = None
    for index in sorted((sys_root / "cpu0" / "cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = _parse_size((index / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if best is None or (level, size) > best:
            best = (level, size)
    return best[1] if best else None


def cpu_clock_mhz(sys_root: Path = _SYS_CPU, proc_cpuinfo: Path = Path("/proc/cpuinfo")) -> float | None:
    """Mean current core clock over all CPUs (cpufreq, else /proc/cpuinfo), or None."""
    freqs_khz = []
    for f in sys_root.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"):
        try:
            freqs_khz.append(int(f.read_text()))
        except (OSError, ValueError):
            pass
    if freqs_khz:
        return sum(freqs_khz) / len(freqs_khz) / 1000.0
    try:
        mhz = [float(line.split(":", 1)[1]) for line in proc_cpuinfo.read_text().splitlines()
               if line.lower().startswith("cpu mhz")]
    except (OSError, ValueError):
        return None
    return sum(mhz) / len(mhz) if mhz else None


def _parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def mem_available_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """The kernel's estimate of memory available to new allocations (``MemAvailable`` in
    /proc/meminfo, kB) in bytes; None where the file or the field is missing (not Linux)."""
    try:
        with open(meminfo, encoding="ascii", errors="replace") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
