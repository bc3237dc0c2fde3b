"""Grouped splits, side-by-side figures and conformal coverage on synthetic rows."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from synthetic_rows import features_frame  # noqa: E402 (tests/ is on sys.path)

from perfscope.devices.registry import device_spec
from perfscope.errors import InvalidInputError
from perfscope.models.evaluation import METRIC_COLUMNS, evaluate, shape_groups, split_folds, to_records
from perfscope.models.forest import ForestModel, PaperBaselineModel
from perfscope.models.intervals import ConformalWrapper, conformal_quantile
from perfscope.models.roofline_model import LogLinearModel, RooflineModel

H100 = "NVIDIA H100 80GB HBM3"
EFFICIENCY = 0.6


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


def law_rows(sizes=(512, 1024, 2048, 4096), replicates=4, shape_sigma=0.0, noise=0.0, seed=0,
             device_name=H100, device_key="cuda-h100", energy=False) -> pd.DataFrame:
    """fp16 GEMM rows, ``replicates`` tile variants per shape: time = bound / 0.6, times a
    lognormal effect per shape (``shape_sigma``) and per row (``noise``)."""
    rng = np.random.default_rng(seed)
    shapes = list(itertools.product(sizes, repeat=3))
    effect = dict(zip(shapes, np.exp(shape_sigma * rng.standard_normal(len(shapes))), strict=True))
    records = [{"kernel": "gemm", "implementation": "triton", "dtype": "fp16", "batch": 1, "m": m, "n": n, "k": k,
                "tile_m": 32 * (r + 1), "tile_n": 64, "status": "ok", "device_key": device_key,
                "device_name": device_name, "run_id": "r", "config_id": f"{m}-{n}-{k}-{r}"}
               for (m, n, k) in shapes for r in range(replicates)]
    rows = pd.DataFrame(records)
    bound = features_frame(rows, device_spec(device_name))["bound_time_s"].to_numpy()
    shape_effect = np.array([effect[(m, n, k)] for m, n, k in zip(rows["m"], rows["n"], rows["k"], strict=True)])
    time_s = bound / EFFICIENCY * shape_effect * np.exp(noise * rng.standard_normal(len(rows)))
    rows["time_median_ms"] = time_s * 1e3
    if energy:
        rows["energy_gross_j"] = 100.0 * time_s
        rows["energy_method"] = "nvml-counter"
        rows["energy_is_estimate"] = False
    return rows


# ---- groups and splits ----------------------------------------------------------------

def test_shape_groups_keep_tiles_together_and_tell_dtypes_apart():
    rows = law_rows(sizes=(512, 1024), replicates=3)
    labels = shape_groups(rows)
    assert len(np.unique(labels)) == 8
    per_shape = pd.Series(labels).groupby([rows["m"], rows["n"], rows["k"]]).nunique()
    assert (per_shape == 1).all()
    other = rows.assign(dtype="fp32")
    assert set(shape_groups(pd.concat([rows, other]))[len(rows):]).isdisjoint(labels)
    assert set(shape_groups(rows.assign(batch=2))) == set(labels)  # labels are per frame
    assert len(np.unique(shape_groups(pd.concat([rows, rows.assign(batch=2)])))) == 16


@pytest.mark.parametrize("n_splits", [3, 5, None])
def test_shape_split_never_puts_a_shape_on_both_sides(n_splits):
    rows = law_rows(sizes=(512, 1024, 2048), replicates=3)
    labels = shape_groups(rows)
    folds = split_folds(rows, "shape", n_splits=n_splits, seed=1)
    assert len(folds) == (27 if n_splits is None else n_splits)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(len(rows)))  # every row tested exactly once
    for train, test in folds:
        assert set(labels[train]).isdisjoint(labels[test])


def test_random_split_leaks_shapes_into_training():
    rows = law_rows(sizes=(512, 1024, 2048), replicates=3)
    labels = shape_groups(rows)
    leaked = [len(set(labels[train]) & set(labels[test])) for train, test in split_folds(rows, "random", 5)]
    assert min(leaked) > 0


def test_device_split_leaves_one_device_out():
    rows = pd.concat([law_rows(sizes=(512, 1024), device_key="cuda-a"),
                      law_rows(sizes=(512, 1024), device_key="cuda-b", device_name="NVIDIA T4")],
                     ignore_index=True)
    folds = split_folds(rows, "device")
    assert len(folds) == 2
    for train, test in folds:
        assert rows["device_key"].iloc[test].nunique() == 1
        assert set(rows["device_key"].iloc[train]).isdisjoint(rows["device_key"].iloc[test])


@pytest.mark.parametrize("split, rows, message", [
    ("diagonal", law_rows(sizes=(512, 1024)), "split must be"),
    ("shape", law_rows(sizes=(512,)), "two distinct shapes"),
    ("device", law_rows(sizes=(512, 1024)), "two devices"),
])
def test_split_refuses_what_it_cannot_do(split, rows, message):
    with pytest.raises(InvalidInputError, match=message):
        split_folds(rows, split)


# ---- evaluate -------------------------------------------------------------------------

def test_evaluate_puts_models_side_by_side():
    rows = law_rows(sizes=(512, 1024, 2048, 4096), replicates=2, noise=0.01)
    table = evaluate({"roofline": RooflineModel(), "log_linear": LogLinearModel()}, rows, n_splits=4)
    assert list(table["model"]) == ["roofline", "log_linear"]
    assert set(METRIC_COLUMNS) <= set(table.columns)
    assert (table["split"] == "shape").all() and (table["n_folds"] == 4).all()
    roofline = table.set_index("model").loc["roofline"]
    assert roofline["median_abs_pct_error"] < 2 and roofline["r2"] > 0.99 and roofline["within_10pct"] == 1
    assert roofline["n_rows"] == len(rows) == roofline["n_predicted"]
    assert table.set_index("model").loc["log_linear", "median_abs_pct_error"] > roofline["median_abs_pct_error"]
    records = to_records(table)
    assert json.loads(json.dumps(records, allow_nan=False))[0]["model"] == "roofline"


def test_evaluate_reports_energy_and_power_when_learnt():
    rows = law_rows(sizes=(512, 1024, 2048), replicates=2, energy=True)
    table = evaluate({"forest": ForestModel(n_estimators=10), "roofline": RooflineModel()}, rows, n_splits=3)
    assert set(table.loc[table["model"] == "forest", "target"]) == {"latency", "energy", "power"}
    assert set(table.loc[table["model"] == "roofline", "target"]) == {"latency"}
    power = table[(table["model"] == "forest") & (table["target"] == "power")].iloc[0]
    assert power["median_abs_pct_error"] < 1  # constant 100 W


def test_a_lookup_model_shines_on_a_random_split_and_fails_on_unseen_shapes():
    rows = law_rows(sizes=(256, 512, 1024, 2048, 4096), replicates=4, shape_sigma=0.3, noise=0.01, seed=4)
    models = {"lookup": PaperBaselineModel(n_estimators=20, max_depth=None)}  # raw m, n, k: a lookup table
    random = evaluate(models, rows, split="random").iloc[0]
    shape = evaluate(models, rows, split="shape").iloc[0]
    assert random["median_abs_pct_error"] < 10
    assert shape["median_abs_pct_error"] > 2 * random["median_abs_pct_error"]


# ---- conformal intervals --------------------------------------------------------------

def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 20.0)  # n = 19: rank ceil(20 * 0.9) = 18
    assert conformal_quantile(scores, 0.1) == 18.0
    assert conformal_quantile([1.0, 2.0, 3.0], 0.1) == math.inf  # too few scores for 90%
    assert conformal_quantile([1.0, np.nan, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 0.2) == 8.0


@pytest.mark.parametrize("method", ["cv", "split"])
def test_conformal_coverage_on_unseen_shapes_is_near_nominal(method):
    coverages = []
    for seed in range(4):
        rows = law_rows(sizes=(256, 384, 512, 768, 1024, 1536, 2048), replicates=2, shape_sigma=0.2, noise=0.02,
                        seed=seed)
        labels = shape_groups(rows)
        test_shapes = np.random.default_rng(seed).permutation(np.unique(labels))[:100]
        held_out = np.isin(labels, test_shapes)
        wrapper = ConformalWrapper(RooflineModel(), alpha=0.1, method=method, random_state=seed)
        wrapper.fit(rows[~held_out])
        coverages.append(wrapper.coverage(rows[held_out]))
    assert 0.85 <= np.mean(coverages) <= 0.95  # 12 seeds: 0.904 (cv), 0.896 (split)
    low, high = wrapper.predict_interval(rows[held_out])
    assert np.all(low < high) and wrapper.quantiles_["latency"] > 0


def test_row_calibration_of_a_memorising_model_undercovers_new_shapes():
    by_row, by_shape = [], []
    for seed in (5, 6, 7):
        rows = law_rows(sizes=(256, 512, 1024, 2048, 4096), replicates=4, shape_sigma=0.3, noise=0.01, seed=seed)
        labels = shape_groups(rows)
        held_out = np.isin(labels, np.unique(labels)[::4])
        model = PaperBaselineModel(n_estimators=20, max_depth=None)  # memorises the shapes it saw
        by_row.append(ConformalWrapper(model, groups="row").fit(rows[~held_out]).coverage(rows[held_out]))
        by_shape.append(ConformalWrapper(model, groups="shape").fit(rows[~held_out]).coverage(rows[held_out]))
    assert np.mean(by_row) < 0.4  # residuals of seen shapes are far too small for new ones
    assert np.mean(by_shape) > np.mean(by_row) + 0.4


def test_evaluate_judges_a_wrapper_on_its_own_intervals():
    rows = law_rows(sizes=(256, 512, 1024, 2048), replicates=2, shape_sigma=0.2, seed=2)
    table = evaluate({"roofline": ConformalWrapper(RooflineModel(), n_splits=3), "plain": RooflineModel()}, rows,
                     n_splits=4)
    methods = table.set_index("model")["coverage_method"]
    assert methods["roofline"] == "own intervals" and methods["plain"] == "cross-fold"
    assert (table["interval_width_mean"] > 0).all()
    assert (table["coverage"] > 0.5).all()


def test_contended_rows_are_left_out_unless_asked_for():
    from perfscope.workflows.train import evaluate_datasets

    rows = law_rows(sizes=(512, 1024, 2048), replicates=2)
    slowed = rows.index[::4]
    rows.loc[slowed, "status"] = "contended"  # timed while another workload shared the GPU: 2x slower
    rows.loc[slowed, "time_median_ms"] *= 2
    models = {"roofline": RooflineModel()}
    messages: list[str] = []
    clean = evaluate_datasets(rows, models=models, n_splits=3, progress=messages.append).iloc[0]
    assert clean["n_rows"] == len(rows) - len(slowed)
    assert clean["median_abs_pct_error"] < 1
    assert any(f"left out {len(slowed)} rows" in m and "include_contended" in m for m in messages)
    everything = evaluate_datasets(rows, models=models, n_splits=3, include_contended=True).iloc[0]
    assert everything["n_rows"] == len(rows)
    assert everything["mean_abs_pct_error"] > clean["mean_abs_pct_error"] + 5
    assert (rows.loc[slowed, "status"] == "contended").all()  # the caller's frame is untouched


def test_when_every_row_is_contended_the_error_says_so_and_names_the_flag():
    from perfscope.workflows.train import evaluate_datasets

    rows = law_rows(sizes=(512, 1024), replicates=1)
    rows["status"] = "contended"
    with pytest.raises(InvalidInputError, match=r"left out 8 rows .*include_contended"):
        evaluate_datasets(rows, models={"roofline": RooflineModel()}, n_splits=2)
