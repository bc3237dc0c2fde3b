"""A CUDA GPU as a device: timed with CUDA events, described through torch and NVML.

``torch`` and ``pynvml`` are imported only when a ``CudaDevice`` is built without
injected stand-ins. NVML is optional: without it (no package, no driver library, no
permission) timing works and the NVML-derived fields of ``describe`` and
``read_state`` are None.
"""

from __future__ import annotations

import sys
from typing import Any

from perfscope.devices.base import Device, DeviceDescription, DeviceState, Kernel
from perfscope.errors import DeviceUnavailableError, InvalidInputError, NvmlError
from perfscope.nvml import load_nvml, nvml_call

NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0

CLOCKS_EVENT_GPU_IDLE = 0x1
CLOCKS_EVENT_APPLICATIONS_CLOCKS_SETTING = 0x2
BENIGN_CLOCK_EVENT_REASONS = CLOCKS_EVENT_GPU_IDLE | CLOCKS_EVENT_APPLICATIONS_CLOCKS_SETTING
"""Clock-event reasons that do not mean throttling; any other bit (the software power
cap included) does."""


def is_throttled(reasons: int | None) -> bool | None:
    """Whether NVML's clock-event ``reasons`` bitmask means the clocks were held down."""
    if reasons is None:
        return None
    return bool(reasons & ~BENIGN_CLOCK_EVENT_REASONS)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _normalise_uuid(uuid: Any) -> str | None:
    """A GPU UUID without NVML's ``GPU-`` prefix, lower case (torch omits the prefix)."""
    text = _text(uuid)
    if not text:
        return None
    text = text.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def _torch_cuda_version(cuda: Any) -> str | None:
    """``torch.version.cuda`` when ``cuda`` is torch's own ``torch.cuda`` module."""
    if getattr(cuda, "__name__", None) != "torch.cuda":
        return None
    torch = sys.modules.get("torch")
    version = getattr(torch, "version", None)
    return _text(getattr(version, "cuda", None))


