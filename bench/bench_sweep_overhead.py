#!/usr/bin/env python
"""How much of a sweep's wall time is spent timing kernels?

Runs ``perfscope collect --spec quick --out <fresh tmpdir> --json --quiet`` (every
family of the preset: GEMM through torch and the numba tiled kernel, conv, attention) as a
subprocess and reports the subprocess's wall time, the JSON summary's ``wall_s``,
``timed_s`` and ``overhead`` (= wall_s / timed_s, measured inside the sweep loop), the
same ratio for the whole process (Python start-up, imports, device and meter set-up
included), configurations measured and configurations per minute.

Target: overhead <= 1.5. Exit status 1 when it is above (or missing).

Run:  python bench/bench_sweep_overhead.py [--spec quick] [--keep] [-- extra collect options]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.5


def _busy_ticks() -> int:
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)


def _children_ticks() -> int:
    t = os.times()
    return round((t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default="quick", help="sweep spec or preset (default quick)")
    p.add_argument("--keep", action="store_true", help="keep the dataset directory and print its path")
    p.add_argument("extra", nargs="*", help="more options for `perfscope collect` (after --)")
    args = p.parse_args(argv)

    import torch  # only for the header; the subprocess imports its own

    from perfscope.devices.cpu import cpu_model_name

    out = Path(tempfile.mkdtemp(prefix="perfscope-bench-")) / "dataset"
    cmd = [sys.executable, "-m", "perfscope", "collect", "--spec", args.spec,
           "--out", str(out), "--json", "--quiet", *args.extra]
    print(f"torch {torch.__version__}  threads {torch.get_num_threads()}  CPU: {cpu_model_name()}  "
          f"cores {os.cpu_count()}")
    print("command:", " ".join(cmd), flush=True)

    # Python start-up + `import perfscope.cli` alone, for reference
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import perfscope.cli"], check=True)
    startup_s = time.perf_counter() - t0

    hz, ncpu = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    busy0, child0 = _busy_ticks(), _children_ticks()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    process_wall_s = time.perf_counter() - t0
    foreign = max(0, (_busy_ticks() - busy0) - (_children_ticks() - child0)) / hz / (process_wall_s * ncpu)
    try:
        if proc.returncode != 0:
            print(f"perfscope exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}", file=sys.stderr)
            return 1
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
        if not lines:
            print(f"no JSON summary in the output:\n{proc.stdout}\n{proc.stderr}", file=sys.stderr)
            return 1
        summary = json.loads(lines[-1])
    finally:
        if args.keep:
            print("dataset kept in", out)
        else:
            shutil.rmtree(out.parent, ignore_errors=True)

    wall_s, timed_s, overhead = summary["wall_s"], summary["timed_s"], summary["overhead"]
    measured = summary["measured"]
    statuses = summary.get("statuses", {})
    ok = statuses.get("ok", 0)
    process_ratio = process_wall_s / timed_s if timed_s else float("inf")

    print()
    print(f"{'python start-up + import perfscope.cli':<44} {startup_s:8.2f} s")
    print(f"{'subprocess wall time (whole process)':<44} {process_wall_s:8.2f} s")
    print(f"{'summary wall_s (sweep loop)':<44} {wall_s:8.2f} s")
    print(f"{'summary timed_s (inside timed samples)':<44} {timed_s:8.2f} s")
    print(f"{'overhead = wall_s / timed_s':<44} {overhead:8.3f}   (target <= {TARGET})")
    print(f"{'whole process wall / timed_s':<44} {process_ratio:8.3f}   (start-up and set-up included)")
    print(f"{'configurations measured':<44} {measured:8d}   statuses {statuses}")
    print(f"{'configurations per minute (sweep loop)':<44} {measured / wall_s * 60:8.1f}   "
          f"({ok / wall_s * 60:.1f} ok)")
    print(f"{'configurations per minute (whole process)':<44} {measured / process_wall_s * 60:8.1f}   "
          f"({ok / process_wall_s * 60:.1f} ok)")
    print(f"{'other processes used':<44} {100 * foreign:8.0f} % of the CPUs during the run"
          + ("   WARNING: shared machine" if foreign > 0.05 else ""))
    passed = overhead is not None and overhead <= TARGET
    print(f"\n{'PASS' if passed else 'FAIL'}: overhead {overhead} {'<=' if passed else '>'} {TARGET}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
