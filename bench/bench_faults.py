#!/usr/bin/env python
"""How many injected faults does a profile dataset survive, and are rows lost or duplicated?

Scenarios (tiny fp32 CPU GEMMs with tiny timing budgets, real ``perfscope collect``
processes unless said otherwise):

* ``kill -9``: a collector killed with SIGKILL at ``--kills`` random moments, each run
  resuming the last, then one run to the end (``tests/fault_injection.py: kill_repeatedly``);
* damaged files: each way of ``fault_injection.CORRUPTIONS`` applied to one of
  three data files (in this process, through ``ProfileStore``);
* ENOSPC: an in-process sweep whose Parquet writes fail with ENOSPC after k writes
  (k = 0..5), then resumed with space back;
* concurrent: ``--collectors`` collectors started at once on one grid;
* full tmpfs (root only): collecting onto a 320 KiB tmpfs, then resuming after it grows.

A fault is *injected* when it hit (a kill that landed in a live run, a write that
failed, a file damaged); *survived* when every command afterwards ended without a
traceback and the data that should be there is. *Lost* rows: configurations (or rows of
undamaged files) missing at the end; *duplicated*: extra rows of a configuration.
Target: 0 lost, 0 duplicated. Exit status 1 otherwise.

Wall times depend on the machine and on what else runs: they are printed with the load
average, not judged.

Run:  python bench/bench_faults.py [--kills 20] [--collectors 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import errno
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fault_injection import (  # noqa: E402  (the tests' fault-injection helpers)
    CORRUPTIONS,
    check_union,
    collect_command,
    corrupt,
    kill_repeatedly,
    leftovers,
    run_concurrently,
)

SIZES = [8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68]


@dataclass
class Outcome:
    scenario: str
    injected: int
    survived: int
    lost: int
    duplicated: int
    wall_s: float
    note: str = ""


def _expected(sizes: list[int]) -> set[str]:
    from perfscope.collectors.gemm import cases_from_axes
    from perfscope.collectors.protocol import case_config_id

    return {case_config_id(c) for c in cases_from_axes({"sizes": sizes, "dtype": ["fp32"]})}


def _timed(fn: Callable[[Path], Outcome], work: Path) -> Outcome:
    work.mkdir(parents=True)
    start = time.perf_counter()
    outcome = fn(work)
    outcome.wall_s = time.perf_counter() - start
    return outcome


def kills(work: Path, n: int, seed: int) -> Outcome:
    ds = work / "ds"
    report = kill_repeatedly(ds, SIZES, n, seed=seed)
    final = subprocess.run(collect_command(ds, SIZES), capture_output=True, text=True)
    union = check_union(ds, _expected(SIZES))
    ok = final.returncode == 0 and union.skipped_files == 0 and not leftovers(ds)
    return Outcome("kill -9 at random moments", report.killed, report.killed if ok else 0, union.lost,
                   union.duplicated, 0.0, f"{report.finished_early} runs had ended before their signal")


def damaged_files(work: Path) -> Outcome:
    from perfscope.store import ProfileStore

    injected = survived = lost = 0
    for i, kind in enumerate(sorted(CORRUPTIONS)):
        store = ProfileStore(work / f"ds{i}", create=True)
        paths = [store.append([_row(m)])[0] for m in (8, 16, 32)]
        corrupt(paths[1], kind, random.Random(kind))
        injected += 1
        result = store.read()
        kept = sorted(result.table.column("m").to_pylist())
        lost += len({8, 32} - set(kept))
        survived += int(kept == [8, 32] and [p.path for p in result.problems] == [paths[1]])
    return Outcome("damaged data files", injected, survived, lost, 0, 0.0, f"{len(CORRUPTIONS)} kinds")


def enospc(work: Path) -> Outcome:
    import pyarrow.parquet as pq

    from perfscope import store_files
    from perfscope.collectors.gemm import cases_from_axes
    from perfscope.collectors.protocol import RunContext
    from perfscope.collectors.sweep import run_sweep
    from perfscope.devices.cpu import CpuDevice
    from perfscope.errors import StoreError
    from perfscope.meters.null import NullMeter
    from perfscope.store import ProfileStore
    from perfscope.timing import TimingPolicy

    sizes = SIZES[:8]
    cases = cases_from_axes({"sizes": sizes, "dtype": ["fp32"]})
    policy = TimingPolicy(warmup_s=0.002, min_time_s=0.005, budget_s=0.01)
    real = pq.write_table
    injected = survived = lost = duplicated = 0
    for allowed in range(6):
        root = work / f"ds{allowed}"
        calls = {"n": 0}

        def full_disk(table, where, _allowed=allowed, calls=calls, **kwargs):
            calls["n"] += 1
            if calls["n"] > _allowed:
                Path(where).write_bytes(b"PAR1 partial")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(table, where, **kwargs)

        def ctx(run_id: str) -> RunContext:
            return RunContext(run_id=run_id, device=CpuDevice(), meter=NullMeter("bench"), policy=policy)

        store_files.pq.write_table = full_disk
        try:
            run_sweep(cases, ProfileStore(root, create=True), ctx(f"full-{allowed}"))
            failed = False
        except StoreError:
            failed = True
        finally:
            store_files.pq.write_table = real
        injected += int(failed)
        run_sweep(cases, ProfileStore(root, create=True), ctx(f"resumed-{allowed}"))
        union = check_union(root, _expected(sizes))
        lost += union.lost
        duplicated += union.duplicated
        survived += int(failed and union.lost == union.duplicated == union.skipped_files == 0 and not leftovers(root))
    return Outcome("ENOSPC on write (injected)", injected, survived, lost, duplicated, 0.0, "after 0..5 writes")


def concurrent(work: Path, n: int) -> Outcome:
    ds = work / "ds"
    runs = run_concurrently([collect_command(ds, SIZES) for _ in range(n)])
    union = check_union(ds, _expected(SIZES))
    ok = all(r.returncode == 0 for r in runs) and union.skipped_files == 0
    return Outcome(f"{n} collectors at once", n, n if ok else 0, union.lost, union.duplicated, 0.0)


def full_tmpfs(work: Path) -> Outcome:
    mount = work / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        return Outcome("full tmpfs", 0, 0, 0, 0, 0.0, "skipped: needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        return Outcome("full tmpfs", 0, 0, 0, 0, 0.0, f"skipped: mount failed ({done.stderr.strip()})")
    try:
        ds, sizes = mount / "ds", [8 + 4 * i for i in range(40)]
        full = subprocess.run(collect_command(ds, sizes), capture_output=True, text=True)
        hit = full.returncode == 2 and "No space left" in full.stderr and "Traceback" not in full.stderr
        subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True)
        resumed = subprocess.run(collect_command(ds, sizes), capture_output=True, text=True)
        union = check_union(ds, _expected(sizes))
        ok = hit and resumed.returncode == 0 and union.skipped_files == 0 and not leftovers(ds)
        return Outcome("full tmpfs (real)", int(hit), int(ok), union.lost, union.duplicated, 0.0, "320 KiB")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _row(m: int):
    from perfscope.schema import Measurement, config_id

    config = {"kernel": "gemm", "implementation": "torch.matmul", "dtype": "fp32", "cache_mode": "warm",
              "batch": 1, "m": m, "n": 8, "k": 8}
    return Measurement(**config, run_id="bench", config_id=config_id(config), measured_at=datetime.now(timezone.utc),
                       device_key="cpu-bench", status="ok", host="h", os="Linux", cpu_model="cpu", threads=1,
                       python_version="3", perfscope_version="0", device_kind="cpu", device_name="bench cpu",
                       time_median_ms=float(m), samples_ms=[float(m)] * 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--collectors", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="perfscope-faults-"))
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()[0]:.2f} (a shared machine: wall times "
          "include other work)", flush=True)
    try:
        outcomes = [
            _timed(lambda w: kills(w, args.kills, args.seed), work / "kills"),
            _timed(damaged_files, work / "damaged"),
            _timed(enospc, work / "enospc"),
            _timed(lambda w: concurrent(w, args.collectors), work / "concurrent"),
            _timed(full_tmpfs, work / "tmpfs"),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'scenario':30s} {'injected':>8s} {'survived':>8s} {'lost':>5s} {'dup':>5s} {'wall s':>7s}  note")
    for o in outcomes:
        print(f"{o.scenario:30s} {o.injected:8d} {o.survived:8d} {o.lost:5d} {o.duplicated:5d} "
              f"{o.wall_s:7.1f}  {o.note}")
    total = Outcome("total", *(sum(getattr(o, f) for o in outcomes) for f in ("injected", "survived", "lost",
                                                                               "duplicated", "wall_s")))
    print(f"{total.scenario:30s} {total.injected:8d} {total.survived:8d} {total.lost:5d} {total.duplicated:5d} "
          f"{total.wall_s:7.1f}")
    print(f"load average after {os.getloadavg()[0]:.2f}; target: 0 lost, 0 duplicated rows")
    return 0 if total.lost == total.duplicated == 0 and total.survived == total.injected else 1


if __name__ == "__main__":
    raise SystemExit(main())
