"""Running a sweep: measure each case once into a store, resuming where a run stopped."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from perfscope.collectors.protocol import Case, RunContext, case_config_id, measure_case
from perfscope.schema import Measurement
from perfscope.store import ProfileStore


@dataclass
class SweepReport:
    """What a sweep did; ``overhead`` is wall time over time spent in timed regions."""

    run_id: str
    dataset: str
    device_key: str
    planned: int
    skipped: int = 0
    left_by_time_budget: int = 0  # cases not started because the sweep's time budget ended
    statuses: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    timed_s: float = 0.0
    rows: list[Measurement] = field(default_factory=list)

    @property
    def measured(self) -> int:
        """Rows written, whatever their status."""
        return sum(self.statuses.values())

    @property
    def overhead(self) -> float | None:
        """Wall time over timed time (None before anything was timed)."""
        return self.wall_s / self.timed_s if self.timed_s > 0 else None


def unique_cases(cases: Sequence[Case]) -> list[Case]:
    """Cases with repeated configurations removed (first kept, order preserved)."""
    seen: set[str] = set()
    out = []
    for case in cases:
        cid = case_config_id(case)
        if cid not in seen:
            seen.add(cid)
            out.append(case)
    return out


def run_sweep(cases: Sequence[Case], store: ProfileStore, ctx: RunContext, *, resume: bool = True,
              time_budget_s: float | None = None,
              on_start: Callable[[int], None] | None = None,
              on_row: Callable[[Measurement], None] | None = None) -> SweepReport:
    """Measure every case not yet in ``store`` for this device; each row is saved at once.

    With ``time_budget_s``, no case starts after the budget has passed; the cases
    left are counted in the report and a later run resumes them.
    """
    start = time.perf_counter()
    # settings that only apply on some devices (cuDNN's autotuner) drop out elsewhere,
    # which can make two cases one
    cases = unique_cases([c.for_device(ctx.device.kind) for c in cases])
    device_key = ctx.device.key
    done = {cid for dev, cid in store.measured_keys(device_key)} if resume else set()
    todo = [c for c in cases if case_config_id(c) not in done]
    report = SweepReport(run_id=ctx.run_id, dataset=str(store.root), device_key=device_key,
                         planned=len(cases), skipped=len(cases) - len(todo))
    if on_start is not None:
        on_start(len(todo))
    try:
        for i, case in enumerate(todo):
            if time_budget_s is not None and time.perf_counter() - start >= time_budget_s:
                report.left_by_time_budget = len(todo) - i
                break
            row, timing = measure_case(case, ctx)
            store.append([row])
            report.statuses[row.status] += 1
            report.rows.append(row)
            if timing is not None:
                report.timed_s += timing.timed_s
            if row.energy_window_s:
                report.timed_s += row.energy_window_s
            if on_row is not None:
                on_row(row)
    finally:
        store.compact(ctx.run_id)
        report.wall_s = time.perf_counter() - start
    return report
