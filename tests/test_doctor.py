"""``perfscope doctor`` on this machine and against the fake CUDA, NVML and powercap."""

from __future__ import annotations

import json
import subprocess
import sys

from perfscope.doctor import run_doctor
from perfscope.testing import FakeClock, FakeCuda, FakeDeviceProperties, FakeGpu, FakeNvml, FakePowercap


def _fakes(*gpus: FakeGpu, available: bool = True):
    clock = FakeClock()
    cuda = FakeCuda(clock, [FakeDeviceProperties(name=g.name) for g in gpus] or None, available=available)
    return cuda, FakeNvml(list(gpus), clock=clock)


def _by_name(report):
    return {c.name: c for c in report.checks}


def test_a_healthy_fake_gpu_collects_with_events_and_the_energy_counter(tmp_path):
    cuda, nvml = _fakes(FakeGpu(name="NVIDIA H100 80GB HBM3", power_limit_w=700.0))
    report = run_doctor(cuda=cuda, nvml=nvml, powercap_root=tmp_path / "none")
    checks = _by_name(report)
    assert report.can_collect
    assert report.collect["timing_method"] == "cuda-events" and report.collect["energy_method"] == "nvml-counter"
    assert checks["gpu 0"].status == "ok" and "NVIDIA H100 80GB HBM3" in checks["gpu 0"].detail
    assert checks["nvml"].status == "ok" and "gpu 0 supported" in checks["nvml"].detail
    assert "driver 550.54.15" in checks["cuda"].detail
    assert checks["power limit"].detail == "gpu 0: 700 W"
    assert "persistence on" in checks["clocks"].detail and checks["clocks"].status == "ok"
    assert checks["rapl"].status == "warn"
    assert set(checks) >= {"torch", "cuda", "gpu 0", "nvml", "rapl", "triton", "clocks", "power limit", "collect"}


def test_no_energy_counter_falls_back_to_sampled_power_and_warns(tmp_path):
    cuda, nvml = _fakes(FakeGpu(energy_counter_supported=False, persistence_mode=0))
    report = run_doctor(cuda=cuda, nvml=nvml, powercap_root=tmp_path / "none")
    checks = _by_name(report)
    assert report.can_collect and report.collect["energy_method"] == "nvml-sampled"
    assert checks["nvml"].status == "warn" and "not supported" in checks["nvml"].detail
    assert checks["clocks"].status == "warn" and "persistence off" in checks["clocks"].detail


def test_a_cpu_only_machine_collects_on_the_cpu_with_rapl_when_present(tmp_path):
    FakePowercap(tmp_path / "powercap").add_package(0)
    cuda, nvml = _fakes(available=False)
    nvml.library_present = False
    report = run_doctor(cuda=cuda, nvml=nvml, powercap_root=tmp_path / "powercap")
    checks = _by_name(report)
    assert report.can_collect and report.collect["device_kind"] == "cpu"
    assert report.collect["energy_method"] == "rapl" and checks["rapl"].status == "ok"
    assert checks["cuda"].status == "warn" and checks["nvml"].status == "warn"


def test_asking_for_a_gpu_or_meter_that_is_absent_cannot_collect(tmp_path):
    cuda, nvml = _fakes(available=False)
    report = run_doctor("cuda", cuda=cuda, nvml=nvml, powercap_root=tmp_path / "none")
    assert not report.can_collect and _by_name(report)["collect"].status == "fail"
    report = run_doctor("cpu", "rapl", cuda=cuda, nvml=nvml, powercap_root=tmp_path / "none")
    assert not report.can_collect and "RAPL" in _by_name(report)["collect"].detail


def _doctor(*args):
    return subprocess.run([sys.executable, "-m", "perfscope", "doctor", *args], capture_output=True, text=True,
                          timeout=120)


def test_doctor_on_this_machine_prints_one_line_per_check_and_exits_0():
    done = _doctor()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "collecting can proceed"
    assert {line.split()[0] for line in lines[:-1]} <= {"ok", "warn", "fail"}
    names = [line[6:24].strip() for line in lines[:-1]]
    assert names[0] == "torch" and names[-1] == "collect" and "triton" in names and "rapl" in names


def test_doctor_json_is_strict_and_exit_1_when_collecting_cannot_proceed():
    done = _doctor("--json", "--device", "cuda:7")
    payload = json.loads(done.stdout, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
    assert done.returncode == 1 and payload["can_collect"] is False
    assert payload["checks"][-1]["name"] == "collect" and payload["checks"][-1]["status"] == "fail"
