"""TDP estimate arithmetic, the null meter, and select_meter's choices on a CPU device."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfscope.devices.base import Device, DeviceDescription, DeviceState
from perfscope.errors import InvalidInputError, MeterUnavailableError
from perfscope.meters import METER_CHOICES, select_meter
from perfscope.meters.null import NullMeter
from perfscope.meters.rapl import RaplMeter
from perfscope.meters.tdp import ConstantUtilisation, ProcessCpuUtilisation, TdpEstimateMeter
from perfscope.testing.clock import FakeClock
from perfscope.testing.fake_nvml import FakeGpu, FakeNvml
from perfscope.testing.fake_powercap import FakePowercap

try:
    from perfscope.devices.cpu import CpuDevice
except ImportError:  # pragma: no cover - only while the CPU device is being written

    class CpuDevice(Device):  # type: ignore[no-redef]
        kind = "cpu"
        timing_method = "test"

        @property
        def torch_device(self) -> str:
            return "cpu"

        def describe(self) -> DeviceDescription:
            return DeviceDescription(kind="cpu", name="test cpu")

        def read_state(self) -> DeviceState:
            return DeviceState()

        def synchronize(self) -> None:
            return None

        def time_samples_s(self, kernel, calls_per_sample, samples, first_call=0):
            raise NotImplementedError


class ScriptedUtilisation:
    """Returns the utilisations a test lists, one per window."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.begun = 0

    def begin(self) -> object:
        self.begun += 1
        return self.begun

    def end(self, token: object) -> float:
        return self.values.pop(0)


def test_tdp_estimate_is_tdp_times_utilisation_times_duration() -> None:
    clock = FakeClock()
    meter = TdpEstimateMeter(100.0, utilisation=ScriptedUtilisation(0.25), clock=clock)
    assert (meter.method, meter.is_estimate) == ("estimate-tdp", True)
    token = meter.begin()
    clock.advance(2.0)
    reading = meter.end(token)
    assert reading.energy_j == pytest.approx(50.0)
    assert reading.duration_s == pytest.approx(2.0)
    assert reading.power_avg_w == pytest.approx(25.0)


def test_tdp_utilisation_is_clipped() -> None:
    clock = FakeClock()
    meter = TdpEstimateMeter(10.0, utilisation=ScriptedUtilisation(1.7, -0.2), clock=clock)
    token = meter.begin()
    clock.advance(1.0)
    assert meter.end(token).energy_j == pytest.approx(10.0)
    token = meter.begin()
    clock.advance(1.0)
    assert meter.end(token).energy_j == 0.0


def test_process_cpu_utilisation_divides_by_wall_time_and_cpus() -> None:
    clock = FakeClock()
    cpu = {"s": 10.0}
    source = ProcessCpuUtilisation(cpu_time_s=lambda: cpu["s"], clock=clock, cpu_count=4)
    token = source.begin()
    clock.advance(2.0)
    cpu["s"] += 3.0  # 3 CPU-seconds over 2 s on 4 CPUs
    assert source.end(token) == pytest.approx(0.375)
    token = source.begin()
    clock.advance(1.0)
    cpu["s"] += 40.0
    assert source.end(token) == 1.0


def test_default_utilisation_sees_this_process_busy() -> None:
    clock = FakeClock()
    cpu = {"s": 0.0}
    meter = TdpEstimateMeter(
        80.0, utilisation=ProcessCpuUtilisation(lambda: cpu["s"], clock, cpu_count=2), clock=clock
    )
    token = meter.begin()
    clock.advance(1.0)
    cpu["s"] += 1.0  # one of two CPUs busy
    assert meter.end(token).energy_j == pytest.approx(40.0)


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), float("inf")])
def test_tdp_must_be_positive(bad: float) -> None:
    with pytest.raises(InvalidInputError):
        TdpEstimateMeter(bad)


def test_constant_utilisation_is_bounded() -> None:
    assert ConstantUtilisation(1.0).end(None) == 1.0
    with pytest.raises(InvalidInputError):
        ConstantUtilisation(1.5)


def test_null_meter_raises_its_reason() -> None:
    meter = NullMeter("no counter on this box")
    assert meter.method == "none"
    assert meter.reason == "no counter on this box"
    with pytest.raises(MeterUnavailableError, match="no counter on this box"):
        meter.begin()
    with pytest.raises(MeterUnavailableError, match="no counter on this box"):
        meter.end(None)


# select_meter on a CPU device


def test_auto_on_cpu_picks_rapl_when_packages_exist(tmp_path: Path) -> None:
    FakePowercap(tmp_path).add_package(0)
    meter = select_meter(CpuDevice(), "auto", powercap_root=tmp_path)
    assert isinstance(meter, RaplMeter)
    assert meter.method == "rapl"


