"""The energy window protocol: idle power, back-to-back calls, gross/net per call, retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfscope.devices.base import Device, DeviceDescription, DeviceState
from perfscope.errors import InvalidInputError, MeasurementError
from perfscope.meters.base import EnergyMeter, EnergyReading
from perfscope.meters.null import NullMeter
from perfscope.meters.rapl import RaplMeter
from perfscope.meters.window import EnergyResult, measure_energy
from perfscope.testing.clock import FakeClock
from perfscope.testing.fake_powercap import FakePowercap


class RecordingDevice(Device):
    """A CPU-like device that records synchronisations and run_untimed calls."""

    kind = "cpu"
    timing_method = "test"

    def __init__(self) -> None:
        self.events: list[tuple] = []

    @property
    def torch_device(self) -> str:
        return "cpu"

    def describe(self) -> DeviceDescription:
        return DeviceDescription(kind="cpu", name="recording cpu")

    def read_state(self) -> DeviceState:
        return DeviceState()

    def synchronize(self) -> None:
        self.events.append(("sync",))

    def time_samples_s(self, kernel, calls_per_sample, samples, first_call=0):
        raise NotImplementedError

    def run_untimed(self, kernel, calls, first_call=0):
        self.events.append(("run", calls, first_call))
        super().run_untimed(kernel, calls, first_call)


class Machine:
    """Two fake packages, a clock, an idle draw while sleeping and a cost per call."""

    def __init__(self, root: Path, idle_w: float, call_j: float, call_s: float) -> None:
        self.fake = FakePowercap(root)
        self.fake.add_package(0)
        self.fake.add_package(1)
        self.clock = FakeClock()
        self.idle_w = idle_w
        self.call_j = call_j
        self.call_s = call_s
        self.calls: list[int] = []
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)
        half_uj = self.idle_w * seconds * 1e6 / 2
        self.fake.add_energy(0, half_uj)
        self.fake.add_energy(1, half_uj)

    def kernel(self, i: int) -> None:
        self.calls.append(i)
        self.clock.advance(self.call_s)
        self.fake.add_energy(0, self.call_j * 0.75 * 1e6)
        self.fake.add_energy(1, self.call_j * 0.25 * 1e6)


def test_gross_and_net_per_call_are_exact(tmp_path: Path) -> None:
    m = Machine(tmp_path, idle_w=4.0, call_j=0.1, call_s=0.005)  # 20 W while running
    device = RecordingDevice()
    meter = RaplMeter(tmp_path, clock=m.clock)

    result = measure_energy(device, m.kernel, meter, per_call_s=0.005, first_call=7,
                            window_s=0.1, idle_s=0.2, sleep=m.sleep, clock=m.clock)

    assert result.energy_method == "rapl"
    assert result.energy_is_estimate is False
    assert result.energy_reason is None
    assert result.energy_calls == 20
    assert result.energy_window_s == pytest.approx(0.1)
    assert result.power_idle_w == pytest.approx(4.0)
    assert result.power_avg_w == pytest.approx(20.0)
    assert result.energy_gross_j == pytest.approx(0.1)
    assert result.energy_net_j == pytest.approx(0.1 - 4.0 * 0.005)
    assert m.slept == [0.2]
    assert m.calls == list(range(7, 27))
    # idle measured first, with the device synchronised, then one window of calls
    assert device.events[0] == ("sync",)
    assert ("run", 20, 7) in device.events
    assert set(result.as_row()) == {f.name for f in EnergyResult.__dataclass_fields__.values()}


def test_default_windows_follow_the_meter(tmp_path: Path) -> None:
    m = Machine(tmp_path, idle_w=0.0, call_j=0.01, call_s=0.05)
    meter = RaplMeter(tmp_path, clock=m.clock)
    result = measure_energy(RecordingDevice(), m.kernel, meter, per_call_s=0.05,
                            sleep=m.sleep, clock=m.clock)
    assert m.slept == [0.25]  # max(0.05, 0.25)
    assert result.energy_calls == 5  # ceil(0.25 / 0.05)
    assert result.energy_gross_j == pytest.approx(0.01)


def test_short_window_doubles_calls_until_long_enough(tmp_path: Path) -> None:
    # Predicted 40 ms per call, really 5 ms: 2 calls last 0.01 s < 0.05 s minimum.
    m = Machine(tmp_path, idle_w=0.0, call_j=0.002, call_s=0.005)
    device = RecordingDevice()
    meter = RaplMeter(tmp_path, clock=m.clock)
    result = measure_energy(device, m.kernel, meter, per_call_s=0.04, window_s=0.08,
                            idle_s=0.1, sleep=m.sleep, clock=m.clock)
    runs = [e[1] for e in device.events if e[0] == "run"]
    assert runs == [2, 4, 8, 16]
    assert result.energy_calls == 16
    assert result.energy_window_s == pytest.approx(0.08)
    assert result.energy_gross_j == pytest.approx(0.002)
    assert result.energy_reason is None
    assert len(set(m.calls)) == len(m.calls)  # call indices keep moving on


def test_window_still_short_after_three_retries_gives_a_reason(tmp_path: Path) -> None:
    m = Machine(tmp_path, idle_w=0.0, call_j=0.002, call_s=0.001)
    meter = RaplMeter(tmp_path, clock=m.clock)
    result = measure_energy(RecordingDevice(), m.kernel, meter, per_call_s=0.04,
                            window_s=0.08, idle_s=0.1, sleep=m.sleep, clock=m.clock)
    assert result.energy_gross_j is None
    assert result.energy_net_j is None
    assert result.energy_method == "rapl"
    assert "shorter than" in result.energy_reason
    assert len(m.calls) == 2 + 4 + 8 + 16


class FailingMeter(EnergyMeter):
    """Idle windows work; kernel windows raise MeasurementError."""

    method = "nvml-counter"
    min_window_s = 0.0

    def __init__(self) -> None:
        self.windows = 0

    def begin(self) -> object:
        self.windows += 1
        return self.windows

    def end(self, token: object) -> EnergyReading:
        if token == 1:
            return EnergyReading(energy_j=1.0, duration_s=0.1)
        raise MeasurementError("energy counter did not update during the window")


def test_measurement_error_becomes_the_reason() -> None:
    calls: list[int] = []
    result = measure_energy(RecordingDevice(), calls.append, FailingMeter(), per_call_s=0.01,
                            window_s=0.05, idle_s=0.01, sleep=lambda s: None)
    assert result.energy_method == "nvml-counter"
    assert result.energy_reason == "energy counter did not update during the window"
    assert result.energy_gross_j is None
    assert result.power_avg_w is None
    assert result.power_idle_w == pytest.approx(10.0)
    assert calls == [0, 1, 2, 3, 4]


def test_null_meter_gives_none_and_its_reason() -> None:
    calls: list[int] = []
    result = measure_energy(RecordingDevice(), calls.append, NullMeter("no RAPL here"),
                            per_call_s=0.01, sleep=lambda s: pytest.fail("must not sleep"))
    assert result == EnergyResult(energy_method="none", energy_reason="no RAPL here")
    assert calls == []


def test_kernel_error_closes_the_window_and_propagates(tmp_path: Path) -> None:
    m = Machine(tmp_path, idle_w=1.0, call_j=0.01, call_s=0.01)
    meter = RaplMeter(tmp_path, clock=m.clock)

    def broken(i: int) -> None:
        raise RuntimeError("kernel crashed")

    with pytest.raises(RuntimeError, match="kernel crashed"):
        measure_energy(RecordingDevice(), broken, meter, per_call_s=0.01, window_s=0.1,
                       idle_s=0.1, sleep=m.sleep, clock=m.clock)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_per_call_time_must_be_positive(tmp_path: Path, bad: float) -> None:
    FakePowercap(tmp_path).add_package(0)
    with pytest.raises(InvalidInputError):
        measure_energy(RecordingDevice(), lambda i: None, RaplMeter(tmp_path), per_call_s=bad,
                       sleep=lambda s: None)


def test_counter_meter_rejecting_a_short_window_is_retried_longer() -> None:
    from perfscope.meters.nvml_counter import NvmlCounterMeter
    from perfscope.testing.fake_nvml import FakeGpu, FakeNvml

    clock = FakeClock()
    gpu = FakeGpu()
    gpu.power_w = 250.0
    meter = NvmlCounterMeter(nvml=FakeNvml([gpu], clock=clock), clock=clock)
    assert meter.min_window_s == pytest.approx(1.0)
    device = RecordingDevice()

    # Predicted 0.2 s per call, really 0.06 s: the default window (1.2 x the meter's
    # 1 s minimum) plans 6 calls = 0.36 s, which the meter rejects; doubling reaches
    # 24 calls = 1.44 s.
    result = measure_energy(device, lambda i: clock.advance(0.06), meter, per_call_s=0.2,
                            sleep=clock.advance, clock=clock)
    assert [e[1] for e in device.events if e[0] == "run"] == [6, 12, 24]
    assert result.energy_reason is None
    assert result.energy_calls == 24
    assert result.power_idle_w == pytest.approx(250.0, rel=0.1)
    assert result.energy_gross_j == pytest.approx(250.0 * 0.06, rel=0.1)
    assert result.energy_net_j == pytest.approx(0.0, abs=0.1 * 250.0 * 0.06)
