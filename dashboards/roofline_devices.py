"""How a dataset's devices are resolved for the roofline, and the ceilings each one draws.

A device resolves to the profile its dataset carries (``<dataset>/_devices/``: the machine the
rows were measured on), else to the viewer's own calibrated profile
(``perfscope.devices.registry``), else to its spec-sheet row, else to the figures its rows
declared at import (``perfscope.devices.declared``), else to a device with no peaks (features
without a bound). ``DeviceInfo.calibrated_source`` names which profile and file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from perfscope.devices.registry import (
    find_dataset_profile,
    find_device_spec,
    find_profile_file,
    resolve_row_device,
)


@dataclass(frozen=True)
class NoPeakDevice:
    """A device with no known peaks (no spec row, not calibrated): features without a bound."""

    key: str
    name: str
    sm_count: int | None = None
    l2_bytes: int | None = None
    mem_bandwidth_bytes_per_s: float | None = None
    launch_overhead_s: float = 0.0
    launch_overhead_source: str = "none"
    source_kind: str = "none"

    @property
    def peaks_flops_per_s(self) -> dict[str, float]:
        """Peak FLOP/s per dtype: none for a device without a profile or spec."""
        return {}


@dataclass(frozen=True)
class DeviceInfo:
    """How a dataset device was resolved for the roofline, and the ceilings to draw."""

    device_key: str
    device_name: str
    used: Any  # the RooflineDevice whose peaks the features use
    spec: Any | None
    calibrated: Any | None
    note: str
    calibrated_origin: str = ""  # "dataset" (the dataset's own profile) or "viewer" (this machine's)
    calibrated_file: str = ""

    @property
    def calibrated_source(self) -> str:
        """Which calibrated profile drew the ceiling: whose, the file and its date ("" if none)."""
        if self.calibrated is None:
            return ""
        when = str(getattr(self.calibrated, "measured_at", "") or "")[:10] or "undated"
        whose = "the dataset's own profile" if self.calibrated_origin == "dataset" else "your calibration"
        return f"{whose}, calibrated {when}" + (f", {self.calibrated_file}" if self.calibrated_file else "")

    @property
    def calibrated_label(self) -> str:
        """The calibrated ceiling's legend label: whose profile, its date and file name
        ("dataset's profile 2025-11-30, h100.json"; "" if none)."""
        if self.calibrated is None:
            return ""
        when = str(getattr(self.calibrated, "measured_at", "") or "")[:10] or "undated"
        whose = "dataset's profile" if self.calibrated_origin == "dataset" else "your calibration"
        name = Path(self.calibrated_file).name if self.calibrated_file else ""
        return f"{whose} {when}" + (f", {name}" if name else "")


def resolve_device(device_key: str, device_name: str, *, sm_count: float | None = None,
                   declared: Any | None = None, datasets: Sequence[str | Path] = ()) -> DeviceInfo:
    """The roofline device for a dataset device: the profile one of ``datasets`` carries, else
    the viewer's calibrated profile, else the spec row, else the ``declared`` figures
    (``perfscope.devices.declared.declared_devices``), else none.

    The viewer's lookup is ``perfscope.devices.registry.resolve_row_device`` (by key, then by
    name); the spec row is kept beside a calibrated profile so pages can draw both ceilings.
    """
    found = resolve_row_device(str(device_key) if device_key else None, str(device_name) if device_name else None)
    own = find_dataset_profile(str(device_key), str(device_name) if device_name else None, datasets)
    if own is not None or (found is not None and found[1] == "calibrated"):
        spec = find_device_spec(str(device_name)) if device_name else None
        spec = spec or find_device_spec(device_key)
        if own is not None:
            calibrated, path = own
            note = f"{device_key}: calibrated peaks from the dataset's own profile ({path})"
            if found is not None and found[1] == "calibrated":
                note += "; your own calibration of this device is not used for this dataset"
            info = DeviceInfo(device_key, device_name, calibrated, spec, calibrated, note, "dataset", str(path))
        else:
            calibrated = found[0]  # type: ignore[index]
            path = find_profile_file(getattr(calibrated, "device_key", device_key))
            info = DeviceInfo(device_key, device_name, calibrated, spec, calibrated,
                              f"{device_key}: calibrated peaks from your calibration (perfscope calibrate"
                              + (f", {path})" if path else ")"), "viewer", str(path or ""))
        return info
    if found is not None:
        spec = found[0]
        return DeviceInfo(device_key, device_name, spec, spec, None,
                          f"{device_key}: spec-sheet peaks of {spec.device_id} (not calibrated)")
    if declared is not None:
        return DeviceInfo(device_key, device_name, declared, None, None,
                          f"{device_key}: peaks declared at import (--peak-flops/--bandwidth; no spec row, "
                          "not calibrated)")
    sms = int(sm_count) if sm_count is not None and not math.isnan(sm_count) else None
    none = NoPeakDevice(key=device_key, name=device_name, sm_count=sms)
    return DeviceInfo(device_key, device_name, none, None, None,
                      f"{device_key}: no peaks (not in the spec table, not calibrated), so no roofline bound: "
                      "run `perfscope calibrate` on that machine")


def ceilings_frame(devices: Mapping[str, DeviceInfo], dtypes: Iterable[str] | None = None) -> pd.DataFrame:
    """Roofline ceilings per (device, source, dtype): spec sheet and, when present, calibrated."""
    records = []
    wanted = set(dtypes) if dtypes is not None else None
    for key, info in devices.items():
        for source, device in (("spec", info.spec), ("calibrated", info.calibrated)):
            if device is None:
                continue
            bandwidth = device.mem_bandwidth_bytes_per_s
            for dtype, peak in device.peaks_flops_per_s.items():
                if wanted is not None and dtype not in wanted:
                    continue
                records.append({"device_key": key, "source": source, "dtype": dtype,
                                "peak_flops_per_s": float(peak),
                                "mem_bandwidth_bytes_per_s": float(bandwidth) if bandwidth else math.nan})
    return pd.DataFrame.from_records(records, columns=["device_key", "source", "dtype", "peak_flops_per_s",
                                                       "mem_bandwidth_bytes_per_s"])
