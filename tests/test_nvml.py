"""perfscope.nvml (loading NVML, mapping its errors) and the fakes it is tested with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perfscope.errors import (
    MeterUnavailableError,
    NvmlError,
    NvmlNotSupportedError,
    NvmlPermissionError,
    NvmlUnavailableError,
)
from perfscope.nvml import load_nvml, nvml_call, nvml_optional
from perfscope.testing import FakeClock, FakeGpu, FakeNvml, fake_nvml

REPO_ROOT = Path(__file__).resolve().parents[1]


def initialised(nvml: FakeNvml) -> FakeNvml:
    return load_nvml(nvml)


# ----- load_nvml -----------------------------------------------------------------------


def test_load_nvml_initialises_once_per_module_object() -> None:
    first, second = FakeNvml(), FakeNvml()
    assert load_nvml(first) is first
    assert load_nvml(first) is first
    assert first.init_count == 1
    assert load_nvml(second) is second
    assert second.init_count == 1
    assert first.init_count == 1


def test_load_nvml_without_library_raises_unavailable_and_retries_later() -> None:
    nvml = FakeNvml(library_present=False)
    with pytest.raises(NvmlUnavailableError) as info:
        load_nvml(nvml)
    assert info.value.nvml_code == fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND
    assert "nvmlInit" in str(info.value)
    assert "nvidia-smi" in str(info.value)
    assert isinstance(info.value, MeterUnavailableError)
    # A failed init is not remembered: once the library appears, init happens.
    nvml.library_present = True
    assert load_nvml(nvml) is nvml
    assert nvml.init_count == 1


def test_load_nvml_import_failure_gives_install_hint() -> None:
    with pytest.raises(NvmlUnavailableError) as info:
        load_nvml("perfscope_tests_no_such_nvml_module")
    message = str(info.value)
    assert "pip install nvidia-ml-py" in message
    assert "perfscope[cuda]" in message
    assert info.value.nvml_code is None


def test_importing_perfscope_imports_neither_pynvml_nor_torch() -> None:
    code = (
        "import sys\n"
        "import perfscope.nvml, perfscope.meters.nvml_counter, perfscope.meters.nvml_sampled\n"
        "import perfscope.devices.cuda, perfscope.testing\n"
        "bad = [m for m in ('pynvml', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}, timeout=60,
    )
    assert result.returncode == 0, result.stderr


# ----- nvml_call error mapping ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (fake_nvml.NVML_ERROR_NOT_SUPPORTED, NvmlNotSupportedError),
        (fake_nvml.NVML_ERROR_FUNCTION_NOT_FOUND, NvmlNotSupportedError),
        (fake_nvml.NVML_ERROR_NO_PERMISSION, NvmlPermissionError),
        (fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND, NvmlUnavailableError),
        (fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED, NvmlUnavailableError),
        (fake_nvml.NVML_ERROR_UNINITIALIZED, NvmlUnavailableError),
        (fake_nvml.NVML_ERROR_GPU_IS_LOST, NvmlError),
        (fake_nvml.NVML_ERROR_UNKNOWN, NvmlError),
    ],
)
def test_nvml_call_maps_error_codes(code: int, error_type: type[NvmlError]) -> None:
    nvml = initialised(FakeNvml())
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    nvml.fail("nvmlDeviceGetTemperature", code)
    with pytest.raises(NvmlError) as info:
        nvml_call(nvml, "nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU)
    assert type(info.value) is error_type
    assert info.value.nvml_code == code
    assert "nvmlDeviceGetTemperature" in str(info.value)
    assert isinstance(info.value.__cause__, nvml.NVMLError)


def test_nvml_call_messages_say_what_to_do() -> None:
    nvml = initialised(FakeNvml())
    nvml.fail("nvmlDeviceGetCount", fake_nvml.NVML_ERROR_NO_PERMISSION)
    with pytest.raises(NvmlPermissionError, match="root"):
        nvml_call(nvml, "nvmlDeviceGetCount")
    nvml.fail("nvmlDeviceGetCount", fake_nvml.NVML_ERROR_GPU_IS_LOST)
    with pytest.raises(NvmlError, match="reset the GPU or reboot"):
        nvml_call(nvml, "nvmlDeviceGetCount")


def test_nvml_call_passes_arguments_and_returns_the_value() -> None:
    nvml = initialised(FakeNvml([FakeGpu(sm_clock_mhz=1410, mem_clock_mhz=1593)]))
    handle = nvml_call(nvml, "nvmlDeviceGetHandleByIndex", 0)
    assert nvml_call(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM) == 1410
    assert nvml_call(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_MEM) == 1593


def test_nvml_call_on_uninitialised_fake_is_unavailable() -> None:
    nvml = FakeNvml()
    with pytest.raises(NvmlUnavailableError, match="load_nvml"):
        nvml_call(nvml, "nvmlDeviceGetCount")


def test_nvml_call_missing_function_is_not_supported() -> None:
    nvml = initialised(FakeNvml())
    with pytest.raises(NvmlNotSupportedError, match="upgrade nvidia-ml-py"):
        nvml_call(nvml, "nvmlDeviceGetSomethingNew")


def test_nvml_optional_returns_none_only_when_not_supported() -> None:
    nvml = initialised(FakeNvml([FakeGpu(power_limit_w=350.0)]))
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml_optional(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle) == 350_000
    nvml.fail("nvmlDeviceGetEnforcedPowerLimit", fake_nvml.NVML_ERROR_NOT_SUPPORTED)
    assert nvml_optional(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle) is None
    nvml.fail("nvmlDeviceGetEnforcedPowerLimit", fake_nvml.NVML_ERROR_NO_PERMISSION)
    with pytest.raises(NvmlPermissionError):
        nvml_optional(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle)


# ----- the fakes -----------------------------------------------------------------------


def test_fake_clock_advances_and_auto_steps() -> None:
    clock = FakeClock(start_s=5.0)
    assert clock() == 5.0
    clock.advance(0.25)
    assert clock() == 5.25
    with pytest.raises(ValueError):
        clock.advance(-1.0)
    stepping = FakeClock(auto_step_s=0.5)
    assert [stepping(), stepping(), stepping()] == [0.0, 0.5, 1.0]
    assert stepping.now_s == 1.5


def test_fake_energy_counter_is_quantised_to_updates() -> None:
    clock = FakeClock()
    nvml = initialised(
        FakeNvml([FakeGpu(power_w=250.0, initial_energy_mj=7_000)], clock=clock)
    )
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    read = lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # noqa: E731
    assert read() == 7_000
    clock.advance(0.05)
    assert read() == 7_000  # no update yet
    clock.advance(0.06)  # t = 0.11: one update of 100 ms at 250 W = 25 J
    value = read()
    assert isinstance(value, int)
    assert value == 7_000 + 25_000
    clock.advance(1.0)  # t = 1.11: the update at t = 1.1
    assert read() == 7_000 + 275_000
    assert nvml.true_energy_mj(0) == pytest.approx(7_000 + 277_500)
    assert read() == 7_000 + 275_000  # reading the true energy moved nothing


def test_fake_energy_counter_integrates_a_power_function() -> None:
    clock = FakeClock()
    gpu = FakeGpu(power_w=lambda t: 100.0 + 50.0 * t, counter_update_s=0.5, initial_energy_mj=0)
    nvml = initialised(FakeNvml([gpu], clock=clock))
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(2.0)
    # integral of 100 + 50 t over [0, 2] = 200 + 100 = 300 J
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) == pytest.approx(300_000, abs=1)
    assert nvml.nvmlDeviceGetPowerUsage(handle) == 200_000


def test_fake_unsupported_counter_and_fields() -> None:
    gpu = FakeGpu(power_w=123.4, energy_counter_supported=False, field_values_supported=False)
    nvml = initialised(FakeNvml([gpu], clock=FakeClock()))
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(nvml.NVMLError) as info:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    assert info.value.value == fake_nvml.NVML_ERROR_NOT_SUPPORTED
    (value,) = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])
    assert value.nvmlReturn == fake_nvml.NVML_ERROR_NOT_SUPPORTED
    assert nvml.nvmlDeviceGetPowerUsage(handle) == 123_400


def test_fake_field_values_report_instant_power() -> None:
    nvml = initialised(FakeNvml([FakeGpu(power_w=321.5)], clock=FakeClock()))
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    power, other = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT, 999])
    assert (power.fieldId, power.nvmlReturn, power.value.uiVal) == (186, 0, 321_500)
    assert other.fieldId == 999 and other.nvmlReturn != 0


def test_fake_fail_can_be_limited_and_cleared() -> None:
    nvml = initialised(FakeNvml())
    nvml.fail("nvmlDeviceGetCount", fake_nvml.NVML_ERROR_UNKNOWN, times=1)
    with pytest.raises(nvml.NVMLError):
        nvml.nvmlDeviceGetCount()
    assert nvml.nvmlDeviceGetCount() == 1
    nvml.fail("nvmlDeviceGetCount", fake_nvml.NVML_ERROR_UNKNOWN)
    nvml.clear_failures()
    assert nvml.nvmlDeviceGetCount() == 1
    with pytest.raises(ValueError):
        nvml.fail("nvmlNoSuchFunction", 3)


def test_fake_handles_are_per_gpu_and_checked() -> None:
    gpus = [FakeGpu(name="A", uuid="GPU-a"), FakeGpu(name="B", uuid="GPU-b")]
    nvml = initialised(FakeNvml(gpus, clock=FakeClock()))
    assert nvml.nvmlDeviceGetCount() == 2
    second = nvml.nvmlDeviceGetHandleByIndex(1)
    assert nvml.nvmlDeviceGetName(second) == "B"
    assert nvml.nvmlDeviceGetUUID(second) == "GPU-b"
    with pytest.raises(nvml.NVMLError):
        nvml.nvmlDeviceGetHandleByIndex(2)
    other = initialised(FakeNvml(gpus, clock=FakeClock()))
    with pytest.raises(nvml.NVMLError):  # a handle from another fake is not ours
        nvml.nvmlDeviceGetName(other.nvmlDeviceGetHandleByIndex(0))


def test_fake_constants_match_real_pynvml() -> None:
    import pynvml  # importing pynvml needs no driver; the test extra installs it
    nvml = FakeNvml()
    for name in (
        "NVML_ERROR_UNINITIALIZED", "NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION",
        "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIBRARY_NOT_FOUND",
        "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_UNKNOWN",
        "NVML_FI_DEV_POWER_INSTANT", "NVML_CLOCK_SM", "NVML_CLOCK_MEM",
        "NVML_TEMPERATURE_GPU", "nvmlClocksEventReasonGpuIdle",
        "nvmlClocksEventReasonApplicationsClocksSetting", "nvmlClocksEventReasonSwPowerCap",
    ):
        assert getattr(nvml, name) == getattr(pynvml, name), name
    for name in dir(nvml):
        if name.startswith("nvml") and callable(getattr(nvml, name)):
            assert hasattr(pynvml, name), f"FakeNvml.{name} is not a pynvml function"
