"""Few-shot on a new GPU: measured configurations are kept, and which k to measure."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_param_models import _sweep  # tests/ is on sys.path (rootdir import mode)

from perfscope.errors import InvalidInputError

NEW = "AMD Radeon PRO W6600"


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweeps")
    tables = [_sweep(tmp, name, speed) for name, speed in
              (("NVIDIA RTX A4000", 2.0), ("NVIDIA RTX A6000", 1.0), (NEW, 3.0))]
    return pa.concat_tables(tables, promote_options="default").to_pandas()


@pytest.fixture(scope="module")
def split(sweeps):
    base = sweeps[sweeps["device_name"] != NEW].reset_index(drop=True)
    new = sweeps[sweeps["device_name"] == NEW].reset_index(drop=True)
    return base, new


def _truth(rows: pd.DataFrame) -> np.ndarray:
    return rows["time_median_ms"].to_numpy() / 1e3


def test_choose_to_measure_takes_the_predicted_fastest_and_spreads_the_rest():
    from perfscope.models.few_shot import choose_to_measure

    predicted = np.arange(100, dtype=float)[::-1]  # position 99 is predicted fastest
    chosen = choose_to_measure(predicted, 8)
    assert len(chosen) == 8 and len(set(chosen)) == 8
    assert set(chosen) >= {99, 98, 97, 96, 95, 94}  # three quarters: the predicted fastest
    assert 0 in chosen  # the spread reaches the predicted slowest
    assert set(choose_to_measure(predicted, 8, explore_share=0.0)) == set(range(92, 100))
    taken = np.zeros(100, dtype=bool)
    taken[99] = True
    assert 99 not in choose_to_measure(predicted, 8, exclude=taken)
    assert sorted(choose_to_measure(np.array([3.0, np.nan, 1.0]), 10)) == [0, 1, 2]  # k beyond the space: all


def test_an_adapted_model_predicts_its_measured_configurations_as_measured(split, tmp_path):
    from perfscope.models.param_forest import ParameterForestModel
    from perfscope.models.persistence import load_bundle, save_bundle

    base, new = split
    model = ParameterForestModel(n_estimators=10).fit(base)
    measured = new.sample(12, random_state=0)
    model.adapt(measured)
    np.testing.assert_allclose(model.predict(measured), _truth(measured), rtol=1e-9)
    mask = model.measured_mask(new)
    assert mask.sum() == 12 and set(np.flatnonzero(mask)) == set(measured.index)
    fastest = new.loc[[new["time_median_ms"].idxmin()]]
    model.adapt(pd.concat([measured, fastest]))
    assert _truth(new)[np.argmin(model.predict(new))] == _truth(new).min()  # a measured best is picked
    save_bundle(tmp_path / "bundle", {"param_forest": model})
    loaded = load_bundle(tmp_path / "bundle")["param_forest"]
    np.testing.assert_allclose(loaded.predict(new), model.predict(new))
    assert loaded.measured_mask(new).sum() == 13


def test_adapt_to_chosen_measures_k_rows_in_batches_led_by_the_model(split):
    from perfscope.models.few_shot import adapt_to_chosen
    from perfscope.models.param_forest import ParameterForestModel

    base, new = split
    model = ParameterForestModel(n_estimators=10).fit(base)
    zero_shot_best = int(np.argmin(model.predict(new)))
    adapted, chosen = adapt_to_chosen(model, new, 10)
    assert len(chosen) == 10 and len(set(chosen)) == 10
    assert zero_shot_best in chosen  # the first batch measures the zero-shot pick
    assert adapted.measured_mask(new).sum() == 10
    _, all_rows = adapt_to_chosen(ParameterForestModel(n_estimators=10).fit(base), new, 500)
    assert len(all_rows) == len(new)


def test_adapt_bundle_lets_the_model_choose_or_refuses_in_one_line(split, tmp_path):
    from test_best_config import _bundle_of  # tests/ is on sys.path (rootdir import mode)

    from perfscope.models.adaptation import adapt_bundle
    from perfscope.models.persistence import load_bundle

    base, new = split
    path = _bundle_of(base, tmp_path / "model", trees=10)
    report = adapt_bundle(path, new, sample=10, choose="model")
    assert report["n_rows"] == 10 and report["chosen_by"] == "model"
    inner = load_bundle(path)["param_forest"].estimator_
    assert inner.measured_mask(new).sum() == 10
    with pytest.raises(InvalidInputError, match="adapt-choose must be one of"):
        adapt_bundle(path, new, sample=10, choose="best")
    with pytest.raises(InvalidInputError, match="needs --adapt-sample"):
        adapt_bundle(path, new, choose="model")


def test_device_split_summary_counts_measured_rows_in_the_pick_only():
    from perfscope.models.evaluation import summarize

    rows = pd.DataFrame({"model": "m+1shot", "target": "latency", "row": [0, 1, 2, 3], "fold": 0, "group": "g",
                         "context": "c", "y_true": [1.0, 2.0, 3.0, 4.0], "y_pred": [1.0, 2.5, 2.0, 4.0],
                         "measured": [True, False, False, False], "low": np.nan, "high": np.nan,
                         "spread": np.nan, "excess": np.nan})
    figures = summarize(rows).iloc[0]
    assert figures["n_predicted"] == 3  # errors over the unmeasured rows
    assert figures["regret"] == 1.0  # the measured best is picked


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "perfscope", *map(str, args)], capture_output=True, text=True,
                          timeout=180)


@pytest.mark.parametrize("args, message", [
    (("--adapt-choose", "best", "--adapt-sample", "5"), "--adapt-choose must be random or model"),
    (("--adapt-choose", "model"), "--adapt-choose model needs --adapt-sample K"),
])
def test_train_refuses_a_bad_adapt_choice_in_one_line(tmp_path, args, message):
    run = _cli("train", tmp_path / "missing", "--out", tmp_path / "model", "--adapt", tmp_path / "new", *args)
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_adapt_choose_model_on_the_cli(tmp_path):
    from perfscope.store import ProfileStore

    base = ProfileStore(tmp_path / "base", create=True)
    for name, speed in (("NVIDIA RTX A4000", 2.0), ("NVIDIA RTX A6000", 1.0)):
        base.append_table(_sweep(tmp_path, name, speed))
    ProfileStore(tmp_path / "new", create=True).append_table(_sweep(tmp_path, NEW, 3.0))
    run = _cli("train", tmp_path / "base", "--out", tmp_path / "model", "--adapt", tmp_path / "new",
               "--adapt-sample", 12, "--adapt-choose", "model", "--json", "-q")
    assert run.returncode == 0, run.stderr
    adaptation = json.loads(run.stdout)["adaptation"]
    assert adaptation["n_rows"] == 12 and adaptation["chosen_by"] == "model"


def test_best_config_suggests_what_to_measure_next_and_leaves_out_what_was_measured(split, tmp_path):
    from test_best_config import _bundle_of  # tests/ is on sys.path (rootdir import mode)

    from perfscope.models.adaptation import adapt_bundle
    from perfscope.workflows.best_config import best_config

    base, new = split
    path = _bundle_of(base, tmp_path / "model", trees=10)
    key = new["device_key"].iloc[0]
    first = best_config("stencil", NEW, model=path, data=new, suggest=8)["to_measure"]
    assert len(first["configs"]) == 8 and first["n_measured_already"] == 0
    assert [c["why"] for c in first["configs"]].count("predicted fastest") == 6
    adapt_bundle(path, new, sample=10, choose="model")
    again = best_config("stencil", key, model=path, data=new, suggest=8)["to_measure"]
    assert again["n_measured_already"] == 10
    assert len(again["configs"]) == 8
    with pytest.raises(InvalidInputError, match="--suggest must be at least 1"):
        best_config("stencil", key, model=path, data=new, suggest=0)


@pytest.mark.slow
def test_estimate_suggest_on_the_cli_and_its_refusal(split, tmp_path):
    from test_best_config import _bundle_of  # tests/ is on sys.path (rootdir import mode)

    from perfscope.store import ProfileStore

    base, _ = split
    path = _bundle_of(base, tmp_path / "model", trees=10)
    store = ProfileStore(tmp_path / "new", create=True)
    store.append_table(_sweep(tmp_path, NEW, 3.0))
    run = _cli("estimate", "stencil", "--device", NEW, "--model", path, "--best-config", "--data", tmp_path / "new",
               "--suggest", 4)
    assert run.returncode == 0, run.stderr
    assert "measure next (4 of 4 asked" in run.stdout and "(spread)" in run.stdout
    refused = _cli("estimate", "gemm", "--m", 64, "--n", 64, "--k", 64, "--device", "h100-sxm", "--suggest", 4)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "--suggest is an option of --best-config" in refused.stderr
