"""A calibrated device profile: the figures ``perfscope calibrate`` measured on one device
(achieved peak FLOP/s per dtype, memory bandwidth, launch floor), each with how it was
measured. Usable by the roofline wherever a spec-table row is (``RooflineDevice``).
``perfscope.devices.registry`` stores and finds profiles; ``perfscope.collectors.calibrate``
measures them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from perfscope.devicespecs import peak_flops_per_s
from perfscope.errors import InvalidInputError, SchemaVersionError

PROFILE_VERSION = 1


@dataclass(frozen=True)
class CalibrationMeasurement:
    """One calibrate measurement: what was run, how it was timed, and the figure it gave."""

    quantity: str  # peak_flops_per_s, mem_bandwidth_bytes_per_s or launch_overhead_s
    dtype: str | None
    method: str
    status: str  # ok, unsupported, check_failed, error
    value: float | None = None
    reason: str | None = None
    work_per_call: float | None = None  # FLOPs (GEMM) or bytes read + written (copy)
    timing_method: str | None = None
    time_median_s: float | None = None
    time_p10_s: float | None = None
    time_p90_s: float | None = None
    time_ci_rel: float | None = None
    samples_n: int | None = None
    calls_per_sample: int | None = None
    stopped_by: str | None = None
    noisy: bool | None = None
    check_max_abs_err: float | None = None
    elapsed_s: float | None = None  # wall time of the whole measurement (build, check, timing)


@dataclass(frozen=True)
class DeviceProfile:
    """Measured figures of one device, usable by the roofline like a ``DeviceSpec``."""

    device_key: str
    name: str
    kind: str  # cpu or cuda
    peaks_flops_per_s: dict[str, float]  # achieved, per perfscope dtype
    mem_bandwidth_bytes_per_s: float | None
    launch_overhead_s: float
    sm_count: int | None  # CUDA: SMs; CPU: worker threads at calibration time
    l2_bytes: int | None  # last-level cache
    memory_bytes: int | None
    measured_at: str  # ISO 8601, UTC
    calibrate_s: float  # wall time of the whole calibration
    measurements: tuple[CalibrationMeasurement, ...] = ()
    description: dict[str, Any] = field(default_factory=dict)  # DeviceDescription fields
    provenance: dict[str, Any] = field(default_factory=dict)  # host, versions, threads
    spec_id: str | None = None  # the spec-table row of the same device, if any
    source: str = "calibrated"
    profile_version: int = PROFILE_VERSION

    source_kind = "calibrated"
    launch_overhead_source = "calibrated"

    @property
    def key(self) -> str:
        """The device key (``RooflineDevice.key``)."""
        return self.device_key

    def peak_flops_per_s(self, dtype: str) -> float:
        """Achieved peak FLOP/s for ``dtype``; ``UnsupportedConfigError`` if not measured."""
        return peak_flops_per_s(self, dtype)

    def summary(self) -> list[dict[str, Any]]:
        """One plain dict per measurement (quantity, dtype, value, status, method) for display."""
        return [{"quantity": m.quantity, "dtype": m.dtype, "value": m.value, "status": m.status,
                 "method": m.method, "reason": m.reason} for m in self.measurements]

    def to_json_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready data."""
        data = asdict(self)
        data["measurements"] = [asdict(m) for m in self.measurements]
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> DeviceProfile:
        """Rebuild a profile from ``to_json_dict`` data (``InvalidInputError`` when malformed)."""
        version = data.get("profile_version")
        if not isinstance(version, int):
            raise InvalidInputError("not a perfscope device profile (no profile_version)")
        if version > PROFILE_VERSION:
            raise SchemaVersionError(f"device profile version {version} is newer than this perfscope "
                                     f"reads ({PROFILE_VERSION}): upgrade perfscope or recalibrate")
        if data.get("source") != "calibrated":
            raise InvalidInputError("not a calibrated device profile (source is not 'calibrated')")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        measurement_fields = {f.name for f in fields(CalibrationMeasurement)}
        try:
            values["measurements"] = tuple(
                CalibrationMeasurement(**{k: v for k, v in m.items() if k in measurement_fields})
                for m in data.get("measurements", ()))
            values["peaks_flops_per_s"] = {str(k): float(v) for k, v in data["peaks_flops_per_s"].items()}
            return cls(**values)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"malformed device profile: {exc}") from None
