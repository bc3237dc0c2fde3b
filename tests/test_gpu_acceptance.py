"""``scripts/gpu-acceptance.sh`` against the fake CUDA and NVML: PASS/FAIL/SKIP per step."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPTS / "gpu_acceptance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_acceptance_script_passes_on_the_fakes():
    env = {**os.environ, "PERFSCOPE_ACCEPTANCE_FAKES": "1", "PYTHON": sys.executable}
    done = subprocess.run([str(SCRIPTS / "gpu-acceptance.sh")], capture_output=True, text=True, env=env, timeout=660)
    lines = done.stdout.strip().splitlines()
    verdicts = {line.split("  ", 1)[1].split(" (")[0]: line.split()[0] for line in lines}
    assert done.returncode == 0, done.stdout + done.stderr
    assert verdicts == {"doctor": "PASS", "calibrate": "SKIP", "sweep nvml-counter": "PASS",
                        "sweep nvml-sampled": "PASS", "energy windows": "PASS", "triton": "SKIP",
                        "harness vs torch.utils.benchmark": "PASS", "fp8": "SKIP", "all": "PASS"}
    assert "7 ok / 7 rows" in done.stdout  # gemm, conv and attention all measured with energy
    assert "median harness/torch.utils.benchmark 1.000" in done.stdout


def test_a_failing_step_prints_fail_and_the_run_goes_on(monkeypatch, capsys):
    module = _module()
    monkeypatch.setattr(module, "FAKES", True)

    def broken(rig):
        raise RuntimeError("the counter went backwards")

    def skipped(rig):
        raise module.Skip("not here")

    monkeypatch.setattr(module, "STEPS", [("doctor", module.step_doctor), ("broken", broken), ("skipped", skipped)])
    assert module.main() == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("PASS  doctor") and "cuda-events" in out[0]
    assert out[1].startswith("FAIL  broken") and "RuntimeError: the counter went backwards" in out[1]
    assert out[2].startswith("SKIP  skipped") and out[3].startswith("FAIL  all") and "1 step(s) failed" in out[3]


def test_without_a_gpu_every_step_fails_in_one_line(monkeypatch, capsys):
    module = _module()
    monkeypatch.setattr(module, "FAKES", False)
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert module.main() == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(module.STEPS) and all(line.startswith("FAIL  ") and "no CUDA device" in line for line in out)
