#!/usr/bin/env python
"""Does perfscope's timing harness agree with ``torch.utils.benchmark``?

For CPU fp32 GEMM shapes from ~10 us to ~50 ms per call, time the *same* call
(``torch.matmul(a, b, out=c)`` on the same tensors) with

* perfscope: ``perfscope.timing.measure(CpuDevice(), kernel, policy).median_s``
* torch:     ``Timer(stmt, globals, num_threads=torch.get_num_threads())
               .blocked_autorange(min_run_time=...).median``, where ``min_run_time`` is by
             default the time the harness spent in timed samples on that shape (so both
             look at the machine for as long: on a VM whose speed level switches every few
             seconds, a 0.5 s Timer window and a 2 s harness window see different levels)

interleaved: in every round each shape is measured by both, alternating which goes
first from round to round, so drifts of the machine (clocks, neighbours) hit both
alike. The figure of merit is the median over rounds of harness / Timer per shape;
a shape passes when it lies in [0.95, 1.05]. Exit status 1 when any shape fails.

Run:  python bench/bench_harness_vs_torch_benchmark.py [--rounds 9] [--min-run-time-s S] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.utils.benchmark as tb

from perfscope.collectors.gemm import GemmCase
from perfscope.devices.cpu import CpuDevice, cpu_model_name
from perfscope.hostload import ForeignLoad
from perfscope.timing import TimingPolicy, measure

# (m, n, k): square and rectangular; ~10 us (32^3) up to ~50 ms (1024x2048x1024) per call
SHAPES: list[tuple[int, int, int]] = [
    (32, 32, 32),
    (64, 64, 64),
    (128, 128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (1024, 32, 1024),  # tall-skinny output
    (32, 1024, 1024),  # short-wide output
    (128, 64, 2048),  # long k
    (256, 4096, 64),  # short k, wide output
    (2048, 256, 512),
    (1024, 2048, 1024),
]
QUICK_SHAPES: list[tuple[int, int, int]] = [
    (32, 32, 32), (64, 64, 64), (128, 128, 128), (256, 256, 256),
    (512, 512, 512), (1024, 32, 1024), (128, 64, 2048), (256, 4096, 64),
]

LOW, HIGH = 0.95, 1.05


@dataclass
class ShapeResult:
    shape: tuple[int, int, int]
    ratios: list[float] = field(default_factory=list)
    harness_s: list[float] = field(default_factory=list)
    timer_s: list[float] = field(default_factory=list)
    harness_info: list[str] = field(default_factory=list)  # calls/sample x samples, stop reason
    timer_info: list[str] = field(default_factory=list)  # calls/block x blocks
    busy: list[float] = field(default_factory=list)  # other processes' CPU share during each pair

    threshold: float = 0.05  # pairs with more foreign CPU load than this are "loaded"

    @property
    def clean_ratios(self) -> list[float]:
        return [r for r, b in zip(self.ratios, self.busy, strict=True) if b <= self.threshold]

    @property
    def counted(self) -> list[float]:
        """The ratios the verdict uses: the unloaded pairs when there are at least 3, else all."""
        clean = self.clean_ratios
        return clean if len(clean) >= 3 else self.ratios

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.counted)

    @property
    def passed(self) -> bool:
        return LOW <= self.median_ratio <= HIGH


def build_call(shape: tuple[int, int, int], mode: str, device: CpuDevice):
    """Return (harness kernel(i), Timer stmt, Timer globals) that run the same matmul."""
    m, n, k = shape
    workload = GemmCase(batch=1, m=m, n=n, k=k, dtype="fp32").build(device)
    error = workload.check()
    if not error <= workload.check_tolerance:
        raise SystemExit(f"{shape}: result check failed ({error:.3g})")
    if mode == "workload":
        # exactly the same Python callable in both: kernel(i) -> torch.matmul(a, b, out=c)
        # (warm cache mode: one input set, so kernel(i) == kernel(0) for every i)
        assert workload.input_sets == 1
        return workload.kernel, "kernel(0)", {"kernel": workload.kernel}
    # "direct": the bare torch call in Timer, a one-line lambda around it for the harness
    gen = torch.Generator().manual_seed(0)
    a = torch.rand((m, k), generator=gen).mul_(2).sub_(1)
    b = torch.rand((k, n), generator=gen).mul_(2).sub_(1)
    c = torch.empty((m, n))
    matmul = torch.matmul
    return (lambda i: matmul(a, b, out=c)), "matmul(a, b, out=c)", {"matmul": matmul, "a": a, "b": b, "c": c}


def time_harness(device: CpuDevice, kernel, policy: TimingPolicy) -> tuple[float, str, float]:
    """(median s per call, sampling details, seconds spent in timed samples)."""
    r = measure(device, kernel, policy)
    return r.median_s, f"{r.calls_per_sample}x{len(r.samples_s)} {r.stopped_by} ci{100 * r.ci_rel:.1f}%", r.timed_s


def time_timer(stmt: str, globs: dict, threads: int, min_run_time: float) -> tuple[float, str]:
    timer = tb.Timer(stmt=stmt, globals=globs, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return m.median, f"{m.number_per_run}x{len(m.raw_times)}"


def wait_for_idle(threshold: float, max_wait_s: float) -> None:
    """Wait (at most ``max_wait_s``) until other processes use <= threshold of the CPUs over 1 s."""
    probe = ForeignLoad()
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        probe.start()
        time.sleep(1.0)
        if (probe.share() or 0.0) <= threshold:
            return


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9, 3 with --quick)")
    p.add_argument("--min-run-time-s", type=float, default=None,
                   help="Timer.blocked_autorange min_run_time (default: the harness's timed seconds on the "
                        "same shape in its latest measurement, at least 0.2)")
    p.add_argument("--quick", action="store_true",
                   help="fewer shapes, 3 rounds by default, the 'quick' preset's timing policy")
    p.add_argument("--call", choices=("workload", "direct"), default="workload",
                   help="workload: both time GemmCase(...).build(CpuDevice()).kernel; "
                        "direct: Timer times the bare torch.matmul(a, b, out=c)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    p.add_argument("--busy-threshold", type=float, default=0.05,
                   help="a harness/Timer pair during which other processes used more than this share "
                        "of the CPUs is redone (default 0.05; 1 disables waiting and retrying)")
    p.add_argument("--retries", type=int, default=3, help="redo a loaded pair at most this often (default 3)")
    p.add_argument("--idle-wait-s", type=float, default=60.0,
                   help="before each pair, wait at most this long for the machine to be idle (default 60)")
    p.add_argument("--detail", action="store_true", help="also print per-round times and sampling details")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 9)
    if rounds < 1:
        p.error("--rounds must be >= 1")
    if args.quick:
        policy = TimingPolicy(warmup_s=0.05, min_time_s=0.1, budget_s=0.5, target_ci_rel=0.02)
        shapes = QUICK_SHAPES
    else:
        policy = TimingPolicy()
        shapes = SHAPES
    threads = torch.get_num_threads()
    device = CpuDevice()

    print(f"torch {torch.__version__}  threads {threads} (harness and Timer)  "
          f"CPU: {cpu_model_name()}  ({device.describe().last_level_cache_bytes or 0} B LLC)")
    print(f"harness policy: {policy}")
    window = f"{args.min_run_time_s}" if args.min_run_time_s is not None else "the harness's latest timed s"
    print(f"Timer: blocked_autorange(min_run_time={window})  call: {args.call}  rounds: {rounds}")
    print(f"PASS when {LOW} <= median(harness / Timer) <= {HIGH}\n", flush=True)

    calls = {s: build_call(s, args.call, device) for s in shapes}
    results = {s: ShapeResult(s, threshold=args.busy_threshold) for s in shapes}
    start = time.perf_counter()
    load = ForeignLoad()
    # one discarded harness run per shape: warms it up and gives Timer its first window
    harness_timed_s = {s: time_harness(device, calls[s][0], policy)[2] for s in shapes}
    for rnd in range(rounds):
        harness_first = rnd % 2 == 0
        round_loads = []
        for shape in shapes:
            kernel, stmt, globs = calls[shape]
            res = results[shape]
            order = ("harness", "timer") if harness_first else ("timer", "harness")
            for attempt in range(args.retries + 1):  # noqa: B007 (read after the loop)
                if args.busy_threshold < 1:
                    wait_for_idle(args.busy_threshold, args.idle_wait_s)
                gc.collect()
                load.start()
                got = {}
                for who in order:
                    if who == "harness":
                        median_s, info, harness_timed_s[shape] = time_harness(device, kernel, policy)
                        got[who] = median_s, info
                    else:
                        window_s = args.min_run_time_s or max(0.2, harness_timed_s[shape])
                        got[who] = time_timer(stmt, globs, threads, window_s)
                busy = load.share() or 0.0  # None: window too short to judge (or no /proc/stat)
                if busy <= args.busy_threshold:
                    break
            (h, hinfo), (t, tinfo) = got["harness"], got["timer"]
            res.harness_s.append(h)
            res.timer_s.append(t)
            res.harness_info.append(f"{hinfo}; others {100 * busy:.0f}%, try {attempt + 1}")
            res.timer_info.append(tinfo)
            res.ratios.append(h / t)
            res.busy.append(busy)
            round_loads.append(busy)
        print(f"round {rnd + 1}/{rounds} done ({'harness' if harness_first else 'Timer'} first), "
              f"{time.perf_counter() - start:.0f} s, other processes used up to "
              f"{100 * max(round_loads):.0f}% of the CPUs during a pair", flush=True)

    print()
    head = f"{'shape m x n x k':>18} {'Timer med us':>12} " + " ".join(f"{'r' + str(i + 1):>6} " for i in range(rounds))
    head += f" {'median':>7} {'n':>2}  result"
    print(head)
    print("-" * len(head))
    failed = 0
    for shape in shapes:
        res = results[shape]
        label = "x".join(map(str, shape))
        ratios = " ".join(f"{r:6.3f}" + ("*" if b > args.busy_threshold else " ")
                          for r, b in zip(res.ratios, res.busy, strict=True))
        verdict = "PASS" if res.passed else "FAIL"
        failed += not res.passed
        print(f"{label:>18} {fmt_us(statistics.median(res.timer_s)):>12} {ratios} {res.median_ratio:7.3f} "
              f"{len(res.counted):>2}  {verdict}")
    all_ratios = [r for res in results.values() for r in res.ratios]
    print(f"\n{len(shapes) - failed}/{len(shapes)} shapes pass; median of all ratios "
          f"{statistics.median(all_ratios):.3f} (min {min(all_ratios):.3f}, max {max(all_ratios):.3f}); "
          f"{time.perf_counter() - start:.0f} s")

    loaded = sum(b > args.busy_threshold for res in results.values() for b in res.busy)
    if loaded:
        print(f"* {loaded} of {len(all_ratios)} pairs ran while other processes used more than "
              f"{100 * args.busy_threshold:.0f}% of the CPUs even after {args.retries} retries: "
              "the machine was shared and those ratios are unreliable; a shape's median (n = pairs counted) "
              "leaves them out when at least 3 unloaded pairs remain; rerun when the machine is idle")
    else:
        print(f"every pair ran with other processes below {100 * args.busy_threshold:.0f}% of the CPUs")
    if args.detail:
        print("\nper round: harness us [calls/sample x samples, stop, CI]  |  Timer us [calls/block x blocks]")
        for shape in shapes:
            res = results[shape]
            print("x".join(map(str, shape)))
            for i in range(rounds):
                print(f"  r{i + 1}: {fmt_us(res.harness_s[i]):>8} [{res.harness_info[i]}]  |  "
                      f"{fmt_us(res.timer_s[i]):>8} [{res.timer_info[i]}]  ratio {res.ratios[i]:.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
