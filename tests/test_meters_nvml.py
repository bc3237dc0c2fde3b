"""NVML energy meters: the counter meter and the sampled-power meter, through FakeNvml."""

from __future__ import annotations

import threading
import time

import pytest

from perfscope.errors import (
    MeasurementError,
    NvmlNotSupportedError,
    NvmlPermissionError,
    NvmlUnavailableError,
)
from perfscope.meters.base import EnergyMeter
from perfscope.meters.nvml_counter import NvmlCounterMeter
from perfscope.meters.nvml_sampled import (
    POWER_SOURCE_FIELD,
    POWER_SOURCE_USAGE,
    NvmlSampledMeter,
    integrate_power_j,
)
from perfscope.testing import FakeClock, FakeGpu, FakeNvml, fake_nvml

# ----- counter meter -------------------------------------------------------------------


def test_counter_meter_measures_a_window_within_one_update() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_w=250.0)], clock=clock)
    meter = NvmlCounterMeter(nvml=nvml, clock=clock)
    assert isinstance(meter, EnergyMeter)
    assert meter.method == "nvml-counter" and not meter.is_estimate
    clock.advance(0.05)  # start between two counter updates
    token = meter.begin()
    clock.advance(2.0)
    reading = meter.end(token)
    assert reading.duration_s == pytest.approx(2.0)
    # 250 W for 2 s = 500 J, give or take one 100 ms update (25 J).
    assert reading.energy_j == pytest.approx(500.0, abs=25.0 + 1e-6)
    assert reading.power_avg_w == pytest.approx(250.0, rel=0.05 + 1e-6)


def test_counter_meter_reads_the_requested_gpu() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_w=100.0), FakeGpu(power_w=400.0)], clock=clock)
    meter = NvmlCounterMeter(handle_index=1, nvml=nvml, clock=clock)
    token = meter.begin()
    clock.advance(3.0)
    assert meter.end(token).energy_j == pytest.approx(1200.0, abs=40.0 + 1e-6)


def test_counter_meter_min_window_follows_update_period() -> None:
    nvml = FakeNvml(clock=FakeClock())
    assert NvmlCounterMeter(nvml=nvml).min_window_s == pytest.approx(1.0)
    assert NvmlCounterMeter(nvml=nvml, counter_update_s=0.02).min_window_s == pytest.approx(0.2)


def test_counter_meter_rejects_a_window_shorter_than_ten_updates() -> None:
    clock = FakeClock()
    meter = NvmlCounterMeter(nvml=FakeNvml(clock=clock), clock=clock)
    token = meter.begin()
    clock.advance(0.5)
    with pytest.raises(MeasurementError) as info:
        meter.end(token)
    message = str(info.value)
    assert "500 ms" in message
    assert "fewer than 10 counter updates" in message
    assert "~100 ms" in message
    assert "lengthen the energy window" in message


def test_counter_meter_rejects_a_counter_that_did_not_move() -> None:
    clock = FakeClock()
    # The hardware updates every 5 s while the meter assumes 100 ms.
    nvml = FakeNvml([FakeGpu(counter_update_s=5.0)], clock=clock)
    meter = NvmlCounterMeter(nvml=nvml, clock=clock)
    clock.advance(0.5)
    token = meter.begin()
    clock.advance(2.0)
    with pytest.raises(MeasurementError, match="did not increase"):
        meter.end(token)


def test_counter_meter_checks_support_once_in_the_constructor() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock=clock)
    meter = NvmlCounterMeter(nvml=nvml, clock=clock)
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    token = meter.begin()
    clock.advance(1.5)
    meter.end(token)
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == 3
    assert nvml.init_count == 1


def test_counter_meter_unsupported_counter_raises_not_supported() -> None:
    nvml = FakeNvml([FakeGpu(energy_counter_supported=False)], clock=FakeClock())
    with pytest.raises(NvmlNotSupportedError) as info:
        NvmlCounterMeter(nvml=nvml)
    assert info.value.nvml_code == fake_nvml.NVML_ERROR_NOT_SUPPORTED
    assert "nvmlDeviceGetTotalEnergyConsumption" in str(info.value)


def test_counter_meter_without_nvml_library_is_unavailable() -> None:
    with pytest.raises(NvmlUnavailableError):
        NvmlCounterMeter(nvml=FakeNvml(library_present=False))


def test_counter_meter_permission_denied() -> None:
    nvml = FakeNvml(clock=FakeClock())
    nvml.fail("nvmlDeviceGetTotalEnergyConsumption", fake_nvml.NVML_ERROR_NO_PERMISSION)
    with pytest.raises(NvmlPermissionError):
        NvmlCounterMeter(nvml=nvml)


def test_counter_meter_rejects_a_foreign_token() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock=clock)
    first = NvmlCounterMeter(nvml=nvml, clock=clock)
    second = NvmlCounterMeter(nvml=nvml, clock=clock)
    token = first.begin()
    clock.advance(2.0)
    with pytest.raises(TypeError):
        second.end(token)
    assert first.end(token).energy_j > 0


