"""``perfscope calibrate``: measure a device's achieved peaks instead of trusting a spec sheet.

Three measurements, each with the perfscope timing harness (``perfscope.timing.measure``)
and each recorded with its method, raw timing statistics and status:

* achieved peak FLOP/s per dtype: one large square GEMM (``GemmCase``: torch.matmul;
  fp8 through ``torch._scaled_mm`` on CUDA), checked once against a float64 reference,
  FLOPs (2·n³) over the median call time;
* memory bandwidth: a large device-to-device copy (``dst.copy_(src)``, 256 MiB or 8x
  the last-level cache, whichever is larger), counted as read + write bytes;
* launch overhead: a 1-element ``torch.add`` into a preallocated output, the floor
  that small kernels hit (dispatch plus launch), median time per back-to-back call.

The result is a ``DeviceProfile`` (``source = "calibrated"``) that the roofline
features accept wherever they accept a ``DeviceSpec``. Profiles are JSON files under
``$PERFSCOPE_HOME/devices`` (default ``~/.cache/perfscope/devices``), one per device key.
``resolve_device`` prefers a calibrated profile over the spec table and says which it used.

The local CPU is never in the spec table: its figures must be measured here.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from perfscope.devices.base import Device, slugify
from perfscope.devicespecs import (
    DeviceSpec,
    find_device_spec,
    load_device_specs,
    normalise_device_name,
    peak_flops_per_s,
)
from perfscope.dtypes import DTYPES, dtype_info
from perfscope.errors import MeasurementError, SchemaVersionError, UnsupportedConfigError, UserInputError
from perfscope.timing import TimingPolicy, measure

PROFILE_VERSION = 1
PROFILE_SUBDIR = "devices"

# Default GEMM sizes (n for an n x n x n product). On this project's 2-core CPU, fp32
# reaches ~45 GFLOP/s at 2048 while bf16/fp16 run ~1 GFLOP/s (no native half-precision
# matmul path): 512 keeps each of those calls near 0.3 s, so calibrate ends in ~30 s.
CPU_GEMM_SIZES = {"fp32": 2048, "bf16": 512, "fp16": 512}
CUDA_GEMM_SIZE = 8192  # 1.1 TFLOP per call: long enough on any GPU in the spec table
COPY_BYTES_MIN = 256 * 2**20  # per buffer; at least 8x the last-level cache
LAUNCH_ELEMENTS = 1

CALIBRATE_POLICY = TimingPolicy(warmup_s=0.3, min_time_s=0.5, budget_s=4.0, target_ci_rel=0.02, min_samples=7)
"""Timing policy of each calibrate measurement (a 2% interval on the median, <= 4 s each)."""

Notify = Callable[[str], None]


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
        """Rebuild a profile from ``to_json_dict`` data (``UserInputError`` when malformed)."""
        version = data.get("profile_version")
        if not isinstance(version, int):
            raise UserInputError("not a perfscope device profile (no profile_version)")
        if version > PROFILE_VERSION:
            raise SchemaVersionError(f"device profile version {version} is newer than this perfscope "
                                     f"reads ({PROFILE_VERSION}): upgrade perfscope or recalibrate")
        if data.get("source") != "calibrated":
            raise UserInputError("not a calibrated device profile (source is not 'calibrated')")
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
            raise UserInputError(f"malformed device profile: {exc}") from None


# ---- measuring -------------------------------------------------------------------------

def calibrate(device: Device | str = "auto", *, dtypes: Sequence[str] | None = None,
              policy: TimingPolicy | None = None, gemm_sizes: Mapping[str, int] | None = None,
              copy_bytes: int | None = None, notify: Notify | None = None) -> DeviceProfile:
    """Measure ``device``'s achieved peak FLOP/s per dtype, memory bandwidth and launch overhead.

    ``device`` is a ``Device`` or a device string (auto, cpu, cuda, cuda:N). ``dtypes``
    defaults to every dtype the device kind can run (CPU: fp32, bf16, fp16); a dtype the
    device refuses is recorded as ``unsupported`` and gets no peak. ``gemm_sizes`` maps
    a dtype to n of its n x n x n GEMM (defaults: ``CPU_GEMM_SIZES`` / ``CUDA_GEMM_SIZE``),
    ``copy_bytes`` is the size of each copy buffer and ``policy`` the timing policy of
    every measurement (default ``CALIBRATE_POLICY``). ``notify`` receives progress lines.
    """
    try:
        import torch  # noqa: F401  (every measurement runs through torch)
    except ImportError as exc:
        raise ImportError("perfscope calibrate needs torch: install a CPU build (see README) "
                          "or `pip install perfscope[cuda]` on a GPU host") from exc

    from perfscope.devices import select_device
    from perfscope.provenance import host_provenance

    start = time.perf_counter()
    say = notify or (lambda _message: None)
    dev = select_device(device, notify=say) if isinstance(device, str) else device
    policy = policy or CALIBRATE_POLICY
    chosen = list(dtypes) if dtypes is not None else _default_dtypes(dev)
    for d in chosen:
        dtype_info(d)
    desc = dev.describe()
    measurements: list[CalibrationMeasurement] = []
    for d in chosen:
        size = _gemm_size(dev, d, gemm_sizes)
        say(f"GEMM {size}x{size}x{size} {d} ...")
        measurements.append(_measure_gemm(dev, d, size, policy))
        say(_describe(measurements[-1]))
    copy_size = copy_bytes if copy_bytes is not None else _default_copy_bytes(dev)
    say(f"copy {copy_size / 2**20:.4g} MiB ...")
    measurements.append(_measure_copy(dev, copy_size, policy))
    say(_describe(measurements[-1]))
    say("1-element add (launch floor) ...")
    measurements.append(_measure_launch(dev, policy))
    say(_describe(measurements[-1]))

    peaks = {m.dtype: m.value for m in measurements
             if m.quantity == "peak_flops_per_s" and m.status == "ok" and m.dtype and m.value}
    bandwidth = _ok_value(measurements, "mem_bandwidth_bytes_per_s")
    launch = _ok_value(measurements, "launch_overhead_s")
    if launch is None:
        failed = [m for m in measurements if m.quantity == "launch_overhead_s"]
        raise MeasurementError(f"could not measure the launch floor on {dev.key}: "
                                     f"{failed[0].reason if failed else 'not run'}")
    provenance = host_provenance()
    sm_count = desc.sm_count if dev.kind == "cuda" else provenance.get("threads")
    spec = find_device_spec(desc.name) if dev.kind == "cuda" else None
    return DeviceProfile(
        device_key=dev.key,
        name=desc.name,
        kind=dev.kind,
        peaks_flops_per_s=peaks,
        mem_bandwidth_bytes_per_s=bandwidth,
        launch_overhead_s=launch,
        sm_count=int(sm_count) if sm_count else None,
        l2_bytes=desc.last_level_cache_bytes,
        memory_bytes=desc.memory_bytes,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        calibrate_s=time.perf_counter() - start,
        measurements=tuple(measurements),
        description=asdict(desc),
        provenance=dict(provenance),
        spec_id=spec.device_id if spec else None,
    )


def _default_dtypes(device: Device) -> list[str]:
    if device.kind == "cuda":
        return list(DTYPES)  # the ones this GPU or the collector cannot run are recorded as unsupported
    return [name for name, info in DTYPES.items() if not info.cuda_only]


def _gemm_size(device: Device, dtype: str, sizes: Mapping[str, int] | None) -> int:
    if sizes and dtype in sizes:
        size = sizes[dtype]
        if not isinstance(size, int) or size < 1:
            raise UserInputError(f"calibrate GEMM size for {dtype} must be a positive integer, got {size!r}")
        return size
    if device.kind == "cuda":
        return CUDA_GEMM_SIZE
    return CPU_GEMM_SIZES.get(dtype, CPU_GEMM_SIZES["fp32"])


def _default_copy_bytes(device: Device) -> int:
    desc = device.describe()
    size = max(COPY_BYTES_MIN, 8 * (desc.last_level_cache_bytes or 0))
    if desc.memory_bytes:  # two buffers must fit comfortably
        size = min(size, desc.memory_bytes // 8)
    return int(size)


def _measure_gemm(device: Device, dtype: str, size: int, policy: TimingPolicy) -> CalibrationMeasurement:
    from perfscope.collectors.gemm import GemmCase

    case = GemmCase(batch=1, m=size, n=size, k=size, dtype=dtype)
    op = "torch._scaled_mm (per-tensor scales, bf16 output)" if dtype.startswith("fp8") else "torch.matmul"
    method = f"{op} {size}x{size}x{size} {dtype}, warm inputs, 2*n^3 FLOPs / median call time"
    return _run(device, "peak_flops_per_s", dtype, method, policy, lambda: _gemm_workload(case, device))


def _gemm_workload(case: Any, device: Device) -> tuple[Callable[[int], object], Callable[[], float], float, float,
                                                          Callable[[], None]]:
    if case.dtype.startswith("fp8"):
        from perfscope.collectors.fp8 import build_fp8_gemm  # scaled matmul (CUDA, cc >= 8.9)

        workload = build_fp8_gemm(case, device)
    else:
        workload = case.build(device)
    return workload.kernel, workload.check, workload.check_tolerance, float(workload.flops), workload.release


def _measure_copy(device: Device, copy_bytes: int, policy: TimingPolicy) -> CalibrationMeasurement:
    elements = max(1, copy_bytes // 4)
    method = (f"dst.copy_(src), fp32 {elements * 4 / 2**20:.4g} MiB per buffer, "
              "read + write bytes / median call time")

    def build() -> tuple[Any, ...]:
        import torch

        from perfscope.collectors.inputs import seeded_uniform

        src = seeded_uniform((elements,), torch.float32, device.torch_device, seed=7)
        dst = torch.empty_like(src)
        buffers = [src, dst]

        def check() -> float:
            dst.copy_(src)
            device.synchronize()
            return 0.0 if torch.equal(dst, src) else math.inf

        return (lambda _i: dst.copy_(src)), check, 0.0, float(2 * elements * 4), buffers.clear

    return _run(device, "mem_bandwidth_bytes_per_s", None, method, policy, build)


def _measure_launch(device: Device, policy: TimingPolicy) -> CalibrationMeasurement:
    method = (f"torch.add of {LAUNCH_ELEMENTS}-element fp32 tensors into a preallocated output, "
              "median time per back-to-back call")

    def build() -> tuple[Any, ...]:
        import torch

        from perfscope.collectors.inputs import seeded_uniform

        a = seeded_uniform((LAUNCH_ELEMENTS,), torch.float32, device.torch_device, seed=11)
        b = seeded_uniform((LAUNCH_ELEMENTS,), torch.float32, device.torch_device, seed=12)
        c = torch.empty_like(a)

        def check() -> float:
            torch.add(a, b, out=c)
            device.synchronize()
            return float((c - (a + b)).abs().max())

        return (lambda _i: torch.add(a, b, out=c)), check, 0.0, None, lambda: None

    return _run(device, "launch_overhead_s", None, method, policy, build)


def _run(device: Device, quantity: str, dtype: str | None, method: str, policy: TimingPolicy,
         build: Callable[[], tuple[Any, ...]]) -> CalibrationMeasurement:
    """Build, check once, time with the harness; failures become a measurement with a status."""
    start = time.perf_counter()
    release: Callable[[], None] = lambda: None  # noqa: E731
    base = {"quantity": quantity, "dtype": dtype, "method": method}
    try:
        kernel, check, tolerance, work, release = build()
        error = check()
        if not error <= tolerance:  # also catches NaN
            return CalibrationMeasurement(**base, status="check_failed", check_max_abs_err=_finite(error),
                                          reason=f"result differs from the reference: {error:.3g} > {tolerance:.3g}",
                                          elapsed_s=time.perf_counter() - start)
        timing = measure(device, kernel, policy)
    except UnsupportedConfigError as exc:
        return CalibrationMeasurement(**base, status="unsupported", reason=str(exc),
                                      elapsed_s=time.perf_counter() - start)
    except Exception as exc:  # calibrate goes on: the profile says what failed
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return CalibrationMeasurement(**base, status="error", reason=reason, elapsed_s=time.perf_counter() - start)
    finally:
        release()
    median = timing.median_s
    if quantity == "launch_overhead_s":
        value = median
    else:
        value = work / median if median > 0 else None
    return CalibrationMeasurement(
        **base, status="ok", value=value, work_per_call=work, timing_method=timing.method,
        time_median_s=median, time_p10_s=timing.quantile_s(0.10), time_p90_s=timing.quantile_s(0.90),
        time_ci_rel=timing.ci_rel, samples_n=len(timing.samples_s), calls_per_sample=timing.calls_per_sample,
        stopped_by=timing.stopped_by, noisy=timing.noisy, check_max_abs_err=_finite(error),
        elapsed_s=time.perf_counter() - start)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _ok_value(measurements: Sequence[CalibrationMeasurement], quantity: str) -> float | None:
    for m in measurements:
        if m.quantity == quantity and m.status == "ok":
            return m.value
    return None


def _describe(m: CalibrationMeasurement) -> str:
    label = f"{m.quantity}{f' {m.dtype}' if m.dtype else ''}"
    if m.status != "ok" or m.value is None:
        return f"{label}: {m.status} ({m.reason})"
    if m.quantity == "peak_flops_per_s":
        text = f"{m.value / 1e9:.2f} GFLOP/s"
    elif m.quantity == "mem_bandwidth_bytes_per_s":
        text = f"{m.value / 1e9:.2f} GB/s"
    else:
        text = f"{m.value * 1e6:.2f} us"
    return f"{label}: {text} (median of {m.samples_n} samples, ci +-{(m.time_ci_rel or 0) * 100:.1f}%)"


# ---- storing and finding profiles -------------------------------------------------------

def profile_dir() -> Path:
    """Where profiles live: ``$PERFSCOPE_HOME/devices``, else ``$XDG_CACHE_HOME/perfscope/devices``
    (``~/.cache/perfscope/devices`` by default)."""
    home = os.environ.get("PERFSCOPE_HOME")
    if home:
        return Path(home).expanduser() / PROFILE_SUBDIR
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "perfscope" / PROFILE_SUBDIR


def profile_path(device_key: str, directory: Path | str | None = None) -> Path:
    """The file of ``device_key``'s profile in ``directory`` (default ``profile_dir()``)."""
    folder = Path(directory) if directory is not None else profile_dir()
    return folder / f"{slugify(device_key)}.json"


