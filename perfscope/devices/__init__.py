"""Devices: where kernels run. ``select_device("auto"|"cpu"|"cuda"|"cuda:N")`` picks one."""

from __future__ import annotations

import logging
from typing import Any

from perfscope.devices.base import Device, DeviceDescription, DeviceState, slugify
from perfscope.devices.cpu import CpuDevice
from perfscope.devices.cuda import CudaDevice
from perfscope.errors import InvalidInputError

log = logging.getLogger(__name__)

__all__ = ["Device", "DeviceDescription", "DeviceState", "CpuDevice", "select_device", "slugify"]


def select_device(spec: str = "auto", *, nvml: Any = None, cuda: Any = None,
                  notify=None) -> Device:
    """Return the device named by ``spec``.

    ``auto`` takes the first CUDA device when one is visible and otherwise the CPU
    (``notify`` is called with a message saying so). Asking for ``cuda`` where there
    is none raises ``DeviceUnavailableError``.
    """
    spec = spec.strip().lower()
    if spec == "cpu":
        return CpuDevice()
    if spec == "auto":
        cuda_mod = cuda if cuda is not None else _torch_cuda_or_none()
        if cuda_mod is not None and cuda_mod.is_available() and cuda_mod.device_count() > 0:
            return CudaDevice(0, nvml=nvml, cuda=cuda_mod)
        log.info("no CUDA device visible: measuring on the CPU")
        if notify is not None:
            notify("no CUDA device visible: measuring on the CPU")
        return CpuDevice()
    if spec == "cuda" or spec.startswith("cuda:"):
        index_text = spec.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise InvalidInputError(f"bad device {spec!r}: use auto, cpu, cuda or cuda:N")
        return CudaDevice(int(index_text), nvml=nvml, cuda=cuda)
    raise InvalidInputError(f"bad device {spec!r}: use auto, cpu, cuda or cuda:N")


def _torch_cuda_or_none() -> Any:
    try:
        import torch  # optional, slow to import; only measuring needs it
    except ImportError:
        return None
    return torch.cuda
