"""``perfscope doctor``: what this machine offers for measuring, one check per line.

Checks torch's build, CUDA and the driver, the GPUs, NVML and its energy counter, RAPL,
Triton, clocks and persistence mode, power limits, and what ``collect`` would use here
(device, timing method, energy meter). ``can_collect`` is False when collecting cannot
start (no torch, or the requested device or meter cannot be used).

``cuda``, ``nvml`` and ``powercap_root`` can be replaced by the fakes of
``perfscope.testing`` (``FakeCuda``, ``FakeNvml``, ``FakePowercap``), so every branch
is tested on machines without a GPU.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perfscope.devices import select_device
from perfscope.errors import NvmlError, PerfscopeError
from perfscope.meters import select_meter
from perfscope.meters.rapl import DEFAULT_POWERCAP_ROOT, rapl_available
from perfscope.nvml import load_nvml, nvml_call

OK, WARN, FAIL = "ok", "warn", "fail"
_NVML_CLOCK_SM, _NVML_CLOCK_MEM = 1, 2


@dataclass(frozen=True)
class Check:
    """One line of the report: ``status`` is ok, warn (collecting works, with less) or fail."""

    name: str
    status: str
    detail: str


@dataclass
class DoctorReport:
    """The checks, whether ``collect`` can proceed, and what it would use."""

    checks: list[Check] = field(default_factory=list)
    can_collect: bool = False
    collect: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, status: str, detail: str) -> None:
        """Append one check."""
        self.checks.append(Check(name, status, detail))

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return {"can_collect": self.can_collect, "collect": self.collect,
                "checks": [asdict(c) for c in self.checks]}

    def lines(self) -> list[str]:
        """One line per check, then the verdict."""
        out = [f"{c.status:4s}  {c.name:18s} {c.detail}" for c in self.checks]
        out.append("collecting can proceed" if self.can_collect else "collecting cannot proceed (see fail lines)")
        return out


def run_doctor(device: str = "auto", energy: str = "auto", *, cuda: Any = None, nvml: Any = None,
               powercap_root: str | Path = DEFAULT_POWERCAP_ROOT) -> DoctorReport:
    """Run every check; ``device`` and ``energy`` are what ``collect`` would be given."""
    report = DoctorReport()
    torch = _check_torch(report)
    if cuda is None and torch is not None:
        cuda = torch.cuda
    gpu_count = _check_cuda(report, cuda, torch, nvml)
    nvml_module = _check_nvml(report, nvml, gpu_count)
    _check_rapl(report, powercap_root)
    _check_triton(report)
    _check_gpu_state(report, nvml_module)
    _check_collect(report, torch, device, energy, cuda, nvml, powercap_root)
    return report


def _check_torch(report: DoctorReport) -> Any:
    try:
        import torch  # optional, slow to import; only measuring needs it
    except ImportError:
        report.add("torch", FAIL, "not installed: collect needs it (see the README: a CPU or CUDA build)")
        return None
    cuda_build = getattr(torch.version, "cuda", None)
    hip = getattr(torch.version, "hip", None)
    build = f"CUDA {cuda_build} build" if cuda_build else (f"ROCm {hip} build" if hip else "CPU-only build")
    report.add("torch", OK, f"{torch.__version__} ({build}), {torch.get_num_threads()} CPU threads")
    return torch


def _check_cuda(report: DoctorReport, cuda: Any, torch: Any, nvml: Any) -> int:
    """The CUDA line and one line per GPU; returns the number of visible GPUs."""
    if cuda is None or not cuda.is_available():
        report.add("cuda", WARN, "no CUDA device visible: collect measures on the CPU")
        report.add("gpus", WARN, "none")
        return 0
    runtime = getattr(getattr(torch, "version", None), "cuda", None) if cuda is getattr(torch, "cuda", None) else None
    driver = cuda_driver = None
    try:
        module = load_nvml(nvml)
        driver = _text(nvml_call(module, "nvmlSystemGetDriverVersion"))
        version = nvml_call(module, "nvmlSystemGetCudaDriverVersion")
        cuda_driver = f"{version // 1000}.{version % 1000 // 10}"
    except NvmlError:
        pass
    report.add("cuda", OK, f"runtime {runtime or 'unknown'}, driver {driver or 'unknown (no NVML)'}"
                           + (f" (supports CUDA {cuda_driver})" if cuda_driver else ""))
    count = int(cuda.device_count())
    for index in range(count):
        props = cuda.get_device_properties(index)
        free = ""
        try:
            free_b, total_b = cuda.mem_get_info(index)
            free = f", {free_b / 2**30:.1f} of {total_b / 2**30:.1f} GiB free"
        except (AttributeError, RuntimeError):
            pass
        report.add(f"gpu {index}", OK, f"{props.name}, compute capability {props.major}.{props.minor}, "
                                       f"{props.multi_processor_count} SMs{free}")
    return count


def _check_nvml(report: DoctorReport, nvml: Any, gpu_count: int) -> Any:
    try:
        module = load_nvml(nvml)
        count = int(nvml_call(module, "nvmlDeviceGetCount"))
    except NvmlError as exc:
        report.add("nvml", WARN,
                   f"unavailable ({_short(exc)}): no GPU energy or clock readings")
        return None
    counters = []
    for index in range(count):
        handle = nvml_call(module, "nvmlDeviceGetHandleByIndex", index)
        try:
            nvml_call(module, "nvmlDeviceGetTotalEnergyConsumption", handle)
            counters.append(f"gpu {index} supported")
        except NvmlError as exc:
            counters.append(f"gpu {index} not supported ({_short(exc, 60)})")
    status = OK if count and all("not" not in c for c in counters) else WARN
    report.add("nvml", status, f"{count} GPU(s); energy counter: {', '.join(counters) or 'no GPU'}")
    return module if count else None


def _check_rapl(report: DoctorReport, powercap_root: str | Path) -> None:
    available, reason = rapl_available(powercap_root)
    report.add("rapl", OK if available else WARN, "CPU package energy readable" if available else _short(reason, 160))


def _check_triton(report: DoctorReport) -> None:
    if importlib.util.find_spec("triton") is None:
        report.add("triton", WARN, "not installed: Triton cases become unsupported rows")
        return
    try:
        version = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    interpreted = " (TRITON_INTERPRET=1: kernels run in the interpreter, not timed)" \
        if os.environ.get("TRITON_INTERPRET") == "1" else ""
    report.add("triton", OK, f"{version}{interpreted}")


def _check_gpu_state(report: DoctorReport, nvml: Any) -> None:
    """Clocks, persistence mode and the power limit of every GPU NVML sees."""
    if nvml is None:
        report.add("clocks", WARN, "unknown (no NVML)")
        report.add("power limit", WARN, "unknown (no NVML)")
        return
    clocks, limits, warn = [], [], False
    for index in range(int(nvml_call(nvml, "nvmlDeviceGetCount"))):
        handle = nvml_call(nvml, "nvmlDeviceGetHandleByIndex", index)
        sm = _maybe(nvml, "nvmlDeviceGetClockInfo", handle, _NVML_CLOCK_SM)
        sm_max = _maybe(nvml, "nvmlDeviceGetMaxClockInfo", handle, _NVML_CLOCK_SM)
        mem = _maybe(nvml, "nvmlDeviceGetClockInfo", handle, _NVML_CLOCK_MEM)
        persistence = _maybe(nvml, "nvmlDeviceGetPersistenceMode", handle)
        warn |= persistence == 0
        mode = {1: "on", 0: "off (the driver may unload between runs: sudo nvidia-smi -pm 1)"}.get(persistence,
                                                                                                   "unknown")
        clocks.append(f"gpu {index}: SM {sm or '?'}/{sm_max or '?'} MHz, memory {mem or '?'} MHz, persistence {mode}")
        limit_mw = _maybe(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
        limits.append(f"gpu {index}: {limit_mw / 1000:.0f} W" if limit_mw else f"gpu {index}: unknown")
    report.add("clocks", WARN if warn else OK, "; ".join(clocks) or "no GPU")
    report.add("power limit", OK, "; ".join(limits) or "no GPU")


def _check_collect(report: DoctorReport, torch: Any, device: str, energy: str, cuda: Any, nvml: Any,
                   powercap_root: str | Path) -> None:
    if torch is None:
        report.add("collect", FAIL, "cannot measure without torch")
        return
    try:
        dev = select_device(device, nvml=nvml, cuda=cuda)
        meter = select_meter(dev, energy, nvml=nvml, powercap_root=powercap_root)
    except PerfscopeError as exc:
        report.add("collect", FAIL, f"--device {device} --energy {energy}: {_short(exc, 200)}")
        return
    try:
        why = getattr(meter, "reason", None)
        report.collect = {"device": dev.key, "device_kind": dev.kind, "timing_method": dev.timing_method,
                          "energy_method": meter.method, "energy_is_estimate": meter.is_estimate,
                          "energy_note": why}
    finally:
        meter.close()
    note = f" ({_short(why, 120)})" if why else ""
    report.add("collect", OK, f"device {dev.key}, timing {dev.timing_method}, energy {meter.method}{note}")
    report.can_collect = True


def _maybe(nvml: Any, name: str, *args: Any) -> Any:
    try:
        return nvml_call(nvml, name, *args)
    except NvmlError:
        return None


def _text(value: Any) -> str | None:
    return value.decode(errors="replace") if isinstance(value, bytes) else (None if value is None else str(value))


def _short(exc: object, limit: int = 120) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
