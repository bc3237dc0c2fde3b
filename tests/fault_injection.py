"""Fault injection against a profile dataset: damaged files, killed and concurrent
collectors, and the union check that says whether rows were lost or duplicated.

Used by ``tests/test_faults.py`` and ``bench/bench_faults.py`` (not a test module; it
drives the CLI, so it lives beside the tests rather than in the core's ``perfscope.testing``).
The collectors run as real ``perfscope collect`` processes on the CPU.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from perfscope.schema import SCHEMA_METADATA_KEY

# tiny CPU GEMMs with tiny timing budgets: a configuration takes a few tens of ms
FAST_TIMING = ("--warmup-s", "0.005", "--min-time-s", "0.01", "--budget-s", "0.02", "--energy", "none",
               "--threads", "1")
# the killed sweeps measure each configuration for ~0.2 s, so that a sweep lasts several
# seconds on a fast idle machine too and most SIGKILLs land in a live run
KILL_TIMING = ("--min-time-s", "0.2", "--budget-s", "0.25")


def collect_command(dataset: Path, sizes: Sequence[int], *extra: str) -> list[str]:
    """``perfscope collect gemm`` of square fp32 ``sizes`` into ``dataset``."""
    return [sys.executable, "-m", "perfscope", "collect", "gemm", "--size", ",".join(map(str, sizes)),
            "--dtype", "fp32", "--out", str(dataset), "--quiet", *FAST_TIMING, *extra]


# -- the union check ---------------------------------------------------------------------

@dataclass
class UnionCheck:
    """How a dataset's configurations compare with a reference set."""

    expected: int
    found: int
    lost: int  # expected configurations with no row
    duplicated: int  # extra rows of a configuration measured more than once (any run)
    skipped_files: int


def check_union(dataset: Path, expected_config_ids: set[str]) -> UnionCheck:
    """Compare the configurations stored in ``dataset`` with ``expected_config_ids``."""
    from perfscope.store import ProfileStore

    result = ProfileStore(dataset).read(["run_id", "config_id"])
    counts = Counter(result.table.column("config_id").to_pylist())
    return UnionCheck(expected=len(expected_config_ids), found=len(counts),
                      lost=len(expected_config_ids - set(counts)),
                      duplicated=sum(n - 1 for n in counts.values() if n > 1), skipped_files=len(result.problems))


def leftovers(dataset: Path) -> list[Path]:
    """Temporary and uncompacted part files still in the dataset."""
    return sorted(p for p in dataset.glob("device=*/kernel=*/*") if p.name.startswith((".tmp-", "part-")))


# -- killed collectors -----------------------------------------------------------------

@dataclass
class KillReport:
    """When each killed run got its signal, and how many were still running."""

    delays_s: list[float] = field(default_factory=list)
    killed: int = 0  # runs that were still going when the signal came
    finished_early: int = 0  # runs that had ended before it


def kill_repeatedly(dataset: Path, sizes: Sequence[int], kills: int, seed: int) -> KillReport:
    """Run ``perfscope collect`` ``kills`` times into ``dataset``, each time sending SIGKILL
    at a random moment (see ``_drive_kills``); returns when and how each run ended.

    The collectors are forked from one driver process that imported perfscope and torch
    once, so each run starts in milliseconds instead of seconds and the moments fall in
    the sweep itself rather than in Python's start-up.
    """
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(dataset),
                           ",".join(map(str, sizes)), str(kills), str(seed)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kill driver failed: {proc.stderr.strip()[-2000:]}")
    return KillReport(**json.loads(proc.stdout))


