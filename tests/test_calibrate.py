"""calibrate on the CPU (tiny sizes), profile storage, and device resolution."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from perfscope.collectors.calibrate import _run, calibrate
from perfscope.devices import CpuDevice
from perfscope.devices.profile import DeviceProfile
from perfscope.devices.registry import (
    find_profile,
    list_profiles,
    load_profile,
    profile_dir,
    profile_path,
    resolve_device,
    save_profile,
)
from perfscope.devicespecs import DeviceSpec
from perfscope.errors import InvalidInputError, SchemaVersionError, UnsupportedConfigError
from perfscope.timing import TimingPolicy

FAST = TimingPolicy(warmup_s=0.005, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05, min_samples=3)
TINY = {"fp32": 48, "bf16": 16, "fp16": 16, "tf32": 16, "fp8_e4m3": 16}


@pytest.fixture(autouse=True)
def perfscope_home(tmp_path, monkeypatch):
    """Profiles go to a temporary PERFSCOPE_HOME, never to the user's cache."""
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def cpu_profile():
    return calibrate("cpu", dtypes=["fp32", "bf16", "fp16", "tf32", "fp8_e4m3"], gemm_sizes=TINY, copy_bytes=2**20,
                     policy=FAST)


def test_calibrate_on_the_cpu_gives_positive_measured_figures(cpu_profile):
    p = cpu_profile
    assert (p.source, p.kind, p.device_key) == ("calibrated", "cpu", CpuDevice().key)
    assert set(p.peaks_flops_per_s) == {"fp32", "bf16", "fp16"}
    assert all(v > 0 and math.isfinite(v) for v in p.peaks_flops_per_s.values())
    assert p.mem_bandwidth_bytes_per_s > 0 and 0 < p.launch_overhead_s < 1e-2
    assert p.sm_count >= 1 and p.calibrate_s > 0 and p.spec_id is None


def test_every_measurement_says_how_it_was_made(cpu_profile):
    by_quantity = {(m.quantity, m.dtype): m for m in cpu_profile.measurements}
    gemm = by_quantity[("peak_flops_per_s", "fp32")]
    assert gemm.status == "ok" and "48x48x48" in gemm.method and gemm.timing_method == "perf_counter_ns-batched"
    assert gemm.work_per_call == 2 * 48**3
    assert gemm.value == pytest.approx(gemm.work_per_call / gemm.time_median_s)
    assert gemm.check_max_abs_err is not None and gemm.samples_n >= 1
    copy = by_quantity[("mem_bandwidth_bytes_per_s", None)]
    assert copy.work_per_call == 2 * 2**20  # read + write of one 1 MiB buffer
    assert copy.value == pytest.approx(copy.work_per_call / copy.time_median_s)
    launch = by_quantity[("launch_overhead_s", None)]
    assert launch.value == launch.time_median_s and "1-element" in launch.method


@pytest.mark.parametrize("dtype", ["tf32", "fp8_e4m3"])
def test_a_dtype_the_cpu_cannot_run_is_recorded_not_guessed(cpu_profile, dtype):
    (m,) = [m for m in cpu_profile.measurements if m.dtype == dtype]
    assert m.status == "unsupported" and "CUDA" in m.reason and m.value is None
    with pytest.raises(UnsupportedConfigError):
        cpu_profile.peak_flops_per_s(dtype)


def test_profiles_round_trip_through_json(cpu_profile, tmp_path):
    path = save_profile(cpu_profile, tmp_path / "p.json")
    assert json.loads(path.read_text())["source"] == "calibrated"
    assert load_profile(path) == cpu_profile
    default = save_profile(cpu_profile)  # the default location, under PERFSCOPE_HOME
    assert default == profile_path(cpu_profile.device_key) and default.parent == profile_dir()
    assert find_profile(cpu_profile.device_key) == cpu_profile
    assert find_profile("cuda-nothing-here") is None


def test_bad_profile_files_are_user_errors(cpu_profile, tmp_path):
    with pytest.raises(InvalidInputError, match="calibrate"):
        load_profile(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="junk.json"):
        load_profile(tmp_path / "junk.json")
    newer = cpu_profile.to_json_dict() | {"profile_version": 99}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(SchemaVersionError):
        load_profile(tmp_path / "newer.json")
    spec_like = cpu_profile.to_json_dict() | {"source": "spec"}
    (tmp_path / "spec.json").write_text(json.dumps(spec_like))
    with pytest.raises(InvalidInputError, match="calibrated"):
        load_profile(tmp_path / "spec.json")


