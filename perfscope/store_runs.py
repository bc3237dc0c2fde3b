"""A run's files in a dataset: its lock, compaction of its parts, and crash leftovers.

A writer holds its run's lock (``perfscope.store_locks``) while it appends part files
and until it has compacted them into ``run-<run_id>.parquet``. A free lock on a run
with parts or temporary files therefore means its writer died: opening the dataset
removes the temporary files and compacts those parts. Compaction drops repeated
``(run_id, config_id)`` rows, and unlinks parts only after the run file is written, so a
compaction cut short never loses or duplicates rows.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from perfscope.errors import StoreError
from perfscope.schema import arrow_schema
from perfscope.store_files import dedupe, read_data_file, unify_tables, write_data_file
from perfscope.store_locks import FileLockHandle, process_alive, run_lock_path, try_lock
from perfscope.store_marker import TMP_PREFIX

RUN_LOCK_WAIT_S = 120.0  # how long a writer waits for another process writing the same run
_PART = re.compile(r"part-(?P<run>.+)-\d+-\d{6}\.parquet")
_RUN = re.compile(r"run-(?P<run>.+)\.parquet")
_TMP = re.compile(re.escape(TMP_PREFIX) + r"(?P<name>.+?\.parquet)(\.(?P<pid>\d+))?")
_held_runs: dict[Path, FileLockHandle] = {}  # run locks this process holds, by lock path


def hold_run(root: Path, run_id: str) -> None:
    """Take the lock of ``run_id`` in the dataset at ``root`` (kept until ``release_run``),
    waiting up to ``RUN_LOCK_WAIT_S`` for another writer of that run."""
    path = run_lock_path(root, run_id).resolve()
    if path in _held_runs:
        return
    try:
        lock = try_lock(path, wait_s=RUN_LOCK_WAIT_S)
    except OSError as exc:
        raise StoreError(f"cannot lock run {run_id} in {root}: {exc.strerror or exc}") from None
    if lock is None:
        raise StoreError(f"another process has been writing run {run_id} into {root} for "
                         f"{RUN_LOCK_WAIT_S:.0f} s: try again when it has finished")
    _held_runs[path] = lock


def release_run(root: Path, run_id: str) -> None:
    """Release the lock of ``run_id`` if this process holds it."""
    lock = _held_runs.pop(run_lock_path(root, run_id).resolve(), None)
    if lock is not None:
        lock.release()


def compact_held(root: Path, run_id: str) -> int:
    """Merge the part files of ``run_id`` (whose lock is held) into one file per
    partition; returns the parts merged. Unreadable parts stay where they are."""
    merged = 0
    for partition in sorted({p.parent for p in root.glob(f"device=*/kernel=*/part-{run_id}-*.parquet")}):
        parts = [p for p in sorted(partition.glob(f"part-{run_id}-*.parquet"))
                 if (m := _PART.fullmatch(p.name)) and m["run"] == run_id]
        target = partition / f"run-{run_id}.parquet"
        tables, readable = [], []
        try:
            if target.exists():
                tables.append(read_data_file(target))
        except StoreError:
            continue  # never overwrite a run file we cannot read: its parts stay readable
        for p in parts:
            try:
                tables.append(read_data_file(p))
                readable.append(p)
            except (StoreError, FileNotFoundError):
                pass
        if not readable:
            continue
        write_data_file(target, dedupe(unify_tables(tables, arrow_schema())))
        for p in readable:  # a crash here leaves duplicates that readers drop
            p.unlink(missing_ok=True)
        merged += len(readable)
    return merged


def recover(root: Path) -> None:
    """Remove temporary files and compact the parts of runs whose writer is gone.

    A run's writer holds its run lock until it has compacted, so a free lock means
    the writer died (or never compacted). Best effort: a read-only dataset is left as it is.
    """
    leftovers: dict[str, list[Path]] = {}
    for path in itertools.chain(root.glob(f"device=*/kernel=*/{TMP_PREFIX}*"),
                                root.glob("device=*/kernel=*/part-*.parquet")):
        match = _TMP.fullmatch(path.name)
        name = match["name"] if match else path.name
        run = _PART.fullmatch(name) or _RUN.fullmatch(name)
        if run is not None:
            leftovers.setdefault(run["run"], []).append(path)
    for run_id, paths in leftovers.items():
        lock_path = run_lock_path(root, run_id).resolve()
        if lock_path in _held_runs:
            continue
        try:
            lock = try_lock(lock_path)
        except OSError:
            return
        if lock is None:
            continue  # its writer is alive
        try:
            for path in paths:
                if path.name.startswith(TMP_PREFIX):
                    path.unlink(missing_ok=True)
            compact_held(root, run_id)
        except (OSError, StoreError):
            pass
        finally:
            lock.release()
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        pid = tmp.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
