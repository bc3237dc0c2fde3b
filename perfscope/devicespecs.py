"""GPU peaks from the vendor spec table (``data/devices.csv``), one row per device.

This is on the light path of ``perfscope estimate``: it reads the table with the
``csv`` module (no pandas) and caches it. Every row names the document its figures
come from (``source``) and says in ``notes`` how they were checked and which figures
are derived or missing. An empty peak means "not supported or not published": asking
for it raises ``UnsupportedConfigError``.

``RooflineDevice`` is the interface the roofline features need; ``DeviceSpec`` (here)
and the calibrated ``DeviceProfile`` (``perfscope.devices.profile``) both provide it.
Finding a row by a device's name, and preferring a calibrated profile, is the job of
``perfscope.devices.registry``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol, runtime_checkable

from perfscope.dtypes import DTYPES, check_dtype
from perfscope.errors import InvalidInputError, UnsupportedConfigError

SPEC_TABLE = "devices.csv"

# The spec sheets give no launch floor. This is an assumption (a typical floor of a
# small CUDA kernel dispatched from PyTorch: single-digit microseconds), used only
# until `perfscope calibrate` measures the device; rows record which one was used.
ASSUMED_GPU_LAUNCH_OVERHEAD_S = 5e-6

# perfscope dtype -> spec-table column. fp16 is tensor-core FP16 with FP32 accumulate
# (what cuBLAS/torch use by default); both fp8 formats share one column.
DTYPE_PEAK_COLUMN = {
    "fp32": "peak_fp32_flops_per_s",
    "tf32": "peak_tf32_flops_per_s",
    "fp16": "peak_fp16_flops_per_s",
    "bf16": "peak_bf16_flops_per_s",
    "fp8_e4m3": "peak_fp8_flops_per_s",
    "fp8_e5m2": "peak_fp8_flops_per_s",
}
assert set(DTYPE_PEAK_COLUMN) == set(DTYPES), "every perfscope dtype needs a spec-table column"

_INT_COLUMNS = ("sm_count", "l2_bytes", "memory_bytes", "tdp_w")
_FLOAT_COLUMNS = ("mem_bandwidth_bytes_per_s", "peak_fp32_flops_per_s", "peak_tf32_flops_per_s",
                  "peak_fp16_flops_per_s", "peak_fp16_acc16_flops_per_s", "peak_bf16_flops_per_s",
                  "peak_fp8_flops_per_s")
_REQUIRED_COLUMNS = ("device_id", "name", "aliases", "vendor", "architecture", "compute_capability",
                     *_INT_COLUMNS, *_FLOAT_COLUMNS, "dense", "source", "notes")


@runtime_checkable
class RooflineDevice(Protocol):
    """What the roofline features read from a device (spec sheet or calibrated profile).

    Read-only members (properties), so that frozen dataclasses implement it.
    """

    @property
    def key(self) -> str:
        """The device key."""

    @property
    def name(self) -> str:
        """The display name."""

    @property
    def source_kind(self) -> str:
        """``spec`` or ``calibrated``."""

    @property
    def sm_count(self) -> int | None:
        """Streaming multiprocessors (GPU) or worker threads (CPU)."""

    @property
    def l2_bytes(self) -> int | None:
        """Last-level cache size."""

    @property
    def mem_bandwidth_bytes_per_s(self) -> float | None:
        """Memory bandwidth."""

    @property
    def launch_overhead_s(self) -> float:
        """Launch overhead per call."""

    @property
    def launch_overhead_source(self) -> str:
        """``assumed`` (spec sheets give none) or ``calibrated``."""

    @property
    def peaks_flops_per_s(self) -> Mapping[str, float]:
        """Peak FLOP/s per perfscope dtype name (missing: no such peak)."""


@dataclass(frozen=True)
class DeviceSpec:
    """One row of the spec table: vendor peaks (dense, no 2:4 sparsity) and where they come from."""

    device_id: str
    name: str
    aliases: tuple[str, ...]
    vendor: str
    architecture: str
    compute_capability: str | None
    sm_count: int | None
    l2_bytes: int | None
    memory_bytes: int | None
    mem_bandwidth_bytes_per_s: float | None
    tdp_w: int | None
    peak_fp32_flops_per_s: float | None
    peak_tf32_flops_per_s: float | None
    peak_fp16_flops_per_s: float | None  # tensor FP16 with FP32 accumulate
    peak_fp16_acc16_flops_per_s: float | None  # FP16 accumulate, only where it differs
    peak_bf16_flops_per_s: float | None
    peak_fp8_flops_per_s: float | None  # FP32 accumulate
    dense: bool
    source: str  # the datasheet / whitepaper the figures come from: title <URL>
    notes: str  # how the figures were checked; which are derived, third-party or missing

    source_kind = "spec"
    # the launch floor is not a datasheet figure (see ASSUMED_GPU_LAUNCH_OVERHEAD_S)
    launch_overhead_s = ASSUMED_GPU_LAUNCH_OVERHEAD_S
    launch_overhead_source = "assumed"

    @property
    def key(self) -> str:
        """The device key of this spec (its id)."""
        return self.device_id

    @property
    def peaks_flops_per_s(self) -> dict[str, float]:
        """Peak FLOP/s per perfscope dtype that this device has a figure for."""
        peaks = {}
        for dtype, column in DTYPE_PEAK_COLUMN.items():
            value = getattr(self, column)
            if value is not None:
                peaks[dtype] = value
        return peaks

    def peak_flops_per_s(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype`` (see the module function of the same name)."""
        return peak_flops_per_s(self, dtype)


