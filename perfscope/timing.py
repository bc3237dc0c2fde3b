"""The timing harness: warm up by time, then sample until the median is precise enough.

What is measured (a kernel on a device) is kept apart from the measurement (a
``TimingResult`` of raw samples and the statistics derived from them), in the
manner of ``torch.utils.benchmark``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from statistics import fmean

import numpy as np

from perfscope.devices.base import Device, Kernel
from perfscope.errors import InvalidInputError
from perfscope.hostload import ForeignLoad

_Z95 = 1.959964


@dataclass(frozen=True)
class TimingPolicy:
    """How long and how precisely to time one configuration."""

    warmup_s: float = 0.1  # warm up by time: compilation, autotuning, clocks settle
    min_time_s: float = 0.2  # at least this long in timed samples
    budget_s: float = 2.0  # at most this long in timed samples
    target_ci_rel: float = 0.01  # stop when the median's 95% interval is within +-1%
    min_samples: int = 10
    max_samples: int = 100_000
    sample_s: float = 1e-3  # batch calls so one sample lasts this long (timer resolution)
    max_foreign_share: float = 0.05  # others using more of the CPUs than this: noisy

    def __post_init__(self) -> None:
        for name in ("warmup_s", "min_time_s", "budget_s", "sample_s", "target_ci_rel"):
            if not getattr(self, name) >= 0:
                raise InvalidInputError(f"timing policy: {name} must be >= 0, got {getattr(self, name)}")
        if self.budget_s < self.min_time_s:
            raise InvalidInputError(
                f"timing policy: budget_s ({self.budget_s}) must be >= min_time_s ({self.min_time_s})")
        if self.min_samples < 3:
            raise InvalidInputError("timing policy: min_samples must be >= 3")


@dataclass(frozen=True)
class TimingResult:
    """Raw samples (seconds per call) and how they were taken."""

    samples_s: list[float]
    calls_per_sample: int
    warmup_s: float
    timed_s: float  # wall time spent inside timed samples
    stopped_by: str  # "ci", "budget" or "max_samples"
    target_ci_rel: float
    method: str
    calls_made: int = 0  # every kernel call, warm-up included (next free call index)
    foreign_cpu_share: float | None = None  # other processes' share of the CPUs while timing
    max_foreign_share: float = 0.05
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sorted", np.sort(np.asarray(self.samples_s, dtype=float)))

    @property
    def median_s(self) -> float:
        """Median of the samples (s)."""
        return float(np.median(self._sorted))

    @property
    def mean_s(self) -> float:
        """Mean of the samples (s)."""
        return fmean(self.samples_s)

    def quantile_s(self, q: float) -> float:
        """Quantile ``q`` of the samples (s)."""
        return float(np.quantile(self._sorted, q))

    @property
    def iqr_s(self) -> float:
        """Interquartile range of the samples (s)."""
        return self.quantile_s(0.75) - self.quantile_s(0.25)

    @property
    def median_ci_s(self) -> tuple[float, float]:
        """Distribution-free ~95% interval of the median from order statistics."""
        return median_ci(self._sorted)

    @property
    def ci_rel(self) -> float:
        """Half-width of the median's confidence interval, relative to the median."""
        low, high = self.median_ci_s
        return (high - low) / 2 / self.median_s if self.median_s > 0 else math.inf

    @property
    def noisy(self) -> bool:
        """True when the median's interval did not reach the target precision, or other
        processes took more than ``max_foreign_share`` of the CPUs while it was timed."""
        contended = self.foreign_cpu_share is not None and self.foreign_cpu_share > self.max_foreign_share
        return self.ci_rel > self.target_ci_rel or contended


def median_ci(sorted_samples: np.ndarray) -> tuple[float, float]:
    """~95% confidence interval of the median (binomial order statistics, normal approx.)."""
    n = len(sorted_samples)
    if n == 0:
        return math.nan, math.nan
    half_width = _Z95 * math.sqrt(n) / 2
    # 1-based ranks j = floor(n/2 - z*sqrt(n)/2), k = ceil(1 + n/2 + z*sqrt(n)/2)
    lo = max(0, math.floor(n / 2 - half_width) - 1)
    hi = min(n - 1, math.ceil(1 + n / 2 + half_width) - 1)
    return float(sorted_samples[lo]), float(sorted_samples[hi])


def warm_up(device: Device, kernel: Kernel, warmup_s: float, first_call: int = 0) -> tuple[float, int, float]:
    """Run the kernel in doubling chunks until ``warmup_s`` has passed.

    Returns (estimated seconds per call from the last chunk, calls made, seconds spent).
    At least one chunk runs even when ``warmup_s`` is 0, so the estimate exists.
    """
    start = time.perf_counter()
    chunk, calls, per_call_s = 1, 0, math.inf
    while True:
        t0 = time.perf_counter()
        device.run_untimed(kernel, chunk, first_call + calls)
        elapsed = time.perf_counter() - t0
        calls += chunk
        per_call_s = elapsed / chunk
        spent = time.perf_counter() - start
        if spent >= warmup_s:
            return per_call_s, calls, spent
        # grow the chunk so the loop's own cost stays small, but do not overshoot much
        remaining = warmup_s - spent
        chunk = max(1, min(chunk * 2, int(remaining / max(per_call_s, 1e-9))))


def measure(device: Device, kernel: Kernel, policy: TimingPolicy = TimingPolicy(),
            first_call: int = 0) -> TimingResult:
    """Warm up, then time samples until the median is within target or the budget ends."""
    per_call_s, calls, warmup_spent = warm_up(device, kernel, policy.warmup_s, first_call)
    calls_per_sample = max(1, math.ceil(policy.sample_s / max(per_call_s, 1e-9)))
    sample_est_s = max(per_call_s * calls_per_sample, 1e-9)
    chunk = max(1, math.ceil(0.05 / sample_est_s))  # first chunk ~50 ms: stopping overshoots little
    samples: list[float] = []
    timed_s = 0.0
    stopped_by = "max_samples"
    load = ForeignLoad()
    load.start()
    while len(samples) < policy.max_samples:
        # never plan past the budget (a slow kernel gets fewer samples and a wide interval)
        fits = math.floor((policy.budget_s - timed_s) / sample_est_s)
        take = max(1, min(chunk, policy.max_samples - len(samples), fits))
        t0 = time.perf_counter()
        samples.extend(device.time_samples_s(kernel, calls_per_sample, take, first_call + calls))
        timed_s += time.perf_counter() - t0
        calls += take * calls_per_sample
        ordered = np.sort(samples)
        median = float(np.median(ordered))
        if timed_s >= policy.min_time_s and len(samples) >= policy.min_samples:
            low, high = median_ci(ordered)
            if median > 0 and (high - low) / 2 / median <= policy.target_ci_rel:
                stopped_by = "ci"
                break
        if timed_s >= policy.budget_s:
            stopped_by = "budget"
            break
        sample_est_s = max(median * calls_per_sample, 1e-9)
        chunk = max(1, min(chunk * 2, math.ceil(0.25 / sample_est_s)))  # chunks of at most ~0.25 s
    return TimingResult(
        samples_s=samples,
        calls_per_sample=calls_per_sample,
        warmup_s=warmup_spent,
        timed_s=timed_s,
        stopped_by=stopped_by,
        target_ci_rel=policy.target_ci_rel,
        method=device.timing_method,
        calls_made=calls,
        foreign_cpu_share=load.share(),
        max_foreign_share=policy.max_foreign_share,
    )
