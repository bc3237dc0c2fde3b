"""estimate --best-config (and its alias --best-tile) and train --adapt, on small sweeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from synthetic_rows import rows_with_energy  # tests/ is on sys.path (rootdir import mode)
from test_param_models import _sweep  # tests/ is on sys.path (rootdir import mode)

from perfscope.errors import InvalidInputError
from perfscope.workflows.best_config import best_config
from perfscope.workflows.config_space import parse_params, parse_space

SHIPPED = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "kernel_tuner" / "dedispersion_milo"
GIVEN = {"block_size_x": 1, "block_size_y": 32, "tile_size_x": 4}


def _tunables(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "implementation"}


def _bundle_of(rows, out: Path, trees: int = 20) -> Path:
    """A bundle as `perfscope train` writes it for parameter rows (few trees: fast)."""
    from perfscope.models.groups import parameter_groups
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.param_forest import ParameterForestModel
    from perfscope.models.param_space import observed_spaces
    from perfscope.models.persistence import save_bundle

    wrapper = ConformalWrapper(ParameterForestModel(n_estimators=trees), n_splits=3,
                               groups=lambda frame: parameter_groups(frame, ["block_size_x", "block_size_y"]))
    return save_bundle(out, {"param_forest": wrapper.fit(rows)}, rows=rows,
                       metadata={"parameter_spaces": observed_spaces(rows)})


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweeps")
    tables = [_sweep(tmp, name, speed) for name, speed in
              (("NVIDIA RTX A4000", 2.0), ("NVIDIA RTX A6000", 1.0), ("AMD Radeon PRO W6600", 3.0))]
    return pa.concat_tables(tables, promote_options="default").to_pandas()


@pytest.fixture(scope="module")
def model(sweeps, tmp_path_factory):
    return _bundle_of(sweeps, tmp_path_factory.mktemp("model") / "model")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "perfscope", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


def test_declared_spaces_and_given_parameters_parse_or_fail_in_one_line():
    assert parse_space("block_size_x=16,32;block_size_y=1,2.5,wide") == {"block_size_x": [16, 32],
                                                                          "block_size_y": [1, 2.5, "wide"]}
    assert parse_params("block_size_x=32, block_size_y=8") == {"block_size_x": 32, "block_size_y": 8}
    for bad in ("block_size_x", "block_size_x=", "=1,2", "a=1,,2", "", "a=1;a=2", "2x=1"):
        with pytest.raises(InvalidInputError, match="--space"):
            parse_space(bad)
    with pytest.raises(InvalidInputError, match="--params"):
        parse_params("block_size_x")


def test_the_best_of_the_space_kept_at_train_time_is_the_models_minimum(sweeps, model):
    from perfscope.models.persistence import load_bundle

    r = best_config("stencil", "NVIDIA RTX A6000", model=model, params=GIVEN)
    assert r["space"] == {"source": "bundle", "n_candidates": 54, "n_unobserved": 0,
                          "parameters": ["block_size_x", "block_size_y", "tile_size_x"]}
    one = sweeps[sweeps["device_name"] == "NVIDIA RTX A6000"].reset_index(drop=True)
    predicted = load_bundle(model)["param_forest"].predict(one)
    best = one.iloc[int(np.argmin(predicted))]
    names = ("block_size_x", "block_size_y", "tile_size_x")
    assert _tunables(r["best"]["config"]) == {f: int(best[f"param_{f}"]) for f in names}
    assert r["best"]["latency_s"] == pytest.approx(predicted.min())
    assert r["best"]["latency_low_s"] <= r["best"]["latency_s"] <= r["best"]["latency_high_s"]
    assert _tunables(r["given"]["config"]) == GIVEN and r["gain_over_given"] >= 1.0
    assert r["top"][0]["config"] == r["best"]["config"] and len(r["top"]) == 5
    assert r["measured"] is None  # no --data: no measurements to judge the pick


def test_regret_is_the_measured_time_of_the_pick_over_the_measured_best(sweeps, model):
    r = best_config("stencil", "A4000", model=model, data=sweeps)
    assert r["device_key"] == sweeps.loc[sweeps["device_name"] == "NVIDIA RTX A4000", "device_key"].iloc[0]
    mine = sweeps[sweeps["device_name"] == "NVIDIA RTX A4000"]
    times = {(row.param_block_size_x, row.param_block_size_y, row.param_tile_size_x): row.time_median_ms / 1e3
             for row in mine.itertuples()}
    pick = r["best"]["config"]
    chosen = times[(pick["block_size_x"], pick["block_size_y"], pick["tile_size_x"])]
    m = r["measured"]
    assert m["n_configurations"] == 54 and m["chosen_time_s"] == pytest.approx(chosen)
    assert m["best_time_s"] == pytest.approx(min(times.values()))
    assert m["regret"] == pytest.approx(chosen / min(times.values())) and m["regret"] >= 1.0


def test_a_declared_space_is_searched_whole_and_must_name_known_parameters(model):
    r = best_config("stencil", "NVIDIA RTX A6000", model=model,
                    space=parse_space("block_size_x=2,4,8;block_size_y=64,128"), params={"tile_size_x": 1})
    assert r["space"]["source"] == "declared" and r["space"]["n_candidates"] == 6
    assert r["space"]["n_unobserved"] == 0 and r["best"]["config"]["tile_size_x"] == 1
    with pytest.raises(InvalidInputError, match="nope"):
        best_config("stencil", "NVIDIA RTX A6000", model=model, space={"nope": [1, 2]})
    with pytest.raises(InvalidInputError, match="tile_size_x unset"):
        best_config("stencil", "NVIDIA RTX A6000", model=model, space={"block_size_x": [3], "block_size_y": [32]})


def test_an_incomplete_configuration_is_refused_or_ranked_without_comparing(model):
    from perfscope.dashboards.adapters import run_estimate
    from perfscope.workflows.estimate import estimate_with_best_config

    with pytest.raises(InvalidInputError, match="block_size_y, tile_size_x unset"):
        estimate_with_best_config("stencil", "NVIDIA RTX A6000", model=model, params={"block_size_x": 1})
    ranked = estimate_with_best_config("stencil", "NVIDIA RTX A6000", model=model, params={"block_size_x": 1},
                                       rank_when_incomplete=True)
    whole = best_config("stencil", "NVIDIA RTX A6000", model=model)
    assert ranked["best_config"]["best"] == whole["best"] and ranked["best_config"]["given"] is None
    assert "incomplete (leaves block_size_y, tile_size_x unset" in ranked["given_note"]
    page = run_estimate("stencil", "NVIDIA RTX A6000", "fp32", {"param_block_size_x": 1}, model=model,
                        best_config=True)  # what the dashboard's Estimate page asks
    assert page.ok and page.result == ranked


def test_the_cli_alias_the_bad_space_and_the_roofline_fallback(model):
    common = ["estimate", "stencil", "--device", "NVIDIA RTX A6000", "--model", model,
              "--params", "block_size_x=1,block_size_y=32,tile_size_x=4", "--json"]
    new, old = _cli(*common, "--best-config"), _cli(*common, "--best-tile")
    assert new.returncode == 0 and old.returncode == 0, new.stderr + old.stderr
    assert json.loads(new.stdout)["best_config"]["best"] == json.loads(old.stdout)["best_config"]["best"]
    text = _cli(*common[:-1], "--best-config")
    assert text.returncode == 0 and "best config block_size_x=" in text.stdout and "over the given" in text.stdout
    bad = _cli(*common, "--best-config", "--space", "block_size_x=1,2;block_size_y")
    assert bad.returncode == 2 and "--space" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    fallback = _cli("estimate", "gemm", "--m", 64, "--n", 64, "--k", 64, "--device", "h100-sxm", "--best-config")
    assert fallback.returncode == 2 and "cannot rank configurations" in fallback.stderr
    assert len(fallback.stderr.strip().splitlines()) == 1


def test_best_tile_on_gemm_still_prints_the_best_tile(tmp_path, monkeypatch):
    from test_dashboard_figures import H100_KEY, dashboard_rows

    from perfscope.models.forest import ForestModel
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.persistence import save_bundle
    from perfscope.schema import rows_to_table

    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))
    rows = rows_to_table(dashboard_rows()).to_pandas()
    ok = rows[(rows["status"] == "ok") & (rows["device_key"] == H100_KEY)].reset_index(drop=True)
    forest = ConformalWrapper(ForestModel(n_estimators=8), n_splits=3).fit(ok)
    path = save_bundle(tmp_path / "model", {"forest": forest}, rows=ok)
    args = ["estimate", "gemm", "--m", 2048, "--n", 2048, "--k", 2048, "--dtype", "bf16", "--device", "h100-sxm",
            "--model", path, "--implementation", "triton.matmul", "--best-tile"]
    run = _cli(*args, "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    tile = result["best_tile"]
    assert {"tile_m", "tile_n", "tile_k", "implementation", "latency_s", "gain_over_default"} <= set(tile)
    assert tile["latency_s"] == pytest.approx(result["best_config"]["best"]["latency_s"])
    assert result["best_config"]["space"]["source"] == "tiles"
    assert "best tile" in _cli(*args).stdout
    with pytest.raises(InvalidInputError, match="no parameter forest"):  # the physics forest ranks tiles only
        best_config("stencil", "h100-sxm", model=path, space={"block_size_x": [1, 2]})


def test_adapting_to_a_new_gpu_survives_save_and_load(sweeps, tmp_path):
    from perfscope.models.adaptation import adapt_bundle
    from perfscope.models.persistence import load_bundle

    base = sweeps[sweeps["device_name"] != "AMD Radeon PRO W6600"].reset_index(drop=True)
    new = sweeps[sweeps["device_name"] == "AMD Radeon PRO W6600"].reset_index(drop=True)
    path = _bundle_of(base, tmp_path / "model")
    key = new["device_key"].iloc[0]
    before = load_bundle(path)["param_forest"].predict(new)
    report = adapt_bundle(path, new, sample=20, seed=1)
    assert report["models"] == ["param_forest"] and report["devices"] == [key] and report["n_rows"] == 20
    loaded = load_bundle(path)
    assert loaded.metadata["adaptation"]["n_rows"] == 20
    inner = loaded["param_forest"].estimator_
    assert key in inner.scales_ and key in inner.residual_forests_ and key in inner.mixtures_  # saved per device
    after = loaded["param_forest"].predict(new)
    truth = new["time_median_ms"].to_numpy() / 1e3
    assert np.median(np.abs(after / truth - 1)) < np.median(np.abs(before / truth - 1))
    assert np.median(np.abs(after / truth - 1)) < 0.10
    again = adapt_bundle(path, new, sample=20, seed=1, out_dir=tmp_path / "copy")
    assert again["n_rows"] == 20
    np.testing.assert_allclose(load_bundle(tmp_path / "copy")["param_forest"].predict(new), after)


def test_a_bundle_without_an_adaptable_model_says_so(tmp_path, sweeps):
    from perfscope.models.adaptation import adapt_bundle
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.persistence import save_bundle
    from perfscope.models.roofline_model import LogLinearModel

    rows = rows_with_energy()
    path = save_bundle(tmp_path / "m", {"log_linear": ConformalWrapper(LogLinearModel(), n_splits=3).fit(rows)})
    with pytest.raises(InvalidInputError, match="cannot adapt"):
        adapt_bundle(path, sweeps)


@pytest.mark.slow
def test_train_adapt_on_the_cli_saves_a_bundle_that_predicts_the_new_gpu(tmp_path, sweeps):
    from perfscope.models.groups import ParameterGroups
    from perfscope.models.persistence import load_bundle
    from perfscope.store import ProfileStore

    base = ProfileStore(tmp_path / "base", create=True)
    for name, speed in (("NVIDIA RTX A4000", 2.0), ("NVIDIA RTX A6000", 1.0)):
        base.append_table(_sweep(tmp_path, name, speed))
    ProfileStore(tmp_path / "new", create=True).append_table(_sweep(tmp_path, "AMD Radeon PRO W6600", 3.0))
    run = _cli("train", tmp_path / "base", "--out", tmp_path / "model", "--adapt", tmp_path / "new",
               "--adapt-sample", 12, "--json", "-q")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["adaptation"]["n_rows"] == 12
    key = sweeps.loc[sweeps["device_name"] == "AMD Radeon PRO W6600", "device_key"].iloc[0]
    saved = load_bundle(tmp_path / "model")["param_forest"]
    assert key in saved.estimator_.scales_
    assert isinstance(saved.groups, ParameterGroups)  # the adaptation folds group as training did


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "A100.json.gz").is_file(), reason="the shipped Kernel Tuner caches are not here")
def test_best_config_on_a_shipped_dedispersion_cache(tmp_path):
    from perfscope.importers import import_kernel_tuner

    rows = import_kernel_tuner(SHIPPED / "A100.json.gz", t1=SHIPPED / "dedispersion_milo.T1.json").to_pandas()
    rows = rows[(rows["param_tile_size_x"] <= 2) & (rows["param_loop_unroll_factor_channel"] == 0)
                & (rows["param_block_size_y"] <= 64)].reset_index(drop=True)
    assert 200 <= len(rows) <= 2000
    path = _bundle_of(rows, tmp_path / "model")
    r = best_config("dedispersion_kernel", "NVIDIA A100-PCIE-40GB", model=path, data=rows)
    assert r["problem"] == {"problem_size": [25000, 2048, 1]} and r["space"]["n_candidates"] == len(rows)
    assert 1.0 <= r["measured"]["regret"] < 1.2  # judged on the training rows: a check of the plumbing
    assert r["best"]["latency_low_s"] <= r["best"]["latency_s"] <= r["best"]["latency_high_s"]


def test_the_readme_one_configuration_estimate_on_a_shipped_cache(tmp_path):
    """`perfscope estimate <family> --device W6600 --model M --params ...` as the README writes it, on the
    W6600 cache as shipped: the parameters it leaves out take the observed defaults, the forest answers."""
    from perfscope.importers import import_kernel_tuner

    rows = import_kernel_tuner(SHIPPED / "W6600.json.gz", t1=SHIPPED / "dedispersion_milo.T1.json").to_pandas()
    rows = rows[(rows["param_tile_size_x"] <= 2) & (rows["param_loop_unroll_factor_channel"] == 0)
                & (rows["param_block_size_y"] <= 64)].reset_index(drop=True)
    path = _bundle_of(rows, tmp_path / "kt-model")
    params = "block_size_x=32,block_size_y=32,tile_size_x=1,tile_size_y=1,tile_stride_x=0,tile_stride_y=0"
    run = _cli("estimate", "dedispersion_kernel", "--device", "W6600", "--model", path, "--params", params, "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["method"].startswith("model:param_forest") and out["device_key"] == "rocm-amd-radeon-pro-w6600"
    assert out["config"]["block_size_z"] == 1 and out["config"]["loop_unroll_factor_channel"] == 0
    assert out["latency_low_s"] <= out["latency_s"] <= out["latency_high_s"]
    measured = rows[(rows["param_block_size_x"] == 32) & (rows["param_block_size_y"] == 32)
                    & (rows["param_tile_size_x"] == 1) & (rows["param_tile_size_y"] == 1)
                    & (rows["param_tile_stride_x"] == 0) & (rows["param_tile_stride_y"] == 0)]["time_median_ms"]
    assert len(measured) == 1 and abs(out["latency_s"] / (measured.iloc[0] / 1e3) - 1) < 0.5  # a training row
