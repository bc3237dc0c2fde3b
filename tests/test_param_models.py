"""Parameter features, grouped evaluation with ranking figures, one-shape training, few-shot."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pyarrow as pa
import pytest

from perfscope.errors import UserInputError
from perfscope.importers import import_kernel_tuner


def _sweep(tmp_path, device_name: str, speed: float) -> pa.Table:
    entries = {}
    for bx in (1, 2, 4, 8, 16, 32):
        for by in (32, 64, 128):
            for tx in (1, 2, 4):
                threads = bx * by
                time_ms = speed * (1.0 + 0.3 * abs(math.log2(threads / 256)) + 0.1 * tx + 0.05 * (bx == 1)
                                   + 0.01 * math.log2(bx) + 0.003 * by / 32)
                entries[f"{bx},{by},{tx}"] = {"block_size_x": bx, "block_size_y": by, "tile_size_x": tx,
                                              "time": time_ms, "times": [time_ms]}
    path = tmp_path / f"{device_name.replace(' ', '_')}.json"
    path.write_text(json.dumps({"device_name": device_name, "kernel_name": "stencil", "problem_size": [4096, 512],
                                "tune_params_keys": ["block_size_x", "block_size_y", "tile_size_x"],
                                "tune_params": {}, "objective": "time", "cache": entries}))
    return import_kernel_tuner(path)


@pytest.fixture
def sweeps(tmp_path):
    tables = [_sweep(tmp_path, name, speed) for name, speed in
              (("NVIDIA RTX A4000", 2.0), ("NVIDIA RTX A6000", 1.0), ("AMD Radeon PRO W6600", 3.0))]
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def test_every_parameter_and_the_launch_are_features(sweeps):
    from perfscope.models.param_features import launch_features, parameters, tunable_names

    params = parameters(sweeps)
    assert tunable_names(params) == ["block_size_x", "block_size_y", "tile_size_x"]
    launch = launch_features(params, np.full(len(sweeps), 4096 * 512.0), np.full(len(sweeps), 48.0), len(sweeps))
    assert launch["threads_per_block"][0] == sweeps["param_block_size_x"][0] * sweeps["param_block_size_y"][0]
    assert np.isnan(launch["blocks"]).all()  # no T1 geometry: blocks unknown, not guessed


def test_distinct_configurations_get_distinct_predictions(sweeps):
    from perfscope.models.param_forest import ParameterForestModel

    one = sweeps[sweeps["device_name"] == "NVIDIA RTX A6000"].reset_index(drop=True)
    predicted = ParameterForestModel(n_estimators=20).fit(one).predict(one)
    assert len(np.unique(np.round(predicted, 12))) > 0.8 * len(one)  # no collapse into a few buckets
    assert np.median(np.abs(predicted / (one["time_median_ms"] / 1e3) - 1)) < 0.05


@pytest.mark.slow
def test_grouped_evaluation_reports_ranking_and_every_model(sweeps):
    from perfscope.models.param_forest import ParameterForestModel
    from perfscope.workflows.train import evaluate_datasets

    one = sweeps[sweeps["device_name"] == "NVIDIA RTX A6000"].reset_index(drop=True)
    table = evaluate_datasets(one, group_by=["block_size_x", "block_size_y"], n_splits=3)
    by_model = table.set_index("model")
    assert {"forest", "param_forest", "roofline", "log_linear", "paper_baseline"} <= set(by_model.index)
    assert by_model.loc["param_forest", "regret"] >= 1.0 and by_model.loc["param_forest", "spearman"] > 0.5
    # no FLOPs: the reason, not a silent drop, and the reason is the one that holds
    counts = re.search(r"of (\d+) ok rows, (\d+) have no FLOP or byte count", by_model.loc["roofline", "reason"])
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(1)) > len(one) / 2
    assert "0 a device without a peak" in by_model.loc["forest", "reason"]
    assert table.attrs["group_by"] == ["block_size_x", "block_size_y"]
    chosen = evaluate_datasets(one, n_splits=3, models={"param_forest": ParameterForestModel(n_estimators=5)})
    assert len(chosen.attrs["group_by"]) == 2  # one shape: the two most varied parameters, said
    with pytest.raises(UserInputError, match="nope"):
        evaluate_datasets(one, group_by=["nope"])


@pytest.mark.slow
def test_device_split_reports_zero_shot_and_few_shot(sweeps):
    from perfscope.models.evaluation import evaluate
    from perfscope.models.param_forest import ParameterForestModel

    table = evaluate({"param_forest": ParameterForestModel(n_estimators=20)}, sweeps, split="device")
    assert set(table["model"]) == {"param_forest", *(f"param_forest+{k}shot{how}" for k in (10, 20, 50)
                                                       for how in ("", "_chosen"))}
    figures = table.set_index("model")["median_abs_pct_error"]
    assert figures["param_forest+50shot"] < figures["param_forest"]


@pytest.mark.slow
def test_a_one_shape_sweep_trains_and_the_bundle_predicts(sweeps, tmp_path):
    from perfscope.models.persistence import load_bundle
    from perfscope.models.prediction import bundle_predictions
    from perfscope.workflows.train import train

    one = sweeps[sweeps["device_name"] == "NVIDIA RTX A6000"].reset_index(drop=True)
    report = train(one, out_dir=tmp_path / "model", n_splits=3)
    assert report.group_by == ["block_size_y", "block_size_x"] or report.group_by == ["block_size_x", "block_size_y"]
    assert "param_forest" in report.models and "forest" in report.skipped
    bundle = load_bundle(tmp_path / "model")
    predicted = bundle_predictions(bundle, one)
    assert np.all(predicted["latency_low_s"] <= predicted["latency_s"])
    assert np.all(predicted["latency_s"] <= predicted["latency_high_s"])


def test_ranking_figures_in_each_context():
    from perfscope.models.ranking import ranking_figures

    y = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    p = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0])
    spearman, regret = ranking_figures(y, p, np.array([0, 0, 0, 1, 1, 1]))
    assert spearman == pytest.approx(0.0) and regret == pytest.approx((1.0 + 3.0) / 2)
