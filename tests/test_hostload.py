from __future__ import annotations

import os
import time

import pytest

from perfscope.hostload import ForeignLoad
from perfscope.timing import TimingResult


def _write_stat(path, busy_ticks):
    # cpu user nice system idle iowait irq softirq
    path.write_text(f"cpu  {busy_ticks} 0 0 1000000 0 0 0\ncpu0 0 0 0 0 0 0 0\n")


def test_other_processes_share_of_the_cpus_over_a_window(tmp_path):
    stat = tmp_path / "stat"
    _write_stat(stat, 1000)
    load = ForeignLoad(proc_stat=stat)
    load.start()
    time.sleep(0.2)
    hz, cpus = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    _write_stat(stat, 1000 + round(0.2 * hz * cpus * 0.5))  # others kept half of every CPU busy
    assert load.share() == pytest.approx(0.5, abs=0.12)


def test_no_proc_stat_gives_no_figure(tmp_path):
    load = ForeignLoad(proc_stat=tmp_path / "absent")
    load.start()
    assert load.share() is None


def test_a_tight_median_on_a_contended_machine_is_still_noisy():
    samples = [1e-3] * 50
    quiet = TimingResult(samples_s=samples, calls_per_sample=1, warmup_s=0, timed_s=1, stopped_by="ci",
                         target_ci_rel=0.01, method="x", foreign_cpu_share=0.01)
    busy = TimingResult(samples_s=samples, calls_per_sample=1, warmup_s=0, timed_s=1, stopped_by="ci",
                        target_ci_rel=0.01, method="x", foreign_cpu_share=0.4)
    assert not quiet.noisy and busy.noisy


def test_a_window_shorter_than_the_tick_resolution_gives_no_figure(tmp_path):
    stat = tmp_path / "stat"
    _write_stat(stat, 1000)
    load = ForeignLoad(proc_stat=stat)
    load.start()
    _write_stat(stat, 1001)  # one tick within microseconds: not evidence of anything
    assert load.share() is None
