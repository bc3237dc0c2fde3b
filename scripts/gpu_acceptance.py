#!/usr/bin/env python
"""GPU acceptance: the CUDA path end to end, one PASS/FAIL/SKIP line per step.

Steps: doctor; calibrate; a small sweep of GEMM, conv and attention with the NVML energy
counter and with sampled NVML power; energy windows spanning >= 10 counter updates;
Triton GEMM, attention and conv timed and checked; the harness against
``torch.utils.benchmark`` on 8 GEMM shapes (median ratio in 0.97..1.03); fp8 where the
GPU supports it. Exit status 0 when no step failed, 1 otherwise. Run it through
``scripts/gpu-acceptance.sh`` (which bounds it to 10 minutes).

With ``PERFSCOPE_ACCEPTANCE_FAKES=1`` every step runs against ``perfscope.testing``'s
fake CUDA and NVML driven by the real clock: the kernels are busy-waits of a modelled
duration on a fake H100, so timing, metering, energy windows and the comparison with
``torch.utils.benchmark`` exercise the real harness code. Steps that need a real GPU
(calibrate, Triton, fp8) are SKIP there. The tests run it that way; a GPU machine runs
it as it is.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

FAKES = os.environ.get("PERFSCOPE_ACCEPTANCE_FAKES") == "1"
POLICY = {"warmup_s": 0.05, "min_time_s": 0.1, "budget_s": 0.5, "target_ci_rel": 0.02}
RATIO_RANGE = (0.97, 1.03)
HARNESS_SHAPES = [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
                  (4096, 4096, 4096), (1024, 4096, 1024), (4096, 1024, 2048), (8192, 8192, 1024)]
FAKE_PEAK_FLOPS, FAKE_BANDWIDTH = 5e13, 2e12  # the fake GPU's modelled speed


class Skip(Exception):
    """A step that cannot run here (the reason is printed)."""


class Rig:
    """The device, NVML and a scratch directory every step uses: real, or the fakes."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.cuda: Any = None
        self.nvml: Any = None
        if FAKES:
            from perfscope.testing import FakeCuda, FakeDeviceProperties, FakeGpu, FakeNvml

            self.cuda = FakeCuda(time.perf_counter, [FakeDeviceProperties(name="NVIDIA H100 80GB HBM3")])
            self.nvml = FakeNvml([FakeGpu(name="NVIDIA H100 80GB HBM3", power_w=300.0, counter_update_s=0.01)],
                                 clock=time.monotonic)
        from perfscope.devices import select_device

        self.device = select_device("cuda", nvml=self.nvml, cuda=self.cuda)

    def meter(self, method: str) -> Any:
        from perfscope.meters import select_meter

        return select_meter(self.device, method, nvml=self.nvml)

    def cases(self, sweeps: list[dict[str, Any]]) -> list[Any]:
        from perfscope.collectors.spec import expand, parse_spec

        cases = expand(parse_spec({"name": "acceptance", "sweeps": sweeps}))
        return [_simulated(c) for c in cases] if FAKES else cases


def _simulated(case: Any, base_s: float = 5e-6) -> Any:
    """``case`` whose build gives a busy-wait of its modelled duration on the fake GPU
    (``base_s`` plus the roofline time at the fake GPU's peaks)."""
    from perfscope.collectors.protocol import Workload
    from perfscope.features import gemm_min_bytes

    min_bytes = getattr(case, "min_bytes", None)
    if min_bytes is None:
        min_bytes = gemm_min_bytes(case.batch, case.m, case.n, case.k, case.dtype)
    duration_s = base_s + max(case.flops / FAKE_PEAK_FLOPS, min_bytes / FAKE_BANDWIDTH)

    def build(device: Any) -> Workload:
        def kernel(i: int) -> None:
            end = time.perf_counter() + duration_s
            while time.perf_counter() < end:
                pass
        return Workload(kernel=kernel, check=lambda: 0.0, check_tolerance=1e-3, flops=case.flops,
                        min_bytes=min_bytes)

    simulated = type(f"Simulated{type(case).__name__}", (type(case),), {"build": lambda self, device: build(device)})
    import dataclasses

    return simulated(**{f.name: getattr(case, f.name) for f in dataclasses.fields(case) if f.init})


def _sweep(rig: Rig, cases: list[Any], energy: str) -> list[Any]:
    from perfscope.collectors.protocol import RunContext
    from perfscope.collectors.sweep import run_sweep
    from perfscope.store import ProfileStore, new_run_id
    from perfscope.timing import TimingPolicy

    meter = rig.meter(energy)
    try:
        ctx = RunContext(run_id=new_run_id(), device=rig.device, meter=meter, policy=TimingPolicy(**POLICY))
        store = ProfileStore(rig.scratch / f"sweep-{energy}", create=True)
        return run_sweep(cases, store, ctx, resume=False).rows
    finally:
        meter.close()


