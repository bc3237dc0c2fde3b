"""Running a sweep: measure each case once into a store, resuming where a run stopped."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from perfscope.collectors.protocol import Case, RunContext, case_config_id, measure_case
from perfscope.schema import Measurement
from perfscope.store import ProfileStore
from perfscope.store_locks import Claim, ConfigClaims

log = logging.getLogger(__name__)

# how long a sweep waits, at its end, for a configuration another collector is measuring
CLAIM_WAIT_S = 600.0


@dataclass
class SweepReport:
    """What a sweep did; ``overhead`` is wall time over time spent in timed regions."""

    run_id: str
    dataset: str
    device_key: str
    planned: int
    skipped: int = 0
    left_by_time_budget: int = 0  # cases not started because the sweep's time budget ended
    left_to_others: int = 0  # cases a concurrent collector measured (or still held at the end)
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

    Collectors running at once into one dataset share the grid: each configuration is
    claimed before it is measured (``ProfileStore.claims``), a configuration another
    collector is measuring is put off and taken up at the end (once its claim is free:
    measured if that collector died first), and one it recorded is not measured again.
    """
    start = time.perf_counter()
    # settings that only apply on some devices (cuDNN's autotuner) drop out elsewhere,
    # which can make two cases one
    cases = unique_cases([c.for_device(ctx.device.kind) for c in cases])
    device_key = ctx.device.key
    claims = store.claims(device_key)  # before reading what is measured: nothing falls between
    done = {cid for dev, cid in store.measured_keys(device_key)} if resume else set()
    todo = [c for c in cases if case_config_id(c) not in done]
    report = SweepReport(run_id=ctx.run_id, dataset=str(store.root), device_key=device_key,
                         planned=len(cases), skipped=len(cases) - len(todo))
    log.info("sweep %s on %s: %d configuration(s), %d already in %s", ctx.run_id, device_key, len(cases),
             report.skipped, store.root)
    if on_start is not None:
        on_start(len(todo))

    def budget_left_s() -> float:
        return float("inf") if time_budget_s is None else time_budget_s - (time.perf_counter() - start)

    try:
        pending, first_pass = todo, True
        while pending:
            put_off: list[Case] = []
            for i, case in enumerate(pending):
                if budget_left_s() <= 0:
                    report.left_by_time_budget += len(pending) - i + len(put_off)
                    put_off = []
                    break
                wait_s = 0.0 if first_pass else min(CLAIM_WAIT_S, budget_left_s())
                claim = claims.claim(case_config_id(case), wait_s=wait_s)
                if isinstance(claim, Claim):
                    _measure_claimed(case, claim, store, ctx, report, on_row)
                elif claim == ConfigClaims.BUSY and first_pass:
                    put_off.append(case)
                else:  # recorded by another collector, or still held by it after the wait
                    report.left_to_others += 1
            pending, first_pass = put_off, False
    finally:
        store.compact(ctx.run_id)
        report.wall_s = time.perf_counter() - start
        log.info("sweep %s: %d measured in %.1f s (%s)", ctx.run_id, report.measured, report.wall_s,
                 ", ".join(f"{k} {v}" for k, v in sorted(report.statuses.items())) or "none")
    return report


def _measure_claimed(case: Case, claim: Claim, store: ProfileStore, ctx: RunContext, report: SweepReport,
                     on_row: Callable[[Measurement], None] | None) -> None:
    """Measure a claimed case, store its row, and release the claim (as done once stored)."""
    saved = False
    try:
        row, timing = measure_case(case, ctx)
        store.append([row])
        saved = True
    finally:
        claim.release(done=saved)
    report.statuses[row.status] += 1
    report.rows.append(row)
    log.debug("%s: %s%s", row.config_id, row.status, f" ({row.reason})" if row.reason else "")
    if timing is not None:
        report.timed_s += timing.timed_s
    if row.energy_window_s:
        report.timed_s += row.energy_window_s
    if on_row is not None:
        on_row(row)
