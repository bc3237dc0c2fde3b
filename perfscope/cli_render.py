"""Terminal output of the CLI (rich tables and progress on stderr, or JSON on stdout)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from perfscope import strict_json
from perfscope.errors import StoreError


class _Progress:
    """Adapter between a sweep's callbacks and a rich progress bar (or nothing)."""

    def __init__(self, bar: Any = None) -> None:
        self._bar = bar
        self._task = None

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("measuring", total=total)

    def advance(self, row: Any) -> None:
        if self._bar is not None and self._task is not None:
            label = _shape_label(row)
            self._bar.update(self._task, advance=1, description=f"{label} {row.dtype} [{row.status}]")


class Renderer:
    """Renders results for humans (rich) or scripts (``--json``); ``quiet`` hides progress."""

    def __init__(self, *, quiet: bool, as_json: bool) -> None:
        from rich.console import Console  # ~80 ms; loaded only when something is drawn

        self.quiet = quiet
        self.as_json = as_json
        self.err = Console(stderr=True)
        self.out = Console(highlight=False)

    def note(self, message: str) -> None:
        """Print a note on stderr (not when quiet)."""
        if not self.quiet:
            self.err.print(f"[yellow]note:[/yellow] {message}")

    @contextlib.contextmanager
    def progress(self) -> Iterator[_Progress]:
        """A progress bar on stderr (a silent one when quiet or writing JSON)."""
        if self.quiet or self.as_json:
            yield _Progress()
            return
        # rich: ~80 ms; loaded only when something is drawn
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=self.err, transient=True) as bar:
            yield _Progress(bar)

    def sweep_summary(self, report: Any, energy_method: str, energy_note: str | None = None,
                      energy_is_estimate: bool = False) -> None:
        """Print what a sweep measured: a table, or JSON."""
        summary = {
            "run_id": report.run_id,
            "dataset": report.dataset,
            "device": report.device_key,
            "planned": report.planned,
            "skipped_already_measured": report.skipped,
            "measured": report.measured,
            "statuses": dict(report.statuses),
            "left_by_time_budget": report.left_by_time_budget,
            "left_to_other_collectors": report.left_to_others,
            "energy_method": energy_method,
            "energy_is_estimate": energy_is_estimate,
            "wall_s": round(report.wall_s, 3),
            "timed_s": round(report.timed_s, 3),
            "overhead": None if report.overhead is None else round(report.overhead, 3),
        }
        if self.as_json:
            print(strict_json.dumps(summary))
            return
        if self.quiet:
            return
        from rich.table import Table  # ~80 ms; loaded only when something is drawn

        table = Table(title=f"run {report.run_id} on {report.device_key}", title_justify="left")
        for col in ("configuration", "dtype", "status", "median ms", "±CI %", "GFLOP/s", "energy J/call"):
            table.add_column(col, justify="right" if col not in ("configuration", "dtype", "status") else "left")
        for row in report.rows:
            table.add_row(
                _shape_label(row), row.dtype, row.status,
                _fmt(row.time_median_ms, ".4g"),
                _fmt(None if row.time_ci_rel is None else 100 * row.time_ci_rel, ".2g"),
                _fmt(None if row.achieved_flops_per_s is None else row.achieved_flops_per_s / 1e9, ".4g"),
                _fmt(row.energy_gross_j, ".3g") + (" (est.)" if row.energy_is_estimate and row.energy_gross_j else ""),
            )
        if report.rows:
            self.out.print(table)
        reasons: dict[tuple[str, str], int] = {}
        for row in report.rows:
            if row.status != "ok":
                reasons[(row.status, row.reason or "")] = reasons.get((row.status, row.reason or ""), 0) + 1
        for (status, reason), count in sorted(reasons.items()):
            self.out.print(f"{status} ({count} rows): {reason}")
        energy = energy_method if energy_method != "none" else f"none ({energy_note or 'turned off'})"
        if energy_is_estimate:
            energy += " (an estimate, not a measurement)"
        self.out.print(
            f"{report.measured} measured "
            f"({', '.join(f'{k} {v}' for k, v in sorted(report.statuses.items())) or 'none'}), "
            f"{report.skipped} already in the dataset"
            + (f", {report.left_by_time_budget} left by the time budget (run again to resume)"
               if report.left_by_time_budget else "")
            + (f", {report.left_to_others} measured by another collector running at once"
               if report.left_to_others else "")
            + f"; energy: {energy}; "
            f"wall {report.wall_s:.1f} s, timed {report.timed_s:.1f} s"
            + (f", overhead x{report.overhead:.2f}" if report.overhead else "")
            + f"\ndataset: {report.dataset}")

    def skipped_files(self, problems: Sequence[Any], *, strict: bool = False) -> None:
        """One warning per skipped file (``PATH: reason``) on stderr; with ``strict``, then
        ``StoreError`` (exit 2) if any file was skipped."""
        for problem in problems:
            self.err.print(f"[yellow]warning:[/yellow] skipped {problem}", highlight=False, soft_wrap=True)
        if strict and problems:
            raise StoreError(f"--strict: {len(problems)} file(s) skipped (see the warnings above)")

    def dataset_summary(self, dataset: Path, groups: list[dict[str, Any]], problems: list[Any]) -> None:
        """Print the summary of a dataset: a table, or JSON; skipped files are warned about."""
        self.skipped_files(problems)
        if self.as_json:
            print(strict_json.dumps({"dataset": str(dataset), "groups": groups,
                              "skipped_files": [{"path": str(p.path), "reason": p.reason} for p in problems]}))
            return
        from rich.table import Table  # ~80 ms; loaded only when something is drawn

        table = Table(title=f"{dataset}", title_justify="left")
        for col in ("device", "kernel", "dtype", "rows", "ok", "other", "noisy", "median ms", "max GFLOP/s", "energy"):
            table.add_column(col)
        for g in groups:
            other = ", ".join(f"{k} {v}" for k, v in sorted(g["statuses"].items()) if k != "ok")
            span = (f"{g['time_median_ms_min']:.3g}–{g['time_median_ms_max']:.3g}"
                    if g["time_median_ms_min"] is not None else "-")
            table.add_row(g["device"], g["kernel"], g["dtype"], str(g["rows"]), str(g["ok"]), other or "-",
                          str(g["noisy"]), span, _fmt(g["gflops_per_s_max"], ".4g"), ", ".join(g["energy_methods"]))
        self.out.print(table)
        self.out.print(f"{sum(g['rows'] for g in groups)} rows in {len(groups)} groups")


def _shape_label(row: Any) -> str:
    """A short human label of a row's configuration."""
    if row.kernel == "gemm":
        label = f"{row.batch}x{row.m}x{row.n}x{row.k}" if row.batch and row.batch > 1 else f"{row.m}x{row.n}x{row.k}"
    elif row.kernel == "conv":
        label = (f"conv n{row.conv_n} c{row.conv_c} {row.conv_h}x{row.conv_w} k{row.conv_k} "
                 f"{row.conv_r}x{row.conv_s}/{row.stride_h}"
                 + (f" g{row.groups}" if row.groups and row.groups > 1 else "")
                 + (" cl" if row.layout == "channels_last" else ""))
    elif row.kernel == "attention":
        label = (f"attn b{row.batch} h{row.heads}/{row.kv_heads} {row.seq_q}x{row.seq_k} d{row.head_dim}"
                 + (" causal" if row.causal else "") + (f" {row.backend}" if row.backend else ""))
    else:
        label = row.kernel
    if row.implementation and not row.implementation.startswith("torch"):
        label += f" [{row.implementation}"
        if row.tile_m is not None:
            label += f" {row.tile_m}x{row.tile_n}x{row.tile_k}"
        label += "]"
    return label


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