SMALL_SWEEP = [
    {"kernel": "gemm", "axes": {"sizes": [512, 2048], "dtype": ["fp32", "bf16"]}},
    {"kernel": "conv", "axes": {"n": [8], "c": [64], "h": [56], "w": [56], "k": [64], "r": [3], "s": [3], "pad": [1]}},
    {"kernel": "attention", "axes": {"batch": [4], "heads": [8], "seq": [1024], "head_dim": [64],
                                     "backend": ["math", "flash"], "dtype": ["bf16"]}},
]


def step_doctor(rig: Rig) -> str:
    from perfscope.doctor import run_doctor

    report = run_doctor("cuda", cuda=rig.cuda, nvml=rig.nvml)
    failed = [f"{c.name}: {c.detail}" for c in report.checks if c.status == "fail"]
    assert report.can_collect and not failed, "; ".join(failed) or "cannot collect"
    return f"{report.collect['device']}, {report.collect['timing_method']}, {report.collect['energy_method']}"


def step_calibrate(rig: Rig) -> str:
    if FAKES:
        raise Skip("needs a real GPU (calibration runs torch kernels)")
    from perfscope.collectors.calibrate import calibrate

    profile = calibrate(rig.device, dtypes=["fp32", "bf16"])
    figures = {(i["quantity"], i["dtype"]): i for i in profile.summary()}
    bad = [f"{q} {d}: {i['status']} {i['reason']}" for (q, d), i in figures.items() if i["status"] != "ok"]
    assert not bad, "; ".join(bad)
    return ", ".join(f"{q}{' ' + d if d else ''} {i['value']:.3g}" for (q, d), i in figures.items())


def _sweep_step(rig: Rig, energy: str) -> str:
    rows = _sweep(rig, rig.cases(SMALL_SWEEP), energy)
    kernels = {r.kernel for r in rows}
    bad = [f"{r.kernel} {r.implementation} {r.status}: {r.reason}" for r in rows
           if r.status not in ("ok", "unsupported")]
    no_energy = [r.config_id for r in rows if r.status == "ok" and not (r.energy_gross_j and r.energy_gross_j > 0)]
    assert kernels == {"gemm", "conv", "attention"}, f"families measured: {sorted(kernels)}"
    assert not bad, "; ".join(bad)[:400]
    assert not no_energy, f"{len(no_energy)} ok rows without energy"
    assert all(r.energy_method == energy for r in rows if r.status == "ok")
    rig.last_rows = rows  # type: ignore[attr-defined]
    ok = sum(r.status == "ok" for r in rows)
    return f"{ok} ok / {len(rows)} rows, energy {energy}"


def step_sweep_counter(rig: Rig) -> str:
    return _sweep_step(rig, "nvml-counter")


def step_energy_windows(rig: Rig) -> str:
    """Every window of the counter sweep spans >= 10 updates of the counter, whose update
    period is measured here by polling it (not assumed)."""
    period_s = _counter_update_period_s(rig)
    rows = _sweep(rig, rig.cases(SMALL_SWEEP[:1]), "nvml-counter")
    windows = [r.energy_window_s for r in rows if r.status == "ok"]
    assert windows, "no ok rows"
    updates = min(windows) / period_s
    assert updates >= 10, f"shortest window {min(windows):.3f} s = {updates:.1f} updates of {period_s * 1e3:.0f} ms"
    return (f"counter updates every {period_s * 1e3:.1f} ms; shortest window {min(windows):.3f} s = "
            f"{updates:.0f} updates")


def _counter_update_period_s(rig: Rig) -> float:
    from perfscope.nvml import load_nvml, nvml_call

    nvml = load_nvml(rig.nvml)
    handle = nvml_call(nvml, "nvmlDeviceGetHandleByIndex", rig.device.describe().index or 0)
    changes, last, deadline = [], nvml_call(nvml, "nvmlDeviceGetTotalEnergyConsumption", handle), time.monotonic() + 2
    while time.monotonic() < deadline and len(changes) < 12:
        value = nvml_call(nvml, "nvmlDeviceGetTotalEnergyConsumption", handle)
        if value != last:
            changes.append(time.monotonic())
            last = value
        time.sleep(0.001)
    assert len(changes) >= 3, "the energy counter did not move in 2 s"
    return statistics.median(b - a for a, b in zip(changes, changes[1:], strict=False))


def step_sweep_sampled(rig: Rig) -> str:
    return _sweep_step(rig, "nvml-sampled")


def step_triton(rig: Rig) -> str:
    if FAKES:
        raise Skip("needs a real GPU (Triton compiles for it)")
    from perfscope.collectors.protocol import RunContext, measure_case
    from perfscope.meters import NullMeter
    from perfscope.timing import TimingPolicy

    cases = rig.cases([
        {"kernel": "gemm", "implementation": "triton", "axes": {"sizes": [2048], "dtype": ["fp16"]}},
        {"kernel": "attention", "implementation": "triton", "axes": {"heads": [8], "seq": [1024], "head_dim": [64],
                                                                     "dtype": ["fp16"]}},
        {"kernel": "conv", "implementation": "triton", "axes": {"n": [8], "c": [64], "h": [56], "w": [56], "k": [64],
                                                                "r": [3], "s": [3], "pad": [1], "dtype": ["fp16"]}},
    ])
    ctx = RunContext(run_id="acceptance", device=rig.device, meter=NullMeter("acceptance"),
                     policy=TimingPolicy(**POLICY))
    results = [measure_case(c, ctx)[0] for c in cases]
    bad = [f"{r.kernel}: {r.status} {r.reason}" for r in results if r.status != "ok"]
    assert not bad, "; ".join(bad)[:400]
    return ", ".join(f"{r.kernel} {r.time_median_ms:.3f} ms (error {r.check_max_abs_err:.2g})" for r in results)