def peak_flops_per_s(device: DeviceSpec | RooflineDevice, dtype: str) -> float:
    """Peak FLOP/s of ``device`` for a perfscope ``dtype`` name.

    Raises ``InvalidInputError`` for an unknown dtype name and ``UnsupportedConfigError``
    when the device has no such peak (not supported, or not published by the vendor).
    """
    check_dtype(dtype)  # unknown names are the user's error
    value = device.peaks_flops_per_s.get(dtype)
    if value is None:
        where = "calibrated profile" if device.source_kind == "calibrated" else "spec table"
        raise UnsupportedConfigError(
            f"{device.key} has no {dtype} peak ({where}): not supported or not published; "
            "run `perfscope calibrate` on the device to measure one")
    return float(value)


def load_device_specs() -> dict[str, DeviceSpec]:
    """All rows of ``data/devices.csv`` by device id (read once, then cached)."""
    return dict(_load_specs())


@lru_cache(maxsize=1)
def _load_specs() -> tuple[tuple[str, DeviceSpec], ...]:
    text = resources.files("perfscope.data").joinpath(SPEC_TABLE).read_text(encoding="utf-8")
    return tuple((s.device_id, s) for s in parse_device_specs(text))


def parse_device_specs(text: str) -> list[DeviceSpec]:
    """Parse spec-table CSV text into ``DeviceSpec`` rows, checking columns and ids."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise InvalidInputError(f"device spec table lacks columns: {', '.join(missing)}")
    specs: list[DeviceSpec] = []
    seen: set[str] = set()
    for line, raw in enumerate(reader, start=2):
        device_id = raw["device_id"].strip()
        if not device_id or device_id in seen:
            raise InvalidInputError(f"device spec table line {line}: empty or repeated device_id {device_id!r}")
        seen.add(device_id)
        try:
            values: dict[str, Any] = {c: _int_or_none(raw[c]) for c in _INT_COLUMNS}
            values.update({c: _float_or_none(raw[c]) for c in _FLOAT_COLUMNS})
        except ValueError as exc:
            raise InvalidInputError(f"device spec table line {line} ({device_id}): {exc}") from None
        specs.append(DeviceSpec(
            device_id=device_id,
            name=raw["name"].strip(),
            aliases=tuple(a.strip() for a in raw["aliases"].split(";") if a.strip()),
            vendor=raw["vendor"].strip(),
            architecture=raw["architecture"].strip(),
            compute_capability=raw["compute_capability"].strip() or None,
            dense=raw["dense"].strip().lower() == "true",
            source=raw["source"].strip(),
            notes=raw["notes"].strip(),
            **values,
        ))
    return specs


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    return int(float(text)) if text else None


def _float_or_none(text: str) -> float | None:
    text = text.strip()
    return float(text) if text else None


@dataclass(frozen=True)
class DeviceFigures:
    """A frozen copy of the roofline figures of one device (spec row or calibrated profile).

    Models keep one per device they were fitted on, so that a saved model predicts with
    the figures it was trained with even if the spec table changes or the device is
    recalibrated later. Implements ``RooflineDevice``. Defined here, with the spec rows,
    so that loading a saved model needs neither pandas nor the model modules' imports.
    """

    key: str
    name: str
    source_kind: str
    sm_count: int | None
    l2_bytes: int | None
    mem_bandwidth_bytes_per_s: float | None
    launch_overhead_s: float
    launch_overhead_source: str
    peaks: tuple[tuple[str, float], ...]

    @property
    def peaks_flops_per_s(self) -> dict[str, float]:
        """Peak FLOP/s per perfscope dtype."""
        return dict(self.peaks)

    @classmethod
    def of(cls, device: RooflineDevice) -> DeviceFigures:
        """Snapshot any ``RooflineDevice`` (``DeviceSpec``, ``DeviceProfile``, ``DeviceFigures``)."""
        return cls(key=str(device.key), name=str(device.name), source_kind=str(device.source_kind),
                   sm_count=int(device.sm_count) if device.sm_count else None,
                   l2_bytes=int(device.l2_bytes) if device.l2_bytes else None,
                   mem_bandwidth_bytes_per_s=(float(device.mem_bandwidth_bytes_per_s)
                                              if device.mem_bandwidth_bytes_per_s else None),
                   launch_overhead_s=float(device.launch_overhead_s),
                   launch_overhead_source=str(device.launch_overhead_source),
                   peaks=tuple(sorted((str(k), float(v)) for k, v in dict(device.peaks_flops_per_s).items())))

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready data (``from_json_dict`` reads it back)."""
        return {"key": self.key, "name": self.name, "source_kind": self.source_kind, "sm_count": self.sm_count,
                "l2_bytes": self.l2_bytes, "mem_bandwidth_bytes_per_s": self.mem_bandwidth_bytes_per_s,
                "launch_overhead_s": self.launch_overhead_s, "launch_overhead_source": self.launch_overhead_source,
                "peaks_flops_per_s": dict(self.peaks)}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> DeviceFigures:
        """Rebuild from ``to_json_dict`` data."""
        values = dict(data)
        peaks = values.pop("peaks_flops_per_s")
        return cls(peaks=tuple(sorted((str(k), float(v)) for k, v in peaks.items())), **values)


NO_DEVICE = DeviceFigures(key="none", name="none", source_kind="spec", sm_count=None, l2_bytes=None,
                          mem_bandwidth_bytes_per_s=None, launch_overhead_s=float("nan"),
                          launch_overhead_source="assumed", peaks=())
"""A device with no figures, for computing the (empty) features of no rows."""

