from __future__ import annotations

import time

import numpy as np
import pytest

from perfscope.devices.base import Device, DeviceDescription, DeviceState
from perfscope.devices.cpu import CpuDevice
from perfscope.errors import InvalidInputError
from perfscope.timing import TimingPolicy, TimingResult, measure, median_ci


class ScriptedDevice(Device):
    """A device whose samples come from a generator: exact control over the statistics."""

    kind = "cpu"
    timing_method = "scripted"

    def __init__(self, draw, sample_cost_s=0.0):
        self.draw = draw
        self.sample_cost_s = sample_cost_s
        self.calls = 0

    torch_device = "cpu"

    def describe(self):
        return DeviceDescription(kind="cpu", name="scripted")

    def read_state(self):
        return DeviceState()

    def synchronize(self):
        pass

    def time_samples_s(self, kernel, calls_per_sample, samples, first_call=0):
        self.calls += calls_per_sample * samples
        if self.sample_cost_s:
            time.sleep(self.sample_cost_s * samples)
        return [float(self.draw()) for _ in range(samples)]


def test_statistics_come_from_the_raw_samples():
    samples = [float(x) for x in range(1, 101)]
    r = TimingResult(samples_s=samples, calls_per_sample=1, warmup_s=0, timed_s=1, stopped_by="ci",
                     target_ci_rel=0.01, method="x")
    assert r.median_s == 50.5
    assert r.quantile_s(0.1) == pytest.approx(10.9)
    assert r.iqr_s == pytest.approx(49.5)
    low, high = r.median_ci_s
    assert low < 50.5 < high and (low, high) == (40.0, 61.0)  # ranks 40 and 61 of 100


def test_median_ci_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small = np.sort(rng.normal(1, 0.1, 20))
    large = np.sort(rng.normal(1, 0.1, 2000))
    assert np.diff(median_ci(large)) < np.diff(median_ci(small)) / 5


def test_stops_once_the_median_is_precise():
    device = ScriptedDevice(lambda: 1e-3)
    r = measure(device, lambda i: None, TimingPolicy(warmup_s=0, min_time_s=0, budget_s=1, min_samples=10))
    assert r.stopped_by == "ci" and not r.noisy
    assert r.median_s == 1e-3 and len(r.samples_s) >= 10


def test_noisy_samples_run_to_the_budget_and_are_flagged():
    rng = np.random.default_rng(1)
    device = ScriptedDevice(lambda: rng.lognormal(0, 1.5) * 1e-3, sample_cost_s=1e-3)
    r = measure(device, lambda i: None,
                TimingPolicy(warmup_s=0, min_time_s=0, budget_s=0.05, target_ci_rel=0.001, min_samples=10))
    assert r.stopped_by == "budget" and r.noisy
    assert r.ci_rel > 0.001


def test_warm_up_is_by_time_and_batches_reach_the_sample_length():
    device = CpuDevice()
    calls = []

    def kernel(i):
        calls.append(i)
        end = time.perf_counter() + 1e-4  # ~0.1 ms of busy work
        while time.perf_counter() < end:
            pass

    r = measure(device, kernel, TimingPolicy(warmup_s=0.05, min_time_s=0.02, budget_s=0.1, sample_s=1e-3))
    assert r.warmup_s >= 0.05
    assert 2 <= r.calls_per_sample <= 12  # ~1 ms samples of ~0.1 ms calls (loose: shared 2-core CI)
    assert calls == list(range(len(calls)))  # call indices continue across warm-up and samples
    assert r.calls_made == len(calls)
    assert r.median_s == pytest.approx(1e-4, rel=0.5)


@pytest.mark.parametrize("bad", [dict(warmup_s=-1), dict(budget_s=0.1, min_time_s=1), dict(min_samples=1)])
def test_bad_policies_are_user_errors(bad):
    with pytest.raises(InvalidInputError):
        TimingPolicy(**bad)


def test_a_kernel_slower_than_the_budget_is_not_sampled_past_it():
    device = CpuDevice()
    r = measure(device, lambda i: time.sleep(0.03),
                TimingPolicy(warmup_s=0, min_time_s=0, budget_s=0.1, min_samples=10, target_ci_rel=0.0001))
    assert r.stopped_by == "budget" and r.noisy
    assert 2 <= len(r.samples_s) <= 5  # ~0.1 s / 0.03 s, not min_samples' 10
    assert r.timed_s < 0.2