def step_harness_vs_torch_benchmark(rig: Rig) -> str:
    import torch.utils.benchmark as tb

    from perfscope.collectors.gemm import GemmCase
    from perfscope.collectors.protocol import Workload
    from perfscope.timing import TimingPolicy, measure

    device, clock = rig.device, None
    if FAKES:
        # both timers read one fake clock that only the kernels advance: any difference is
        # the harness's arithmetic (calls per sample, event pairing), not the shared CPU
        from perfscope.devices.cuda import CudaDevice
        from perfscope.testing import FakeClock, FakeCuda

        clock = FakeClock()
        device = CudaDevice(0, nvml=rig.nvml, cuda=FakeCuda(clock))
    ratios = []
    for m, n, k in HARNESS_SHAPES:
        case = GemmCase(batch=1, m=m, n=n, k=k, dtype="fp32")
        if clock is not None:
            duration_s = 5e-6 + case.flops / FAKE_PEAK_FLOPS
            workload = Workload(kernel=lambda i, d=duration_s: clock.advance(d), check=lambda: 0.0,
                                check_tolerance=1e-3, flops=case.flops, min_bytes=0)
        else:
            workload = case.build(device)
        try:
            harness_s = measure(device, workload.kernel, TimingPolicy(**POLICY)).median_s
            timer = tb.Timer("kernel(0)", globals={"kernel": workload.kernel}, **({"timer": clock} if clock else {}))
            reference_s = timer.blocked_autorange(min_run_time=0.3).median
        finally:
            workload.release()
        ratios.append(harness_s / reference_s)
    median = statistics.median(ratios)
    low, high = RATIO_RANGE
    assert low <= median <= high, f"median harness/Timer {median:.3f} outside {low}..{high} ({_fmt(ratios)})"
    return f"median harness/torch.utils.benchmark {median:.3f} over {len(ratios)} shapes ({_fmt(ratios)})"


def step_fp8(rig: Rig) -> str:
    if FAKES:
        raise Skip("needs a real GPU (torch._scaled_mm)")
    from perfscope.collectors.gemm import GemmCase
    from perfscope.collectors.protocol import RunContext, measure_case
    from perfscope.meters import NullMeter
    from perfscope.timing import TimingPolicy

    ctx = RunContext(run_id="acceptance", device=rig.device, meter=NullMeter("acceptance"),
                     policy=TimingPolicy(**POLICY))
    row, _ = measure_case(GemmCase(batch=1, m=4096, n=4096, k=4096, dtype="fp8_e4m3"), ctx)
    if row.status == "unsupported":
        raise Skip(f"not supported here: {row.reason}")
    assert row.status == "ok", f"{row.status}: {row.reason}"
    return f"fp8_e4m3 4096^3 {row.time_median_ms:.3f} ms, {row.achieved_flops_per_s / 1e12:.0f} TFLOP/s"


STEPS: list[tuple[str, Callable[[Rig], str]]] = [
    ("doctor", step_doctor), ("calibrate", step_calibrate), ("sweep nvml-counter", step_sweep_counter),
    ("sweep nvml-sampled", step_sweep_sampled), ("energy windows", step_energy_windows),
    ("triton", step_triton), ("harness vs torch.utils.benchmark", step_harness_vs_torch_benchmark),
    ("fp8", step_fp8),
]


def _fmt(ratios: list[float]) -> str:
    return " ".join(f"{r:.3f}" for r in ratios)


def main() -> int:
    started = time.perf_counter()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="perfscope-acceptance-") as scratch:
        try:
            rig = Rig(Path(scratch))
        except Exception as exc:  # no device at all: every step fails, in one line each
            for name, _ in STEPS:
                print(f"FAIL  {name}: no CUDA device ({exc})", flush=True)
            return 1
        for name, step in STEPS:
            step_start = time.perf_counter()
            try:
                detail = step(rig)
                verdict = "PASS"
            except Skip as exc:
                verdict, detail = "SKIP", str(exc)
            except Exception as exc:  # a failed step is reported and the next one runs
                verdict, detail = "FAIL", f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                failed += 1
                if os.environ.get("PERFSCOPE_ACCEPTANCE_DEBUG") == "1":
                    traceback.print_exc()
            print(f"{verdict}  {name} ({time.perf_counter() - step_start:.1f} s): {detail}", flush=True)
    mode = "fake CUDA/NVML" if FAKES else "real GPU"
    print(f"{'FAIL' if failed else 'PASS'}  all ({mode}, {time.perf_counter() - started:.0f} s): "
          f"{failed} step(s) failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
