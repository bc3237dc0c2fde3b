"""The collect workflow (``perfscope collect``, ``perfscope plan``): a sweep spec and the
overrides given beside it -> its cases -> a sweep that measures them into a store.

The pieces live in ``perfscope.collectors`` (specs, families, the sweep loop, the Ray
executor, the memory guard) and the core (devices, meters, the store); this module
composes them and returns what happened (``CollectSummary``, ``PlanSummary``) for the
caller to render.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from perfscope.collectors.executors import WorkerSettings, run_ray
from perfscope.collectors.families import FAMILIES
from perfscope.collectors.memory_guard import parse_max_memory, too_large_reason
from perfscope.collectors.protocol import Case, RunContext
from perfscope.collectors.spec import SweepSpec, expand, flag_spec, load_spec, parse_shard, plan, shard, with_overrides
from perfscope.collectors.sweep import SweepReport, run_sweep
from perfscope.devices import select_device
from perfscope.errors import Interrupted, InvalidInputError
from perfscope.meters import select_meter
from perfscope.schema import Measurement
from perfscope.store import ProfileStore, new_run_id

__all__ = ["CollectSettings", "CollectSummary", "PlanSummary", "SweepRequest", "build_spec", "check_family",
           "collect", "parse_max_memory", "plan_sweep", "sweep_cases"]


@dataclass(frozen=True)
class SweepRequest:
    """What to measure: a kernel family and/or a spec (YAML file or preset), and what
    overrides the spec: ``axes`` (axis -> values), ``filters`` (expressions that must
    hold), ``timing`` (timing policy fields; ``None`` keeps the spec's) and a time budget;
    ``shard`` ("I/N") keeps one shard of the cases; ``seed`` seeds the inputs."""

    family: str | None = None
    spec: str | None = None
    implementation: str | None = None
    axes: Mapping[str, list[Any]] = field(default_factory=dict)
    filters: Sequence[str] = ()
    timing: Mapping[str, float | None] = field(default_factory=dict)
    time_budget_s: float | None = None
    shard: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class CollectSettings:
    """How and where a sweep runs (device selector, energy meter, executor, ...)."""

    device: str = "auto"
    energy: str = "auto"
    tdp_w: float | None = None
    threads: int | None = None
    energy_window_s: float | None = None
    resume: bool = True
    executor: str = "local"  # local, or ray
    address: str | None = None
    workers: int | None = None
    max_memory_share: float = 0.5


@dataclass(frozen=True)
class CollectSummary:
    """What a sweep did, and how its energy was measured."""

    report: SweepReport
    energy_method: str
    energy_note: str | None = None
    energy_is_estimate: bool = False


@dataclass(frozen=True)
class PlanSummary:
    """What a sweep would do on ``device_key``, before it runs (durations are estimates)."""

    spec_name: str
    configurations: int
    by_group: dict[str, int]
    already_measured: int
    too_large: int
    device_key: str
    max_memory_share: float
    estimated_min_s: float
    estimated_max_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``perfscope plan --json``)."""
        return {"spec": self.spec_name, "configurations": self.configurations, "by_group": self.by_group,
                "already_measured": self.already_measured, "too_large": self.too_large, "device": self.device_key,
                "estimated_min_s": round(self.estimated_min_s, 1), "estimated_max_s": round(self.estimated_max_s, 1)}


class SweepProgress(Protocol):
    """Receives a sweep's progress: the number of cases to measure, then each row."""

    def start(self, total: int) -> None: ...

    def advance(self, row: Measurement) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, row: Measurement) -> None:
        pass


def check_family(family: str | None) -> None:
    """``InvalidInputError`` unless ``family`` is ``None`` or a known kernel family."""
    if family is not None and family not in FAMILIES:
        raise InvalidInputError(f"unknown kernel family {family!r}: use {', '.join(FAMILIES)}")


def build_spec(request: SweepRequest) -> SweepSpec:
    """The sweep spec the request describes (its overrides win over the spec file's axes)."""
    family, spec, implementation = request.family, request.spec, request.implementation
    check_family(family)
    if spec is not None:
        base = load_spec(spec)
        sweeps = [s for s in base.sweeps if (family is None or s.kernel == family)
                  and (implementation is None or s.implementation == implementation)]
        if not sweeps:
            message = f"spec {base.name!r} has no {family or ''} {implementation or ''} sweep"
            raise InvalidInputError(message.replace("  ", " "))
    elif family is None:
        raise InvalidInputError("say what to measure: a kernel family (gemm, conv, attention) or --spec")
    else:
        base = flag_spec(family, implementation)
        sweeps = list(base.sweeps)
    result = with_overrides(base, sweeps, dict(request.axes), tuple(request.filters), dict(request.timing),
                            request.time_budget_s)
    _ = result.policy  # validate timing now
    return result


