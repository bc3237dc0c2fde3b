"""The device registry: one device under all its names, profiles in the XDG data directory
(the old cache location still read), and resolution of dataset rows to their figures."""

from __future__ import annotations

import pytest

from perfscope.devices.profile import DeviceProfile
from perfscope.devices.registry import (
    DeviceRef,
    device_ref,
    find_device_spec,
    find_profile,
    legacy_profile_dir,
    list_profiles,
    profile_dir,
    resolve_device,
    resolve_row_devices,
    save_profile,
)
from perfscope.devicespecs import DeviceSpec
from perfscope.errors import InvalidInputError


def _gpu_profile(**overrides) -> DeviceProfile:
    values = dict(device_key="cuda-nvidia-h100-80gb-hbm3", name="NVIDIA H100 80GB HBM3", kind="cuda",
                  peaks_flops_per_s={"fp16": 700e12}, mem_bandwidth_bytes_per_s=3e12, launch_overhead_s=4e-6,
                  sm_count=132, l2_bytes=50 * 2**20, memory_bytes=80 * 2**30, measured_at="2026-01-01T00:00:00+00:00",
                  calibrate_s=1.0, spec_id="h100-sxm")
    return DeviceProfile(**(values | overrides))


@pytest.fixture
def xdg(monkeypatch, tmp_path):
    """No PERFSCOPE_HOME: the XDG directories decide, both under tmp_path."""
    monkeypatch.delenv("PERFSCOPE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_profiles_go_to_perfscope_home_else_the_xdg_data_directory(monkeypatch, xdg):
    assert profile_dir() == xdg / "data" / "perfscope" / "devices"
    assert legacy_profile_dir() == xdg / "cache" / "perfscope" / "devices"
    assert save_profile(_gpu_profile()).parent == profile_dir()
    monkeypatch.setenv("PERFSCOPE_HOME", str(xdg / "home"))
    assert profile_dir() == xdg / "home" / "devices" and legacy_profile_dir() is None


def test_a_profile_in_the_old_cache_location_is_still_found(xdg):
    old = _gpu_profile(peaks_flops_per_s={"fp16": 600e12})
    save_profile(old, legacy_profile_dir() / "cuda-nvidia-h100-80gb-hbm3.json")
    assert find_profile(old.device_key) == old
    assert resolve_device("H100") == (old, "calibrated")
    new = _gpu_profile()
    save_profile(new)  # a recalibration in the data directory wins over the old file
    assert find_profile(old.device_key) == new
    assert list_profiles() == [new]


def test_a_device_ref_holds_every_name_of_the_device(xdg):
    assert device_ref("H100") == DeviceRef(key="h100-sxm", name=find_device_spec("h100-sxm").name,
                                           spec_id="h100-sxm")
    save_profile(_gpu_profile())
    for name in ("H100", "h100-sxm", "NVIDIA H100 80GB HBM3", "cuda-nvidia-h100-80gb-hbm3"):
        assert device_ref(name) == DeviceRef(key="cuda-nvidia-h100-80gb-hbm3", name="NVIDIA H100 80GB HBM3",
                                             spec_id="h100-sxm")


def test_a_dataset_key_matches_the_spec_row_of_its_name():
    assert find_device_spec("cuda-nvidia-geforce-rtx-4070").device_id == "rtx-4070"
    assert find_device_spec("cuda-quantum-9000") is None


def test_rows_resolve_by_key_then_by_name_with_given_devices_first(xdg):
    keys = ["cuda-a", "cuda-a", "cuda-b", "given"]
    names = ["NVIDIA H100 80GB HBM3", None, "NVIDIA L4", None]
    given = {"given": _gpu_profile(device_key="given")}
    resolved = resolve_row_devices(keys, names, given)
    assert list(resolved) == ["cuda-a", "cuda-b", "given"]
    assert isinstance(resolved["cuda-a"], DeviceSpec) and resolved["cuda-a"].device_id == "h100-sxm"
    assert resolved["cuda-b"].device_id == "l4" and resolved["given"] is given["given"]
    with pytest.raises(InvalidInputError, match=r"cuda-x \(Mystery GPU\).*perfscope calibrate"):
        resolve_row_devices(["cuda-x"], ["Mystery GPU"])


def _profile(key: str, name: str) -> DeviceProfile:
    return DeviceProfile(device_key=key, name=name, kind="cuda", peaks_flops_per_s={"bf16": 6.0e14},
                         mem_bandwidth_bytes_per_s=3.0e12, launch_overhead_s=4e-6, sm_count=132, l2_bytes=None,
                         memory_bytes=None, measured_at="2025-11-30T00:00:00+00:00", calibrate_s=1.0,
                         spec_id="h100-sxm")


def test_a_profile_stored_with_a_dataset_is_found_by_key_then_by_name(tmp_path, monkeypatch):
    from perfscope.devices.registry import DATASET_PROFILE_SUBDIR, find_dataset_profile, save_dataset_profile
    from perfscope.store import ProfileStore

    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))
    dataset = tmp_path / "dataset"
    ProfileStore(dataset, create=True)
    path = save_dataset_profile(_profile("cuda-gpu-a", "NVIDIA H100 80GB HBM3"), dataset)
    assert path.parent == dataset / DATASET_PROFILE_SUBDIR
    found, where = find_dataset_profile("cuda-gpu-a", None, [tmp_path / "other", dataset])
    assert found.peaks_flops_per_s["bf16"] == 6.0e14 and where == path
    by_name = find_dataset_profile("cuda-renamed", "NVIDIA H100 80GB HBM3", [dataset])
    assert by_name is not None and by_name[1] == path
    assert find_dataset_profile("cuda-gpu-b", "NVIDIA A100", [dataset]) is None
    assert find_dataset_profile("cuda-gpu-a", None, []) is None  # the viewer's own profiles are not a dataset's
    with pytest.raises(InvalidInputError, match="not a perfscope dataset"):
        save_dataset_profile(_profile("cuda-gpu-a", "x"), tmp_path / "plain-folder")


def test_calibrate_refuses_a_dataset_that_is_not_one_before_measuring(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "perfscope", "calibrate", "--device", "cpu", "--dataset",
                          str(tmp_path / "nothing-here")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "not a perfscope dataset" in run.stderr and "Traceback" not in run.stderr
