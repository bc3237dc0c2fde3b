"""CudaDevice end to end through FakeCuda and FakeNvml (no GPU on development machines)."""

from __future__ import annotations

import pytest

from perfscope.devices.base import Device, DeviceDescription
from perfscope.devices.cuda import CudaDevice, is_throttled
from perfscope.errors import DeviceUnavailableError, InvalidInputError
from perfscope.testing import FakeClock, FakeCuda, FakeDeviceProperties, FakeGpu, FakeNvml, fake_nvml

H100 = FakeDeviceProperties(
    name="NVIDIA H100 80GB HBM3",
    multi_processor_count=132,
    L2_cache_size=52_428_800,
    total_memory=85_045_460_992,
    major=9,
    minor=0,
)


def make_device(
    gpus: list[FakeGpu] | None = None,
    props: list[FakeDeviceProperties] | None = None,
    index: int = 0,
    nvml: FakeNvml | None = None,
) -> tuple[CudaDevice, FakeClock, FakeCuda, FakeNvml]:
    clock = FakeClock()
    cuda = FakeCuda(clock, props if props is not None else [H100])
    if nvml is None:
        nvml = FakeNvml(gpus if gpus is not None else [FakeGpu(uuid="GPU-h100")], clock=clock)
    device = CudaDevice(index, nvml=nvml, cuda=cuda, cuda_version="12.4")
    return device, clock, cuda, nvml


# ----- construction --------------------------------------------------------------------


def test_missing_index_raises_device_unavailable() -> None:
    cuda = FakeCuda(FakeClock(), [H100])
    with pytest.raises(DeviceUnavailableError, match=r"cuda:2 requested but only 1 CUDA devices"):
        CudaDevice(2, nvml=FakeNvml(), cuda=cuda)


def test_no_cuda_raises_device_unavailable() -> None:
    cuda = FakeCuda(FakeClock(), [H100], available=False)
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        CudaDevice(0, nvml=FakeNvml(), cuda=cuda)


def test_device_identity() -> None:
    device, *_ = make_device(props=[H100, H100], gpus=[FakeGpu(), FakeGpu()], index=1)
    assert isinstance(device, Device)
    assert device.kind == "cuda"
    assert device.timing_method == "cuda-events"
    assert device.torch_device == "cuda:1"
    assert device.key == "cuda-nvidia-h100-80gb-hbm3"


# ----- describe / read_state -----------------------------------------------------------


def test_describe_combines_torch_properties_and_nvml() -> None:
    gpu = FakeGpu(name="NVIDIA H100 80GB HBM3", uuid="GPU-1234abcd", power_limit_w=700.0)
    device, *_ = make_device(gpus=[gpu])
    assert device.describe() == DeviceDescription(
        kind="cuda",
        name="NVIDIA H100 80GB HBM3",
        index=0,
        uuid="GPU-1234abcd",
        driver_version="550.54.15",
        cuda_version="12.4",
        sm_count=132,
        last_level_cache_bytes=52_428_800,
        memory_bytes=85_045_460_992,
        power_limit_w=700.0,
        compute_capability="9.0",
    )


def test_nvml_device_is_matched_by_uuid() -> None:
    # CUDA lists the GPUs in the opposite order to NVML.
    props = [
        FakeDeviceProperties(name="B", uuid="bbbb-2222"),
        FakeDeviceProperties(name="A", uuid="aaaa-1111"),
    ]
    gpus = [
        FakeGpu(uuid="GPU-aaaa-1111", power_limit_w=300.0, sm_clock_mhz=1000),
        FakeGpu(uuid="GPU-bbbb-2222", power_limit_w=450.0, sm_clock_mhz=1500),
    ]
    device, *_ = make_device(gpus=gpus, props=props, index=0)
    assert device.describe().uuid == "GPU-bbbb-2222"
    assert device.describe().power_limit_w == 450.0
    assert device.read_state().clock_mhz == 1500.0
    assert device.nvml_index == 1


def test_read_state_reports_clocks_temperature_and_reasons() -> None:
    gpu = FakeGpu(sm_clock_mhz=1755, mem_clock_mhz=2619, temperature_c=61, throttle_reasons=0x1)
    device, _, _, nvml = make_device(gpus=[gpu])
    state = device.read_state()
    assert state.clock_mhz == 1755.0
    assert state.mem_clock_mhz == 2619.0
    assert state.temperature_c == 61.0
    assert state.throttle_reasons == 0x1
    assert state.throttled is False
    gpu.throttle_reasons = 0x4  # software power cap
    gpu.sm_clock_mhz = 1410
    state = device.read_state()
    assert (state.clock_mhz, state.throttled) == (1410.0, True)
    assert nvml.init_count == 1