def test_a_failed_result_check_is_recorded_and_not_timed():
    calls = []

    def build():
        return (lambda i: calls.append(i)), (lambda: 1.0), 1e-3, 10.0, (lambda: None)

    m = _run(CpuDevice(), "peak_flops_per_s", "fp32", "test", FAST, build)
    assert m.status == "check_failed" and m.value is None and calls == []


def test_resolve_cpu_needs_a_calibrated_profile(cpu_profile, monkeypatch, tmp_path):
    import perfscope.devices.registry as registry

    # the sample profile's machine ships its profile: pretend this is another machine
    monkeypatch.setattr(registry, "shipped_profile_dir", lambda: tmp_path / "none")
    with pytest.raises(InvalidInputError, match="perfscope calibrate"):
        resolve_device("cpu")
    save_profile(cpu_profile)
    device, source = resolve_device("CPU")
    assert source == "calibrated" and device == cpu_profile
    assert resolve_device(cpu_profile.device_key) == (cpu_profile, "calibrated")


def test_a_shipped_profile_backs_up_the_users(monkeypatch, tmp_path):
    from perfscope.devices.registry import find_profile, shipped_profile_dir

    shipped = sorted(shipped_profile_dir().glob("*.json"))
    assert shipped, "the sample profile's calibrated device profile is shipped"
    key = shipped[0].stem
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path))
    assert find_profile(key).device_key == key
    assert find_profile(key, directory=tmp_path) is None  # an explicit directory is searched alone


def test_resolve_prefers_a_calibrated_gpu_profile_over_the_spec_sheet(cpu_profile):
    device, source = resolve_device("H100")
    assert source == "spec" and isinstance(device, DeviceSpec) and device.device_id == "h100-sxm"
    assert resolve_device("cuda-nvidia-geforce-rtx-4070")[0].device_id == "rtx-4070"  # a dataset device key
    gpu = replace(cpu_profile, device_key="cuda-nvidia-h100-80gb-hbm3", name="NVIDIA H100 80GB HBM3", kind="cuda",
                  sm_count=132, spec_id="h100-sxm", peaks_flops_per_s={"fp16": 700e12})
    save_profile(gpu)
    for name in ("H100", "h100-sxm", "NVIDIA H100 80GB HBM3", "cuda-nvidia-h100-80gb-hbm3"):
        assert resolve_device(name) == (gpu, "calibrated")
    assert resolve_device("H100 PCIe")[1] == "spec"  # a different part keeps its spec row
    assert [p.device_key for p in list_profiles()] == ["cuda-nvidia-h100-80gb-hbm3"]


def test_resolve_unknown_device_lists_what_is_known():
    with pytest.raises(InvalidInputError) as err:
        resolve_device("quantum-accelerator-9000")
    assert "h100-sxm" in str(err.value) and "calibrate" in str(err.value)
    with pytest.raises(InvalidInputError):
        resolve_device("  ")


def test_profile_interface_matches_the_roofline_protocol(cpu_profile):
    from perfscope.devicespecs import RooflineDevice

    assert isinstance(cpu_profile, RooflineDevice)
    assert isinstance(DeviceProfile.from_json_dict(cpu_profile.to_json_dict()), RooflineDevice)


def test_resolving_a_device_and_bounding_a_kernel_stay_off_torch_and_pandas(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import sys; from perfscope.devices.registry import resolve_device; "
            "from perfscope.roofline import roofline_bound; "
            "d, src = resolve_device('NVIDIA GeForce RTX 4070'); "
            "b = roofline_bound(2 * 2048**3, 3 * 4 * 2048**2, d.peak_flops_per_s('fp32'), "
            "d.mem_bandwidth_bytes_per_s, d.launch_overhead_s); "
            "print(src, int(b.regime), sorted(m for m in ('torch', 'pandas') if m in sys.modules))")
    env = os.environ | {"PERFSCOPE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["spec", "2", "[]"]