# ----- integrate_power_j ---------------------------------------------------------------


def test_integrate_constant_power() -> None:
    times = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
    assert integrate_power_j(times, [300.0] * len(times)) == pytest.approx(600.0)


def test_integrate_ramp_power_exactly() -> None:
    # P(t) = 100 + 50 t over [0, 4] s: 400 + 400 = 800 J; trapezoids are exact for lines.
    times = [0.0, 0.3, 1.0, 2.2, 4.0]
    powers = [100.0 + 50.0 * t for t in times]
    assert integrate_power_j(times, powers) == pytest.approx(800.0)


def test_integrate_uneven_step_uses_trapezoids() -> None:
    # 0 W at t=0, 200 W at t=1, 200 W at t=3: 100 J + 400 J.
    assert integrate_power_j([0.0, 1.0, 3.0], [0.0, 200.0, 200.0]) == pytest.approx(500.0)


def test_integrate_needs_two_samples() -> None:
    with pytest.raises(MeasurementError, match="at least 2"):
        integrate_power_j([0.0], [100.0])
    with pytest.raises(MeasurementError):
        integrate_power_j([], [])


def test_integrate_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        integrate_power_j([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="backwards"):
        integrate_power_j([0.0, 1.0, 0.5], [1.0, 1.0, 1.0])


# ----- sampled meter -------------------------------------------------------------------


def test_sampled_meter_prefers_the_instant_power_field() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_w=150.0)], clock=clock)
    meter = NvmlSampledMeter(nvml=nvml, clock=clock, interval_s=0.01)
    assert meter.method == "nvml-sampled" and not meter.is_estimate
    assert meter.power_source == POWER_SOURCE_FIELD
    assert meter.min_window_s == pytest.approx(0.1)
    token = meter.begin()
    clock.advance(1.0)
    reading = meter.end(token)
    assert reading.energy_j == pytest.approx(150.0)
    assert reading.duration_s == pytest.approx(1.0)
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 0
    assert meter.last_sample_count >= 2


def test_sampled_meter_falls_back_to_power_usage() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_w=80.0, field_values_supported=False)], clock=clock)
    meter = NvmlSampledMeter(nvml=nvml, clock=clock)
    assert meter.power_source == POWER_SOURCE_USAGE
    token = meter.begin()
    clock.advance(0.5)
    assert meter.end(token).energy_j == pytest.approx(40.0)
    assert nvml.calls["nvmlDeviceGetPowerUsage"] >= 2


def test_sampled_meter_falls_back_when_field_values_call_is_unsupported() -> None:
    nvml = FakeNvml(clock=FakeClock())
    nvml.fail("nvmlDeviceGetFieldValues", fake_nvml.NVML_ERROR_NOT_SUPPORTED)
    assert NvmlSampledMeter(nvml=nvml).power_source == POWER_SOURCE_USAGE


def test_sampled_meter_min_window_grows_with_interval() -> None:
    nvml = FakeNvml(clock=FakeClock())
    assert NvmlSampledMeter(nvml=nvml, interval_s=0.05).min_window_s == pytest.approx(0.5)


def test_sampled_meter_rejects_short_window() -> None:
    clock = FakeClock()
    meter = NvmlSampledMeter(nvml=FakeNvml(clock=clock), clock=clock)
    token = meter.begin()
    clock.advance(0.04)
    with pytest.raises(MeasurementError, match="lengthen the energy window"):
        meter.end(token)


def test_sampled_meter_reports_sampling_failure() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock=clock)
    meter = NvmlSampledMeter(nvml=nvml, clock=clock)
    token = meter.begin()
    clock.advance(1.0)
    nvml.fail("nvmlDeviceGetFieldValues", fake_nvml.NVML_ERROR_GPU_IS_LOST)
    with pytest.raises(MeasurementError, match="power sampling"):
        meter.end(token)


def test_sampled_meter_threaded_run_with_real_clock() -> None:
    nvml = FakeNvml([FakeGpu(power_w=200.0)])  # real time.monotonic clock
    meter = NvmlSampledMeter(nvml=nvml, interval_s=0.01)
    threads_before = threading.active_count()
    token = meter.begin()
    assert threading.active_count() == threads_before + 1
    time.sleep(0.3)
    reading = meter.end(token)
    assert threading.active_count() == threads_before  # the sampler stopped
    assert reading.duration_s == pytest.approx(0.3, rel=0.5)
    assert reading.energy_j == pytest.approx(200.0 * reading.duration_s, rel=0.10)
    assert reading.energy_j == pytest.approx(60.0, rel=0.5)
    assert meter.last_sample_count >= 5  # the background thread did sample


def test_sampled_meter_close_stops_open_windows() -> None:
    meter = NvmlSampledMeter(nvml=FakeNvml(), interval_s=0.005)
    threads_before = threading.active_count()
    token = meter.begin()
    assert threading.active_count() == threads_before + 1
    meter.close()
    assert threading.active_count() == threads_before
    del token
