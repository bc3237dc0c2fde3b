"""Estimates: the roofline fallback, a trained bundle, the CLI and its light import path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from perfscope.errors import InvalidInputError
from perfscope.workflows.estimate import estimate, estimate_many


def test_the_roofline_fallback_says_what_it_assumed():
    r = estimate("gemm", "h100-sxm", "bf16", m=4096, n=4096, k=4096)
    assert r["device_source"] == "spec" and "roofline fallback" in r["method"] and "assumed" in r["method"]
    assert r["bound"] == "compute"
    assert r["latency_low_s"] == pytest.approx(r["bound_time_s"])
    assert r["latency_low_s"] <= r["latency_s"] <= r["latency_high_s"]
    assert r["flops"] == 2 * 4096**3
    assert r["energy_method"].startswith("estimate-tdp") and r["power_w"] == pytest.approx(700)
    assert r["carbon_gco2e"] == pytest.approx(r["energy_j"] / 3.6e6 * r["carbon_intensity_gco2e_per_kwh"])
    assert "World" in r["carbon_intensity_source"]


def test_bounds_follow_the_regime():
    tiny = estimate("gemm", "h100-sxm", "fp16", m=16, n=16, k=16)
    skinny = estimate("gemm", "h100-sxm", "fp16", m=8192, n=8192, k=1)
    assert tiny["bound"] == "launch" and skinny["bound"] == "memory"
    conv = estimate("conv", "a100-80gb-sxm", "fp16", conv_n=32, conv_c=64, conv_h=56, conv_w=56, conv_k=64,
                    conv_r=3, conv_s=3, pad_h=1, pad_w=1)
    assert conv["flops"] == 2 * 32 * 64 * 56 * 56 * 64 * 9
    attention = estimate("attention", "l4", "fp16", batch=1, heads=8, seq_q=1024, seq_k=1024, head_dim=64, causal=True)
    assert attention["flops"] == 4 * 8 * 1024 * 1024 * 64 // 2


def test_vectorised_estimates_match_single_ones_and_grow_with_size():
    sizes = np.arange(256, 8192 + 1, 256)
    frame = estimate_many("gemm", {"m": sizes, "n": sizes, "k": sizes}, "h100-sxm", dtype="fp16")
    assert len(frame) == len(sizes) and np.all(np.diff(frame["bound_time_s"]) >= 0)
    single = estimate("gemm", "h100-sxm", "fp16", m=1024, n=1024, k=1024)
    assert frame.loc[3, "latency_s"] == pytest.approx(single["latency_s"])


@pytest.mark.parametrize("kwargs,message", [
    (dict(m=4, n=4), "needs k"),
    (dict(m=4, n=4, k=-1), "positive"),
    (dict(m=4, n=4, k=4, dtype="fp64"), "unknown dtype"),
])
def test_bad_configurations_are_user_errors(kwargs, message):
    dtype = kwargs.pop("dtype", "fp32")
    with pytest.raises(InvalidInputError, match=message):
        estimate("gemm", "h100-sxm", dtype, **kwargs)


def test_best_tile_without_a_model_is_refused_with_the_reason():
    with pytest.raises(InvalidInputError, match="needs a model"):
        estimate("gemm", "h100-sxm", "fp16", m=512, n=512, k=512, best_tile=True)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "perfscope", "estimate", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_cli_json_and_bad_arguments_exit_2():
    run = _cli("gemm", "--m", 4096, "--n", 4096, "--k", 4096, "--dtype", "bf16", "--device", "h100-sxm", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["bound"] == "compute"
    for args, message in ((["gemm", "--m", 4, "--device", "h100-sxm"], "needs n"),
                          (["gemm", "--m", 4, "--n", 4, "--k", 4, "--c", 3, "--device", "h100-sxm"], "do not apply"),
                          (["gemm", "--m", 4, "--n", 4, "--k", 4, "--device", "tpu-v9"], "unknown device"),
                          (["fft", "--m", 4, "--device", "h100-sxm"], "unknown kernel family")):
        bad = _cli(*args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


def test_the_estimate_command_imports_neither_torch_nor_dash():
    code = ("import sys; sys.argv = ['perfscope', 'estimate', 'gemm', '--m', '64', '--n', '64', '--k', '64', "
            "'--device', 'l4', '--json']\nfrom perfscope.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'triton', 'dash', 'plotly') if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_a_trained_bundle_gives_intervals_and_a_best_tile(tmp_path, monkeypatch):
    """Real CPU measurements (numba tiled GEMM) -> calibrate -> train -> estimate."""
    from perfscope.collectors.calibrate import calibrate
    from perfscope.collectors.cpu_tiled import cases_from_axes
    from perfscope.collectors.protocol import RunContext
    from perfscope.collectors.sweep import run_sweep
    from perfscope.devices.cpu import CpuDevice
    from perfscope.devices.registry import save_profile
    from perfscope.meters.null import NullMeter
    from perfscope.store import ProfileStore
    from perfscope.timing import TimingPolicy
    from perfscope.workflows.train import train

    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))
    policy = TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05)
    device = CpuDevice()
    save_profile(calibrate(device, dtypes=["fp32"], policy=policy, gemm_sizes={"fp32": 256}, copy_bytes=2**22))
    cases = cases_from_axes({"sizes": [32, 48, 64, 96, 128], "tile": [1, 4, 16, 64]})
    store = ProfileStore(tmp_path / "ds", create=True)
    run_sweep(cases, store, RunContext(run_id="r", device=device, meter=NullMeter("test"), policy=policy))
    train(tmp_path / "ds", out_dir=tmp_path / "model")
    r = estimate("gemm", device.key, "fp32", model=tmp_path / "model", best_tile=True, m=80, n=80, k=80,
                 implementation="numba.tiled", tile_m=1, tile_n=1, tile_k=1)
    assert r["method"].startswith("model:forest") and r["device_source"] == "calibrated"
    assert r["latency_low_s"] <= r["latency_s"] <= r["latency_high_s"]
    best = r["best_tile"]
    assert best["implementation"] == "numba.tiled"
    # the search returns the model's own fastest candidate (which tile wins is the machine's
    # business: on a loaded 2-core machine small tiles can tie)
    from perfscope.workflows.estimate import CPU_TILE_CANDIDATES
    predicted = {t: estimate("gemm", device.key, "fp32", model=tmp_path / "model", m=80, n=80, k=80,
                             implementation="numba.tiled", tile_m=t[0], tile_n=t[1], tile_k=t[2])["latency_s"]
                 for t in CPU_TILE_CANDIDATES}
    assert best["latency_s"] == pytest.approx(min(predicted.values()), rel=1e-9)
    assert predicted[(best["tile_m"], best["tile_n"], best["tile_k"])] == pytest.approx(best["latency_s"], rel=1e-9)
    assert best["gain_over_default"] == pytest.approx(r["latency_s"] / best["latency_s"], rel=1e-9)
    assert best["gain_over_default"] >= 1 - 1e-9
    # the bundle's own space of tiles: the parameter forest does not see tiles, so the
    # forest ranks them rather than returning a tie of every candidate
    from perfscope.workflows.estimate import estimate_with_best_config
    answer = estimate_with_best_config("gemm", device.key, "fp32", model=tmp_path / "model",
                                       shape={"m": 80, "n": 80, "k": 80}, implementation="numba.tiled")
    searched = answer["best_config"]
    assert searched["model"] == "forest"
    assert searched["best"]["n_tied"] < searched["space"]["n_candidates"]
