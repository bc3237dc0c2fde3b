#!/usr/bin/env python
"""What does the tile size do to a cache-blocked CPU GEMM?

Sweeps the tile of ``perfscope.collectors.cpu_tiled`` (numba, fp32, one square tile
for i, j and k) at a large square shape and one rectangular shape, timing each
configuration with perfscope's harness (``perfscope.timing.measure`` on
``CpuDevice``) after checking its result against float64. Prints, per tile, the
median time per call, GFLOP/s (2·m·n·k / median) and the ~95% interval of the
median; then the worst over best tile time ratio; and the same figures for
``torch.matmul`` on the same inputs as a reference line.

Slow tiles (tile 1 takes seconds per call at 1024) get a budget of at least
``--min-samples`` calls after one warm-up call, so their interval is wide (with 3
samples it is their min..max). Each configuration also prints the share of the CPUs
that other processes used while it was timed: on a shared 2-core machine a
neighbour inflates a 2-thread kernel's time, so rerun on an idle machine to trust
small differences.

Run:  python bench/bench_cpu_tiles.py [--size 1024] [--shape 512,2048,1024] [--tiles 1,2,...]
      [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass

DEFAULT_TILES = (1, 2, 3, 4, 7, 8, 16, 24, 32, 48, 64, 96, 128, 256)  # past 64: where L2 runs out


@dataclass
class Line:
    label: str
    median_s: float
    ci_s: tuple[float, float]
    samples: int
    stopped_by: str
    others: float  # other processes' share of all CPUs while timed
    flops: int

    @property
    def gflops(self) -> float:
        return self.flops / self.median_s / 1e9


def _busy_ticks() -> tuple[int, int]:
    """(all CPUs' busy ticks from /proc/stat, this process's user+system ticks)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0), int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0, 0


def _time(device, workload, policy, min_samples: int, label: str) -> Line:
    """Check, then time ``workload.kernel`` with the harness; return one printed line's figures."""
    from perfscope.timing import measure

    t0 = time.perf_counter()
    error = workload.check()  # one call, plus a float64 reference of 64 rows (small next to it)
    call_s = time.perf_counter() - t0
    if not error <= workload.check_tolerance:
        raise SystemExit(f"{label}: result check failed (error {error:.3g} > {workload.check_tolerance:.3g})")
    if min_samples * call_s > policy.budget_s:
        # too slow for the budget to give min_samples calls: take exactly that many, however long
        policy = dataclasses.replace(policy, budget_s=100 * min_samples * call_s,
                                     min_samples=min_samples, max_samples=min_samples)
    (b0, s0), w0 = _busy_ticks(), time.perf_counter()
    result = measure(device, workload.kernel, policy)
    (b1, s1), wall = _busy_ticks(), time.perf_counter() - w0
    others = max(0, (b1 - b0) - (s1 - s0)) / os.sysconf("SC_CLK_TCK") / max(wall * (os.cpu_count() or 1), 1e-9)
    return Line(label, result.median_s, result.median_ci_s, len(result.samples_s), result.stopped_by,
                others, workload.flops)


def _print_table(title: str, lines: list[Line], reference: Line) -> None:
    print(f"\n{title}")
    head = (f"{'tile':>6} {'median ms':>10} {'GFLOP/s':>8} {'95% CI of median, ms':>22} {'+-%':>6} "
            f"{'n':>4} {'stopped by':>11} {'others':>6}")
    print(head)
    print("-" * len(head))
    for ln in [*lines, reference]:
        low, high = ln.ci_s
        rel = (high - low) / 2 / ln.median_s * 100
        print(f"{ln.label:>6} {ln.median_s * 1e3:10.2f} {ln.gflops:8.2f} {low * 1e3:10.2f} - {high * 1e3:9.2f} "
              f"{rel:6.1f} {ln.samples:4d} {ln.stopped_by:>11} {100 * ln.others:5.0f}%")
    best = min(lines, key=lambda ln: ln.median_s)
    worst = max(lines, key=lambda ln: ln.median_s)
    print(f"best tile {best.label} ({best.gflops:.2f} GFLOP/s), worst tile {worst.label} "
          f"({worst.gflops:.2f} GFLOP/s): worst/best time = {worst.median_s / best.median_s:.1f}x; "
          f"torch.matmul is {best.median_s / reference.median_s:.1f}x faster than the best tile")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=None, help="square m = n = k (default 1024; 512 with --quick)")
    p.add_argument("--shape", default=None,
                   help="rectangular m,n,k (default 512,2048,1024; 256,1024,512 with --quick; 'none' to skip)")
    p.add_argument("--tiles", default=",".join(map(str, DEFAULT_TILES)), help="comma-separated tiles")
    p.add_argument("--threads", type=int, default=None, help="numba threads (default numba's pool)")
    p.add_argument("--min-samples", type=int, default=3, help="timed calls at least, however slow (default 3)")
    p.add_argument("--quick", action="store_true", help="smaller shapes")
    args = p.parse_args(argv)
    if args.min_samples < 3:
        p.error("--min-samples must be >= 3 (the harness's minimum)")

    import numba
    import torch

    from perfscope.collectors.cpu_tiled import CpuTiledGemmCase, compiled_kernel
    from perfscope.collectors.gemm import GemmCase
    from perfscope.devices.cpu import CpuDevice
    from perfscope.timing import TimingPolicy

    size = args.size or (512 if args.quick else 1024)
    shapes = [(size, size, size)]
    shape_arg = args.shape or ("256,1024,512" if args.quick else "512,2048,1024")
    if shape_arg != "none":
        shapes.append(tuple(int(x) for x in shape_arg.split(",")))
    tiles = [int(t) for t in args.tiles.split(",")]
    device = CpuDevice()
    policy = TimingPolicy()

    t0 = time.perf_counter()
    compiled_kernel()(*(torch.zeros(2, 2).numpy() for _ in range(3)), 1)
    load_s = time.perf_counter() - t0
    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    desc = device.describe()
    print(f"CPU: {desc.name}, {os.cpu_count()} CPUs, LLC {desc.last_level_cache_bytes or 0} B; "
          f"numba {numba.__version__} ({numba.threading_layer()} layer, {threads} threads), "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"kernel compile-or-cache-load + first call: {load_s:.2f} s; harness policy: {policy} "
          f"(slow configurations: exactly {args.min_samples} timed calls)", flush=True)

    start = time.perf_counter()
    for m, n, k in shapes:
        lines = []
        for tile in tiles:
            case = CpuTiledGemmCase(m=m, n=n, k=k, tile=tile, threads=args.threads)
            workload = case.build(device)
            lines.append(_time(device, workload, policy, args.min_samples, str(tile)))
            workload.release()
            ln = lines[-1]
            print(f"  {m}x{n}x{k} tile {tile}: {ln.median_s * 1e3:.2f} ms ({time.perf_counter() - start:.0f} s)",
                  flush=True)
        ref_workload = GemmCase(batch=1, m=m, n=n, k=k, dtype="fp32").build(device)
        reference = _time(device, ref_workload, policy, args.min_samples, "torch")
        ref_workload.release()
        _print_table(f"fp32 GEMM {m} x {n} x {k} (m x n x k), numba tiled kernel by tile; torch.matmul last",
                     lines, reference)
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
