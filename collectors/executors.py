"""Where a sweep's cases run: this process, or one Ray worker per GPU across a cluster.

Every Ray worker measures its own deterministic shard of the grid (the same partition
as ``--shard I/N``) and writes its own part files, under its own run id, into the same
dataset directory, which must therefore be on a filesystem every node sees.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from perfscope.collectors.protocol import RunContext
from perfscope.collectors.spec import shard
from perfscope.collectors.sweep import SweepReport, run_sweep
from perfscope.devices import select_device
from perfscope.errors import InvalidInputError
from perfscope.meters import select_meter
from perfscope.store import ProfileStore
from perfscope.timing import TimingPolicy


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to rebuild the measurement context on its own node."""

    dataset: str
    device: str
    energy: str
    tdp_w: float | None
    timing: dict[str, float]
    energy_window_s: float | None
    resume: bool
    time_budget_s: float | None
    threads: int | None = None
    max_memory_share: float = 0.5


def run_worker(cases: list[Any], settings: WorkerSettings, run_id: str) -> SweepReport:
    """Measure ``cases`` on this node's device into the dataset (used by every executor)."""
    if settings.threads is not None:
        import torch  # optional, slow to import; only measuring needs it

        torch.set_num_threads(settings.threads)
    store = ProfileStore(settings.dataset, create=True)
    device = select_device(settings.device)
    meter = select_meter(device, settings.energy, tdp_w=settings.tdp_w)
    ctx = RunContext(run_id=run_id, device=device, meter=meter, policy=TimingPolicy(**settings.timing),
                     energy_window_s=settings.energy_window_s, max_memory_share=settings.max_memory_share)
    try:
        return run_sweep(cases, store, ctx, resume=settings.resume, time_budget_s=settings.time_budget_s)
    finally:
        meter.close()


def run_ray(cases: list[Any], settings: WorkerSettings, run_id: str, *, address: str | None = None,
            workers: int | None = None, num_cpus_per_worker: float = 1.0) -> SweepReport:
    """Run the sweep as Ray tasks: one per GPU (``num_gpus=1``) on a CUDA device, or
    ``workers`` CPU tasks otherwise. Returns the workers' reports merged."""
    try:
        import ray  # optional; only the Ray executor needs it
    except ImportError:
        raise InvalidInputError("the Ray executor needs ray: pip install 'perfscope[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    try:
        on_gpu = settings.device.startswith("cuda") or (
            settings.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
        if workers is None:
            workers = int(ray.cluster_resources().get("GPU", 0)) if on_gpu else 1
        if workers < 1:
            raise InvalidInputError("no Ray workers: the cluster has no GPUs "
                                    "(use the CPU device or give a worker count)",
                                    parameter="workers")
        task = ray.remote(num_gpus=1 if on_gpu else 0, num_cpus=num_cpus_per_worker)(run_worker)
        # each GPU worker sees its GPU as cuda:0 (Ray sets CUDA_VISIBLE_DEVICES)
        worker_settings = settings if not on_gpu else _replace_device(settings, "cuda:0")
        futures = [task.remote(shard(cases, i, workers), worker_settings, f"{run_id}-w{i}")
                   for i in range(workers)]
        reports = ray.get(futures)
    finally:
        if started_here:
            ray.shutdown()
    return merge_reports(reports, run_id)


def merge_reports(reports: list[SweepReport], run_id: str) -> SweepReport:
    """One report for several workers: counts add up, wall time is the slowest worker's."""
    merged = SweepReport(run_id=run_id, dataset=reports[0].dataset if reports else "",
                         device_key=",".join(sorted({r.device_key for r in reports})),
                         planned=sum(r.planned for r in reports), statuses=Counter())
    for r in reports:
        merged.skipped += r.skipped
        merged.left_by_time_budget += r.left_by_time_budget
        merged.left_to_others += r.left_to_others
        merged.statuses.update(r.statuses)
        merged.timed_s += r.timed_s
        merged.wall_s = max(merged.wall_s, r.wall_s)
        merged.rows.extend(r.rows)
    return merged


def _replace_device(settings: WorkerSettings, device: str) -> WorkerSettings:
    return replace(settings, device=device)