def save_profile(profile: DeviceProfile, path: Path | str | None = None) -> Path:
    """Write ``profile`` as JSON (atomically) to ``path`` or its default location; return the path."""
    target = Path(path) if path is not None else profile_path(profile.device_key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(profile.to_json_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target


def load_profile(path: Path | str) -> DeviceProfile:
    """Read a profile written by ``save_profile`` (``UserInputError`` if missing or malformed).

    The profile read last from each path is kept and returned again while the file's
    modification time, size and inode are unchanged (``save_profile`` replaces the file,
    so a new calibration is always read): parsing costs ~0.2 ms, a stat ~5 us, and every
    estimate resolves its device.
    """
    path = Path(path)
    try:
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = _LOADED_PROFILES.get(str(path))
        if cached is not None and cached[0] == version:
            return cached[1]
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"no device profile at {path}: run `perfscope calibrate` first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"cannot read device profile {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path} is not a perfscope device profile")
    try:
        profile = DeviceProfile.from_json_dict(data)
    except UserInputError as exc:
        raise UserInputError(f"{path}: {exc}") from None
    _LOADED_PROFILES[str(path)] = (version, profile)
    return profile


_LOADED_PROFILES: dict[str, tuple[tuple[int, int, int], DeviceProfile]] = {}


def find_profile(device_key: str, directory: Path | str | None = None) -> DeviceProfile | None:
    """The saved profile of ``device_key``, or None when there is none. Without a
    ``directory``, the user's profiles come first, then those shipped with the sample
    profiles (``data/samples/devices``: measured by perfscope on the sample's machine)."""
    path = profile_path(device_key, directory)
    if path.is_file():
        return load_profile(path)
    if directory is None:
        shipped = shipped_profile_dir() / path.name
        if shipped.is_file():
            return load_profile(shipped)
    return None


@functools.lru_cache(maxsize=1)
def shipped_profile_dir() -> Path:
    """Calibrated profiles of the machines the shipped sample profiles were measured on."""
    from importlib import resources

    return Path(str(resources.files("perfscope.data"))) / "samples" / "devices"


def list_profiles(directory: Path | str | None = None) -> list[DeviceProfile]:
    """Every readable profile in ``directory`` (unreadable files are skipped)."""
    folder = Path(directory) if directory is not None else profile_dir()
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            out.append(load_profile(path))
        except UserInputError:
            continue
    return out


def resolve_device(name_or_key: str, *, directory: Path | str | None = None
                   ) -> tuple[DeviceSpec | DeviceProfile, str]:
    """The device to model and where its figures come from: ``(device, "calibrated" | "spec")``.

    A calibrated profile wins over the spec table. ``name_or_key`` may be a device key
    as rows and profiles record it (``cuda-nvidia-h100-80gb-hbm3``), a device name or alias (``H100``,
    ``NVIDIA GeForce RTX 4070``), a spec id (``h100-sxm``) or ``cpu`` for this machine's
    CPU, which has no spec row: it must have been calibrated.
    """
    query = name_or_key.strip()
    if not query:
        raise UserInputError("no device given: name a GPU (for example h100-sxm) or cpu")
    if normalise_device_name(query) in ("cpu", "local-cpu", "this-cpu"):
        from perfscope.devices.cpu import CpuDevice

        key = CpuDevice().key
        profile = find_profile(key, directory)
        if profile is None:
            raise UserInputError(f"no calibrated profile for this CPU ({key}): run `perfscope calibrate "
                                 "--device cpu` first (CPU peaks are measured, never taken from a table)")
        return profile, "calibrated"
    profile = find_profile(query, directory)
    if profile is not None:
        return profile, "calibrated"
    spec = find_device_spec(query)
    wanted = normalise_device_name(query)
    if spec is None and wanted.startswith("cuda-"):  # a dataset device key: cuda-<device name>
        spec = find_device_spec(wanted[len("cuda-"):])
    for candidate in list_profiles(directory):
        spec_id = candidate.spec_id or _spec_id_of(candidate.name)
        if normalise_device_name(candidate.name) == wanted or (spec is not None and spec_id == spec.device_id):
            return candidate, "calibrated"
    if spec is not None:
        return spec, "spec"
    calibrated = [p.device_key for p in list_profiles(directory)]
    raise UserInputError(
        f"unknown device {name_or_key!r}: use a spec-table id ({', '.join(sorted(load_device_specs()))})"
        + (f" or a calibrated profile ({', '.join(calibrated)})" if calibrated else "")
        + ", or run `perfscope calibrate` on it")


def resolve_row_device(device_key: str | None, device_name: str | None, *, directory: Path | str | None = None
                       ) -> tuple[DeviceSpec | DeviceProfile, str] | None:
    """``resolve_device`` for a profile row's device: by its key, then by its name; None
    when neither is known (rows name their device both ways, imports sometimes only one)."""
    for query in (device_key, device_name):
        if not isinstance(query, str) or not query.strip():
            continue
        try:
            return resolve_device(query, directory=directory)
        except UserInputError:
            continue
    return None


def _spec_id_of(name: str) -> str | None:
    spec = find_device_spec(name)
    return spec.device_id if spec else None