def _drive_kills(dataset: Path, sizes: str, kills: int, seed: int) -> KillReport:
    """Half of the moments are uniform over the first 3 s of a run (opening, recovering
    the previous run's leftovers, measuring); the other half come 0-300 ms after the
    run's first new part file appears (measuring, writing, compacting)."""
    import torch  # noqa: F401  (imported once, before forking)

    import perfscope.collectors.gemm  # noqa: F401
    import perfscope.collectors.sweep  # noqa: F401
    import perfscope.workflows.collect  # noqa: F401  (what the collect command loads when it runs)
    from perfscope.cli import main

    rng = random.Random(seed)
    argv = ["perfscope", *collect_command(dataset, [int(s) for s in sizes.split(",")], *KILL_TIMING)[3:]]
    report = KillReport()
    for i in range(kills):
        before = set(dataset.glob("device=*/kernel=*/part-*")) if dataset.exists() else set()
        pid = os.fork()
        if pid == 0:  # the collector
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sys.argv = argv
            try:
                main()
            finally:
                os._exit(0)
        start = time.monotonic()

        def ended(pid: int = pid) -> bool:
            return os.waitpid(pid, os.WNOHANG)[0] != 0

        if i % 2 == 0:
            delay = rng.uniform(0.0, 3.0)
            while not (finished := ended()) and time.monotonic() - start < delay:
                time.sleep(0.002)
        else:
            while not (finished := ended()) and not set(dataset.glob("device=*/kernel=*/part-*")) - before:
                if time.monotonic() - start > 30:
                    break
                time.sleep(0.002)
            if not finished:
                time.sleep(rng.uniform(0.0, 0.3))
        finished = finished or ended()
        report.delays_s.append(round(time.monotonic() - start, 4))
        if finished:
            report.finished_early += 1
            continue
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        report.killed += 1
    return report


def _wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def run_concurrently(commands: list[list[str]], timeout_s: float = 300) -> list[subprocess.CompletedProcess]:
    """Run ``commands`` at once; their completed processes (output captured)."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=timeout_s)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


# -- damaged files -----------------------------------------------------------------------

def _overwrite_40_bytes(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    offset = rng.randrange(4, len(data) - 48)
    data[offset:offset + 40] = bytes(rng.randrange(256) for _ in range(40))
    path.write_bytes(bytes(data))


def _truncate(path: Path, rng: random.Random) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:rng.randrange(1, len(data) - 1)])


def _retag(tag: bytes) -> Callable[[Path, random.Random], None]:
    def retag(path: Path, rng: random.Random) -> None:
        pq.write_table(pq.read_table(path).replace_schema_metadata({SCHEMA_METADATA_KEY: tag}), path)
    return retag


def _mistyped_column(path: Path, rng: random.Random) -> None:
    table = pq.read_table(path)
    index = table.schema.get_field_index("m")
    table = table.set_column(index, "m", pa.array(["not a number"] * table.num_rows))
    pq.write_table(table, path)


def _foreign_parquet(path: Path, rng: random.Random) -> None:
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)


def _disagreeing_partition(path: Path, rng: random.Random) -> None:
    table = pq.read_table(path)
    table = table.append_column("device_key", pa.array(["elsewhere"] * table.num_rows))
    pq.write_table(table.replace_schema_metadata({SCHEMA_METADATA_KEY: b"1"}), path)


CORRUPTIONS: dict[str, Callable[[Path, random.Random], object]] = {
    "40 bytes overwritten": _overwrite_40_bytes,
    "truncated": _truncate,
    "emptied": lambda path, rng: path.write_bytes(b""),
    "not Parquet": lambda path, rng: path.write_bytes(b"PAR1 this is not parquet PAR1"),
    "non-integer version tag": _retag(b"two"),
    "newer schema version": _retag(b"99"),
    "no version tag": _foreign_parquet,
    "mistyped column": _mistyped_column,
    "partition column disagrees": _disagreeing_partition,
}
"""Ways to damage a data file; each must make readers skip that file with a reason."""


def corrupt(path: Path, kind: str, rng: random.Random) -> None:
    """Damage the data file ``path`` in the way ``kind`` names (a key of ``CORRUPTIONS``)."""
    CORRUPTIONS[kind](path, rng)



if __name__ == "__main__":  # the kill driver (see kill_repeatedly)
    print(json.dumps(asdict(_drive_kills(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))))
