"""Energy meters and the energy window protocol.

``select_meter(device, requested)`` picks the meter for a device: NVML's energy counter
(or sampled power) on a CUDA device, RAPL on the CPU, a TDP-based estimate when asked,
and otherwise a ``NullMeter`` that carries the reason. NVML meters are imported only
when a CUDA device asks for one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from perfscope.devices.base import Device
from perfscope.errors import InvalidInputError, MeterUnavailableError, NvmlError, NvmlNotSupportedError
from perfscope.meters.base import EnergyMeter, EnergyReading
from perfscope.meters.null import NullMeter
from perfscope.meters.nvml_counter import NvmlCounterMeter
from perfscope.meters.nvml_sampled import NvmlSampledMeter
from perfscope.meters.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter, rapl_available
from perfscope.meters.tdp import ConstantUtilisation, TdpEstimateMeter
from perfscope.meters.window import EnergyResult, measure_energy

log = logging.getLogger(__name__)

__all__ = [
    "METER_CHOICES",
    "EnergyMeter",
    "EnergyReading",
    "EnergyResult",
    "NullMeter",
    "RaplMeter",
    "TdpEstimateMeter",
    "measure_energy",
    "rapl_available",
    "select_meter",
]

METER_CHOICES = ("auto", "nvml-counter", "nvml-sampled", "rapl", "estimate-tdp", "none")
"""The values ``select_meter`` (and the CLI's ``--energy``) accepts."""


def select_meter(
    device: Device,
    requested: str = "auto",
    tdp_w: float | None = None,
    nvml: object | None = None,
    powercap_root: str | Path = DEFAULT_POWERCAP_ROOT,
) -> EnergyMeter:
    """Return the energy meter for ``device``.

    ``auto`` never fails: on a CUDA device it tries NVML's energy counter, then NVML's
    sampled power, then gives a ``NullMeter`` with the reason; on the CPU it tries RAPL,
    then a TDP estimate when ``tdp_w`` is given, then a ``NullMeter``. A meter named
    explicitly that cannot be used raises ``MeterUnavailableError`` (``InvalidInputError``
    for an unknown name or a TDP estimate without ``tdp_w``).
    """
    choice = requested.strip().lower()
    if choice not in METER_CHOICES:
        raise InvalidInputError(
            f"unknown energy meter {requested!r}: choose one of {', '.join(METER_CHOICES)}", parameter="energy"
        )
    is_cuda = device.kind == "cuda"
    if choice == "none":
        return NullMeter("energy measurement turned off (energy meter none)")
    if choice == "estimate-tdp":
        return _tdp_meter(device, tdp_w, is_cuda)
    if choice in ("nvml-counter", "nvml-sampled"):
        if not is_cuda:
            raise MeterUnavailableError(
                f"{choice} measures an NVIDIA GPU but the device is {device.kind}; "
                f"use the energy meter rapl, estimate-tdp or auto", parameter="energy"
            )
        try:
            return _nvml_meter(choice, device, nvml)
        except NvmlError as exc:
            if isinstance(exc, MeterUnavailableError):
                raise
            raise MeterUnavailableError(f"{choice} cannot be used here: {exc}") from exc
    if choice == "rapl":
        if is_cuda:
            raise MeterUnavailableError(
                "rapl measures the CPU packages, not a GPU; use the energy meter nvml-counter, "
                "nvml-sampled or auto for a CUDA device", parameter="energy"
            )
        return RaplMeter(powercap_root)

    # auto
    if is_cuda:
        return _auto_cuda(device, nvml)
    available, reason = rapl_available(powercap_root)
    if available:
        return RaplMeter(powercap_root)
    if tdp_w is not None:
        return _tdp_meter(device, tdp_w, is_cuda)
    log.info("no energy meter: %s", reason)
    return NullMeter(f"no energy meter: {reason}; give the TDP in watts (tdp_w) for a TDP-based estimate")


def _handle_index(device: Device) -> int:
    """NVML's index of the device: CUDA and NVML may number GPUs differently, so a
    CudaDevice matches them by UUID (``nvml_index``); otherwise the CUDA index."""
    index = device.describe().index  # describe() also resolves nvml_index
    nvml_index = getattr(device, "nvml_index", None)
    if nvml_index is not None:
        return nvml_index
    return 0 if index is None else index


def _nvml_meter(choice: str, device: Device, nvml: object | None) -> EnergyMeter:
    if choice == "nvml-counter":
        return NvmlCounterMeter(handle_index=_handle_index(device), nvml=nvml)
    return NvmlSampledMeter(handle_index=_handle_index(device), nvml=nvml)


def _auto_cuda(device: Device, nvml: object | None) -> EnergyMeter:
    """NVML counter, else sampled power, else a NullMeter saying why."""
    try:
        return _nvml_meter("nvml-counter", device, nvml)
    except NvmlNotSupportedError as counter_exc:
        try:
            return _nvml_meter("nvml-sampled", device, nvml)
        except (NvmlError, MeterUnavailableError) as exc:
            return NullMeter(
                f"no energy meter: NVML energy counter not supported ({counter_exc}) and "
                f"sampled power failed ({exc})"
            )
    except (NvmlError, MeterUnavailableError) as exc:
        return NullMeter(f"no energy meter: {exc}")


def _tdp_meter(device: Device, tdp_w: float | None, is_cuda: bool) -> TdpEstimateMeter:
    """A TDP estimate; on a GPU, running kernels back to back counts as fully busy."""
    if is_cuda:
        if tdp_w is None:
            tdp_w = device.describe().power_limit_w
        if tdp_w is None:
            raise InvalidInputError("the estimate-tdp energy meter needs the GPU's TDP in watts", parameter="tdp_w")
        return TdpEstimateMeter(tdp_w, utilisation=ConstantUtilisation(1.0))
    if tdp_w is None:
        raise InvalidInputError("the estimate-tdp energy meter needs the CPU's TDP in watts", parameter="tdp_w")
    return TdpEstimateMeter(tdp_w)