class CudaDevice(Device):
    """CUDA device ``index`` as torch numbers them.

    ``cuda`` defaults to ``torch.cuda``; ``nvml`` to the lazily loaded ``pynvml``.
    ``cuda_version`` (the CUDA runtime version) defaults to ``torch.version.cuda`` when
    ``cuda`` is torch's own module (None for stand-ins such as ``FakeCuda``). The NVML
    device is found by UUID when torch reports one (CUDA and NVML may number GPUs
    differently), else by the same index; ``nvml_index`` says which was used. Raises
    ``DeviceUnavailableError`` when there is no such CUDA device.
    """

    kind = "cuda"
    timing_method = "cuda-events"

    def __init__(
        self,
        index: int = 0,
        nvml: Any = None,
        cuda: Any = None,
        cuda_version: str | None = None,
    ) -> None:
        if cuda is None:
            try:
                import torch  # optional, slow to import; only measuring needs it
            except ImportError as exc:
                raise DeviceUnavailableError(
                    "no CUDA device: torch is not installed (pip install torch)"
                ) from exc
            cuda = torch.cuda
        if cuda_version is None:
            cuda_version = _torch_cuda_version(cuda)
        self._cuda = cuda
        if not cuda.is_available():
            raise DeviceUnavailableError(
                "no CUDA device: torch has no CUDA support or no GPU is visible"
            )
        count = int(cuda.device_count())
        if not 0 <= index < count:
            raise DeviceUnavailableError(
                f"cuda:{index} requested but only {count} CUDA devices are visible"
            )
        self.index = index
        self.cuda_version = cuda_version
        self._nvml_arg = nvml
        self._nvml: Any = None
        self._nvml_handle: Any = None
        self._nvml_loaded = False
        self.nvml_index: int | None = None
        self.nvml_reason: str | None = None
        self._description: DeviceDescription | None = None

    @property
    def torch_device(self) -> str:
        """The torch device string (``cuda:N``)."""
        return f"cuda:{self.index}"

    # ----- NVML ----------------------------------------------------------------------

    def _nvml_device(self) -> tuple[Any, Any] | None:
        """The NVML module and this GPU's handle, or None (reason in ``nvml_reason``)."""
        if not self._nvml_loaded:
            self._nvml_loaded = True
            try:
                self._nvml = load_nvml(self._nvml_arg)
                self.nvml_index = self._find_nvml_index(self._nvml)
                self._nvml_handle = nvml_call(
                    self._nvml, "nvmlDeviceGetHandleByIndex", self.nvml_index
                )
            except NvmlError as exc:
                self._nvml = None
                self._nvml_handle = None
                self.nvml_index = None
                self.nvml_reason = str(exc)
        if self._nvml is None:
            return None
        return self._nvml, self._nvml_handle

    def _find_nvml_index(self, nvml: Any) -> int:
        """NVML's index of this GPU: matched by UUID when possible, else ``self.index``."""
        props = self._cuda.get_device_properties(self.index)
        wanted = _normalise_uuid(getattr(props, "uuid", None))
        if wanted is not None:
            for i in range(int(nvml_call(nvml, "nvmlDeviceGetCount"))):
                try:
                    handle = nvml_call(nvml, "nvmlDeviceGetHandleByIndex", i)
                    uuid = nvml_call(nvml, "nvmlDeviceGetUUID", handle)
                except NvmlError:
                    continue
                if _normalise_uuid(uuid) == wanted:
                    return i
        return self.index

    def _query(self, fn_name: str, *args: Any) -> Any | None:
        """An NVML query on this GPU's handle; None when NVML cannot answer it."""
        device = self._nvml_device()
        if device is None:
            return None
        nvml, handle = device
        try:
            return nvml_call(nvml, fn_name, handle, *args)
        except NvmlError:
            return None

    def _system_query(self, fn_name: str) -> Any | None:
        device = self._nvml_device()
        if device is None:
            return None
        try:
            return nvml_call(device[0], fn_name)
        except NvmlError:
            return None

    # ----- Device --------------------------------------------------------------------

    def free_memory_bytes(self) -> int | None:
        """Free memory on this GPU now (``torch.cuda.mem_get_info``); None if it cannot be read."""
        try:
            free, _total = self._cuda.mem_get_info(self.index)
        except (AttributeError, RuntimeError, TypeError, ValueError):
            return None
        return int(free)

    def describe(self) -> DeviceDescription:
        """Name, SM count, L2 and memory size from torch; UUID, driver, power limit from NVML."""
        if self._description is None:
            props = self._cuda.get_device_properties(self.index)
            uuid = _text(self._query("nvmlDeviceGetUUID"))
            if uuid is None:
                torch_uuid = _normalise_uuid(getattr(props, "uuid", None))
                uuid = f"GPU-{torch_uuid}" if torch_uuid else None
            limit_mw = self._query("nvmlDeviceGetEnforcedPowerLimit")
            major = getattr(props, "major", None)
            minor = getattr(props, "minor", None)
            self._description = DeviceDescription(
                kind=self.kind,
                name=str(props.name),
                index=self.index,
                uuid=uuid,
                driver_version=_text(self._system_query("nvmlSystemGetDriverVersion")),
                cuda_version=_text(self.cuda_version),
                sm_count=getattr(props, "multi_processor_count", None),
                last_level_cache_bytes=getattr(props, "L2_cache_size", None),
                memory_bytes=getattr(props, "total_memory", None),
                power_limit_w=None if limit_mw is None else limit_mw / 1000.0,
                compute_capability=(
                    None if major is None or minor is None else f"{major}.{minor}"
                ),
            )
        return self._description

    def read_state(self) -> DeviceState:
        """SM and memory clocks, temperature and clock-event reasons from NVML."""
        device = self._nvml_device()
        nvml = device[0] if device is not None else None
        sm_clock = getattr(nvml, "NVML_CLOCK_SM", NVML_CLOCK_SM)
        mem_clock = getattr(nvml, "NVML_CLOCK_MEM", NVML_CLOCK_MEM)
        sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", NVML_TEMPERATURE_GPU)
        clock_mhz = self._query("nvmlDeviceGetClockInfo", sm_clock)
        mem_clock_mhz = self._query("nvmlDeviceGetClockInfo", mem_clock)
        temperature_c = self._query("nvmlDeviceGetTemperature", sensor)
        reasons = self._query("nvmlDeviceGetCurrentClocksEventReasons")
        if reasons is None:  # drivers and nvidia-ml-py before the rename
            reasons = self._query("nvmlDeviceGetCurrentClocksThrottleReasons")
        return DeviceState(
            clock_mhz=None if clock_mhz is None else float(clock_mhz),
            mem_clock_mhz=None if mem_clock_mhz is None else float(mem_clock_mhz),
            temperature_c=None if temperature_c is None else float(temperature_c),
            throttle_reasons=None if reasons is None else int(reasons),
            throttled=is_throttled(None if reasons is None else int(reasons)),
        )

    def synchronize(self) -> None:
        """Wait for all work queued on this GPU."""
        self._cuda.synchronize(self.index)

    def time_samples_s(
        self, kernel: Kernel, calls_per_sample: int, samples: int, first_call: int = 0
    ) -> list[float]:
        """Time each sample between two CUDA events; one synchronisation at the end."""
        if calls_per_sample < 1:
            raise InvalidInputError(f"calls_per_sample must be at least 1, got {calls_per_sample}")
        if samples < 0:
            raise InvalidInputError(f"samples must not be negative, got {samples}")
        if samples == 0:
            return []
        cuda = self._cuda
        with cuda.device(self.index):
            events = [
                (cuda.Event(enable_timing=True), cuda.Event(enable_timing=True))
                for _ in range(samples)
            ]
            call = first_call
            for start, end in events:
                start.record()
                for i in range(call, call + calls_per_sample):
                    kernel(i)
                end.record()
                call += calls_per_sample
            cuda.synchronize(self.index)
        return [
            start.elapsed_time(end) / 1000.0 / calls_per_sample for start, end in events
        ]