def test_auto_on_cpu_without_rapl_is_null_with_hint(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    root.mkdir()
    meter = select_meter(CpuDevice(), powercap_root=root)
    assert isinstance(meter, NullMeter)
    assert meter.reason.startswith("no energy meter: ")
    assert str(root) in meter.reason
    assert "TDP in watts (tdp_w)" in meter.reason


def test_auto_on_cpu_without_rapl_uses_tdp_when_given(tmp_path: Path) -> None:
    meter = select_meter(CpuDevice(), tdp_w=65.0, powercap_root=tmp_path / "none")
    assert isinstance(meter, TdpEstimateMeter)
    assert meter.tdp_w == 65.0
    assert meter.is_estimate


def test_auto_prefers_rapl_over_tdp(tmp_path: Path) -> None:
    FakePowercap(tmp_path).add_package(0)
    assert isinstance(select_meter(CpuDevice(), tdp_w=65.0, powercap_root=tmp_path), RaplMeter)


def test_explicit_choices_on_cpu(tmp_path: Path) -> None:
    device = CpuDevice()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MeterUnavailableError, match=str(empty)):
        select_meter(device, "rapl", powercap_root=empty)
    with pytest.raises(MeterUnavailableError, match="nvml-counter"):
        select_meter(device, "nvml-counter", powercap_root=empty)
    with pytest.raises(MeterUnavailableError):
        select_meter(device, "nvml-sampled", powercap_root=empty)
    with pytest.raises(InvalidInputError, match="TDP in watts"):
        select_meter(device, "estimate-tdp", powercap_root=empty)
    with pytest.raises(InvalidInputError, match="choose one of"):
        select_meter(device, "joulemeter", powercap_root=empty)
    assert isinstance(select_meter(device, "none"), NullMeter)
    tdp = select_meter(device, "estimate-tdp", tdp_w=45, powercap_root=empty)
    assert isinstance(tdp, TdpEstimateMeter)


def test_explicit_estimate_even_when_rapl_exists(tmp_path: Path) -> None:
    FakePowercap(tmp_path).add_package(0)
    meter = select_meter(CpuDevice(), "estimate-tdp", tdp_w=45, powercap_root=tmp_path)
    assert isinstance(meter, TdpEstimateMeter)


def test_meter_choices_are_the_documented_ones() -> None:
    assert set(METER_CHOICES) == {
        "auto", "nvml-counter", "nvml-sampled", "rapl", "estimate-tdp", "none"
    }


# select_meter on a CUDA device (NVML through the fake)


class FakeCudaKindDevice(Device):
    """Just enough of a CUDA device for select_meter: its kind and description."""

    kind = "cuda"
    timing_method = "test"

    def __init__(self, index: int = 0, power_limit_w: float | None = 300.0) -> None:
        self._description = DeviceDescription(kind="cuda", name="fake gpu", index=index,
                                              power_limit_w=power_limit_w)

    @property
    def torch_device(self) -> str:
        return f"cuda:{self._description.index}"

    def describe(self) -> DeviceDescription:
        return self._description

    def read_state(self) -> DeviceState:
        return DeviceState()

    def synchronize(self) -> None:
        return None

    def time_samples_s(self, kernel, calls_per_sample, samples, first_call=0):
        raise NotImplementedError


def test_auto_on_cuda_prefers_the_energy_counter_of_the_device_index() -> None:
    from perfscope.meters.nvml_counter import NvmlCounterMeter

    nvml = FakeNvml([FakeGpu(), FakeGpu()])
    meter = select_meter(FakeCudaKindDevice(index=1), nvml=nvml)
    assert isinstance(meter, NvmlCounterMeter)
    assert meter.handle_index == 1


def test_auto_on_cuda_falls_back_to_sampled_power() -> None:
    from perfscope.meters.nvml_sampled import NvmlSampledMeter

    gpu = FakeGpu()
    gpu.energy_counter_supported = False
    meter = select_meter(FakeCudaKindDevice(), nvml=FakeNvml([gpu]))
    assert isinstance(meter, NvmlSampledMeter)
    meter.close()
    with pytest.raises(MeterUnavailableError, match="nvml-counter"):
        select_meter(FakeCudaKindDevice(), "nvml-counter", nvml=FakeNvml([gpu]))


def test_auto_on_cuda_without_nvml_is_null_with_reason() -> None:
    meter = select_meter(FakeCudaKindDevice(), nvml=FakeNvml(library_present=False))
    assert isinstance(meter, NullMeter)
    assert meter.reason.startswith("no energy meter: ")
    with pytest.raises(MeterUnavailableError):
        select_meter(FakeCudaKindDevice(), "nvml-counter", nvml=FakeNvml(library_present=False))


def test_cpu_meters_are_refused_for_a_gpu_and_tdp_uses_the_power_limit() -> None:
    with pytest.raises(MeterUnavailableError, match="rapl"):
        select_meter(FakeCudaKindDevice(), "rapl")
    meter = select_meter(FakeCudaKindDevice(power_limit_w=300.0), "estimate-tdp")
    assert isinstance(meter, TdpEstimateMeter)
    assert meter.tdp_w == 300.0
    with pytest.raises(InvalidInputError, match="TDP in watts"):
        select_meter(FakeCudaKindDevice(power_limit_w=None), "estimate-tdp")