def sweep_cases(request: SweepRequest) -> tuple[SweepSpec, list[Case]]:
    """The request's spec and its cases (only shard ``request.shard`` of them when given)."""
    sweep_spec = build_spec(request)
    cases = expand(sweep_spec, seed=request.seed)
    return sweep_spec, cases if request.shard is None else shard(cases, *parse_shard(request.shard))


def plan_sweep(sweep_spec: SweepSpec, cases: list[Case], *, dataset: Path | None, device: str,
               max_memory_share: float) -> PlanSummary:
    """Count the cases, those ``dataset`` already holds for ``device``, and those too large for
    its free memory; bound the duration from the timing policy. Runs nothing."""
    dev = select_device(device)
    measured: set[str] = set()
    if dataset is not None and dataset.exists():
        measured = {cid for _, cid in ProfileStore(dataset).measured_keys(dev.key)}
    counted = plan(sweep_spec, cases, measured)
    too_large = sum(too_large_reason(c.for_device(dev.kind), dev, max_memory_share) is not None for c in cases)
    return PlanSummary(spec_name=sweep_spec.name, configurations=counted.total, by_group=counted.by_group,
                       already_measured=counted.already_measured, too_large=too_large, device_key=dev.key,
                       max_memory_share=max_memory_share, estimated_min_s=counted.min_s,
                       estimated_max_s=counted.max_s)


def collect(cases: list[Case], sweep_spec: SweepSpec, dataset: Path, settings: CollectSettings, *,
            notify: Callable[[str], None] | None = None,
            progress: Callable[[], AbstractContextManager[SweepProgress]] | None = None) -> CollectSummary:
    """Measure ``cases`` into ``dataset`` (created or resumed), on this machine or across a Ray
    cluster. ``notify`` receives notes (e.g. a device fallback); ``progress`` opens a
    ``SweepProgress`` around a local sweep. Ctrl-C raises ``Interrupted`` saying how many
    rows were kept (every measured row is saved at once)."""
    store = ProfileStore(dataset, create=True)
    run_id = new_run_id()
    if settings.executor == "ray":
        worker = WorkerSettings(dataset=str(dataset.resolve()), device=settings.device, energy=settings.energy,
                                tdp_w=settings.tdp_w, timing=sweep_spec.timing.model_dump(exclude_none=True),
                                energy_window_s=settings.energy_window_s, resume=settings.resume,
                                time_budget_s=sweep_spec.time_budget_s, threads=settings.threads,
                                max_memory_share=settings.max_memory_share)
        report = run_ray(cases, worker, run_id, address=settings.address, workers=settings.workers)
        return CollectSummary(report, energy_method=settings.energy)
    dev = select_device(settings.device, notify=notify)
    if settings.threads is not None:
        import torch  # optional and heavy (seconds to import): only a local sweep that sets threads needs it

        torch.set_num_threads(settings.threads)
    meter = select_meter(dev, settings.energy, tdp_w=settings.tdp_w)
    ctx = RunContext(run_id=run_id, device=dev, meter=meter, policy=sweep_spec.policy,
                     energy_window_s=settings.energy_window_s, max_memory_share=settings.max_memory_share)
    saved: list[str] = []  # statuses of the rows appended so far, for the Ctrl-C message
    opened = progress() if progress is not None else contextlib.nullcontext(_NoProgress())

    try:
        with opened as bar:
            def on_row(row: Measurement) -> None:
                saved.append(row.status)
                bar.advance(row)

            report = run_sweep(cases, store, ctx, resume=settings.resume, time_budget_s=sweep_spec.time_budget_s,
                               on_start=bar.start, on_row=on_row)
    except KeyboardInterrupt:  # say what was kept
        raise Interrupted(f"interrupted: {len(saved)} rows saved in {dataset} (run the same command again to "
                          "resume)") from None
    finally:
        meter.close()
    return CollectSummary(report, energy_method=meter.method, energy_note=getattr(meter, "reason", None),
                          energy_is_estimate=meter.is_estimate)