@pytest.mark.parametrize(
    ("reasons", "throttled"),
    [
        (0x0, False),
        (0x1, False),  # GPU idle
        (0x2, False),  # applications clocks setting
        (0x3, False),
        (0x4, True),  # software power cap
        (0x8, True),  # hardware slowdown
        (0x20 | 0x1, True),  # software thermal slowdown while idle
        (None, None),
    ],
)
def test_is_throttled(reasons: int | None, throttled: bool | None) -> None:
    assert is_throttled(reasons) is throttled


def test_read_state_falls_back_to_throttle_reasons_on_old_drivers() -> None:
    device, _, _, nvml = make_device(gpus=[FakeGpu(throttle_reasons=0x40)])
    nvml.fail("nvmlDeviceGetCurrentClocksEventReasons", fake_nvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    state = device.read_state()
    assert state.throttle_reasons == 0x40
    assert state.throttled is True
    assert nvml.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 1


def test_unsupported_queries_give_none_fields() -> None:
    device, _, _, nvml = make_device()
    nvml.fail("nvmlDeviceGetEnforcedPowerLimit", fake_nvml.NVML_ERROR_NOT_SUPPORTED)
    nvml.fail("nvmlDeviceGetTemperature", fake_nvml.NVML_ERROR_NO_PERMISSION)
    assert device.describe().power_limit_w is None
    assert device.describe().uuid == "GPU-h100"
    state = device.read_state()
    assert state.temperature_c is None
    assert state.clock_mhz is not None


def test_without_nvml_timing_works_and_nvml_fields_are_none() -> None:
    props = FakeDeviceProperties(name="NVIDIA A100-SXM4-40GB", uuid="abcd-ef01", major=8)
    device, clock, _, _ = make_device(
        props=[props], nvml=FakeNvml(library_present=False, clock=FakeClock())
    )
    description = device.describe()
    assert description.name == "NVIDIA A100-SXM4-40GB"
    assert description.compute_capability == "8.0"
    assert description.uuid == "GPU-abcd-ef01"  # from torch when NVML is missing
    assert description.driver_version is None
    assert description.power_limit_w is None
    state = device.read_state()
    assert state.clock_mhz is None and state.throttled is None
    assert device.nvml_reason is not None and "nvmlInit" in device.nvml_reason
    times = device.time_samples_s(lambda i: clock.advance(0.001), calls_per_sample=4, samples=2)
    assert times == pytest.approx([0.001, 0.001])


# ----- timing --------------------------------------------------------------------------


def test_time_samples_with_cuda_events() -> None:
    device, clock, cuda, _ = make_device()
    durations_s = {i: 0.001 * (1 + i // 3) for i in range(10, 19)}  # samples of 3 calls
    seen: list[int] = []

    def kernel(i: int) -> None:
        seen.append(i)
        clock.advance(durations_s[i])

    times = device.time_samples_s(kernel, calls_per_sample=3, samples=3, first_call=10)
    assert seen == list(range(10, 19))  # call indices continue across samples
    # calls 10, 11 take 4 ms, 12-14 5 ms, 15-17 6 ms, 18 7 ms
    assert times == pytest.approx([(4 + 4 + 5) / 3e3, (5 + 5 + 6) / 3e3, (6 + 6 + 7) / 3e3])
    assert cuda.sync_count == 1  # one synchronisation, after all samples
    assert cuda.recorded_events == 6


def test_time_samples_runs_on_its_own_device() -> None:
    props = [H100, H100]
    device, clock, cuda, _ = make_device(props=props, gpus=[FakeGpu(), FakeGpu()], index=1)
    current: list[int] = []

    def kernel(i: int) -> None:
        current.append(cuda.current_device())
        clock.advance(0.002)

    assert device.time_samples_s(kernel, calls_per_sample=2, samples=1) == pytest.approx([0.002])
    assert current == [1, 1]
    assert cuda.current_device() == 0  # restored afterwards


def test_time_samples_rejects_bad_counts() -> None:
    device, *_ = make_device()
    with pytest.raises(InvalidInputError):
        device.time_samples_s(lambda i: None, calls_per_sample=0, samples=1)
    assert device.time_samples_s(lambda i: None, calls_per_sample=1, samples=0) == []


def test_run_untimed_synchronises() -> None:
    device, clock, cuda, _ = make_device()
    calls: list[int] = []
    device.run_untimed(calls.append, calls=4, first_call=2)
    assert calls == [2, 3, 4, 5]
    assert cuda.sync_count == 1


def test_fake_event_needs_synchronise_before_elapsed_time() -> None:
    clock = FakeClock()
    cuda = FakeCuda(clock, [H100])
    start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
    start.record()
    clock.advance(0.003)
    end.record()
    with pytest.raises(RuntimeError, match="not ready"):
        start.elapsed_time(end)
    cuda.synchronize()
    assert start.elapsed_time(end) == pytest.approx(3.0)
