"""Normalised conformal intervals: they widen off the training data, coverage on every split,
calibration reused from the evaluation, and no guarantee claimed where there is none."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from perfscope.errors import InvalidInputError
from perfscope.importers import import_kernel_tuner
from perfscope.models import intervals
from perfscope.models.evaluation import cross_validated_predictions, evaluate, summarize, to_records
from perfscope.models.intervals import ConformalWrapper
from perfscope.models.param_forest import ParameterForestModel


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


def _one_parameter_sweep(tmp_path, xs, device_name="NVIDIA RTX A6000", seed=0, scale=1.0):
    """A Kernel Tuner cache of one tunable parameter ``x``: time = scale * (1 + 0.05 x) with 3% noise."""
    rng = np.random.default_rng(seed)
    entries = {}
    for x in xs:
        time_ms = scale * (1.0 + 0.05 * x) * math.exp(0.03 * rng.standard_normal())
        entries[str(x)] = {"x": int(x), "time": time_ms, "times": [time_ms]}
    path = tmp_path / f"sweep_{device_name.replace(' ', '_')}_{seed}.json"
    path.write_text(json.dumps({"device_name": device_name, "kernel_name": "scan", "problem_size": [4096],
                                "tune_params_keys": ["x"], "tune_params": {}, "objective": "time",
                                "cache": entries}))
    return import_kernel_tuner(path).to_pandas()


def _relative_width(wrapper, rows):
    low, high = wrapper.predict_interval(rows)
    return np.log(high / low)


def test_intervals_widen_beyond_the_training_range(tmp_path):
    train = _one_parameter_sweep(tmp_path, range(1, 61, 2))
    inside = _one_parameter_sweep(tmp_path, range(2, 60, 6), seed=2)  # new values between the training ones
    far = _one_parameter_sweep(tmp_path, (150, 200, 300), seed=1)  # 1.6 to 4 spans beyond
    wrapper = ConformalWrapper(ParameterForestModel(n_estimators=30), groups="row", n_splits=5).fit(train)
    assert wrapper.normaliser_ == "spread"
    assert wrapper.estimator_.interval_difficulty(train)[:, 1].max() == 0  # no distance inside the training values
    width_inside = _relative_width(wrapper, inside)
    width_far = _relative_width(wrapper, far.sort_values("param_x"))
    assert width_far.min() > 1.2 * np.max(width_inside)
    assert np.all(np.diff(width_far) > 0)  # the further out, the wider
    plain = ConformalWrapper(ParameterForestModel(n_estimators=30), groups="row", n_splits=5,
                             normalise="none").fit(train)
    assert np.ptp(_relative_width(plain, far)) == 0  # a plain interval has one width everywhere


def test_distance_scale_sets_how_much_the_distance_widens_and_survives_saving(tmp_path):
    from perfscope.models.persistence import load_bundle, save_bundle

    train = _one_parameter_sweep(tmp_path, range(1, 61, 2))
    inside = _one_parameter_sweep(tmp_path, range(2, 60, 6), seed=2)
    far = _one_parameter_sweep(tmp_path, (150, 200, 300), seed=1).sort_values("param_x")
    fitted = {gamma: ConformalWrapper(ParameterForestModel(n_estimators=30), groups="row", n_splits=5,
                                      distance_scale=gamma).fit(train) for gamma in (0.0, 1.0, 4.0)}
    # scores inside the data have d = 0: the same q whatever γ, so the same widths there
    np.testing.assert_allclose(_relative_width(fitted[0.0], inside), _relative_width(fitted[4.0], inside))
    far_widths = {gamma: _relative_width(wrapper, far) for gamma, wrapper in fitted.items()}
    assert np.all(far_widths[0.0] < far_widths[1.0]) and np.all(far_widths[1.0] < far_widths[4.0])
    difficulty = fitted[4.0].estimator_.interval_difficulty(far)
    expected = fitted[4.0].quantiles_["latency"] * (difficulty[:, 0] + fitted[4.0].beta_) * (1 + 4.0 * difficulty[:, 1])
    np.testing.assert_allclose(far_widths[4.0], 2 * expected)  # log(high / low) = 2·q·σ(x)
    save_bundle(tmp_path / "bundle", {"param_forest": fitted[4.0]})
    loaded = load_bundle(tmp_path / "bundle")["param_forest"]
    assert loaded.distance_scale == 4.0
    np.testing.assert_allclose(_relative_width(loaded, far), far_widths[4.0])
    with pytest.raises(InvalidInputError, match="distance_scale"):
        ConformalWrapper(ParameterForestModel(n_estimators=5), groups="row", distance_scale=-1.0).fit(train)


def test_distance_is_zero_inside_the_data_and_grows_linearly_outside():
    from sklearn.ensemble import RandomForestRegressor

    from perfscope.models.tree_arrays import export_forest

    x = np.linspace(0.0, 10.0, 200)[:, None]
    forest = export_forest(RandomForestRegressor(n_estimators=10, random_state=0).fit(x, np.sin(x[:, 0])))
    low, high = forest.split_ranges()
    distance = intervals.out_of_range_distance(forest, np.array([[5.0], [high[0] + 1.0], [high[0] + 2.0]]))
    assert distance[0] == 0.0
    assert distance[2] == pytest.approx(2 * distance[1]) and distance[1] == pytest.approx(1.0 / (high[0] - low[0]))


def test_normalised_intervals_cover_new_rows_in_range(tmp_path):
    coverages = []
    for seed in range(3):
        rows = _one_parameter_sweep(tmp_path, range(1, 121), seed=seed)
        held_out = np.random.default_rng(seed).permutation(len(rows))[:30]
        train = rows.drop(index=held_out)
        wrapper = ConformalWrapper(ParameterForestModel(n_estimators=30), groups="row", random_state=seed)
        coverages.append(wrapper.fit(train).coverage(rows.iloc[held_out]))
    assert 0.75 <= np.mean(coverages) <= 1.0  # 90 held-out rows in all: nominal 0.9


@pytest.fixture
def three_gpus(tmp_path):
    tables = [_one_parameter_sweep(tmp_path, range(1, 41), name, seed=i, scale=speed)
              for i, (name, speed) in enumerate((("NVIDIA RTX A4000", 2.0), ("NVIDIA RTX A6000", 1.0),
                                                 ("AMD Radeon PRO W6600", 3.0)))]
    return pa.concat_tables([pa.Table.from_pandas(t, preserve_index=False) for t in tables],
                            promote_options="default").to_pandas()


@pytest.mark.parametrize("split, group_by", [("random", None), ("device", None), ("shape", ["x"])])
def test_every_split_reports_coverage_and_width_for_every_model(three_gpus, split, group_by):
    from perfscope.models.roofline_model import LogLinearModel

    models = {"param_forest": ParameterForestModel(n_estimators=10),
              "wrapped": ConformalWrapper(ParameterForestModel(n_estimators=10), groups="row", n_splits=3),
              "no_flops": LogLinearModel()}
    records = to_records(evaluate(models, three_gpus, split=split, n_splits=3, group_by=group_by))
    by_model = {r["model"]: r for r in records if r["target"] == "latency"}
    assert 0 < by_model["param_forest"]["coverage"] <= 1 and by_model["param_forest"]["interval_width_mean"] > 0
    assert by_model["param_forest"]["coverage_method"] == "cross-fold, normalised"
    assert by_model["wrapped"]["coverage_method"] == "own intervals" and by_model["wrapped"]["coverage"] > 0
    assert by_model["no_flops"]["coverage"] is None and by_model["no_flops"]["reason"]  # it could not run
    assert all({"coverage", "interval_width_mean", "interval_width_median"} <= set(r) for r in records)


def test_few_shot_rows_of_a_wrapper_carry_its_own_intervals_as_train_adapt_keeps_them(three_gpus):
    wrapper = ConformalWrapper(ParameterForestModel(n_estimators=10), groups="row", n_splits=3)
    predictions = cross_validated_predictions({"wrapped": wrapper}, three_gpus, split="device",
                                              targets=("latency",))
    shots = predictions[predictions["model"] == "wrapped+10shot"]
    assert len(shots) == 3 * 40 and shots["measured"].sum() == 3 * 10 and shots["low"].notna().all()
    assert (shots["low"] < shots["y_pred"]).all() and (shots["y_pred"] < shots["high"]).all()
    table = summarize(predictions).set_index("model")
    assert table.loc["wrapped+10shot", "coverage_method"] == "own intervals"
    assert table.loc["wrapped+20shot_chosen", "coverage_method"] == "own intervals"
    assert 0 < table.loc["wrapped+20shot", "coverage"] <= 1


def test_extrapolation_split_trains_on_small_sizes_and_says_no_intervals_without_a_wrapper():
    from test_evaluation import law_rows

    from perfscope.models.evaluation import split_folds
    from perfscope.models.roofline_model import RooflineModel

    rows = law_rows(sizes=(256, 512, 1024, 2048), replicates=2, shape_sigma=0.1, seed=1)
    (train, test), = split_folds(rows, "extrapolate")
    work = (rows["m"] * rows["n"] * rows["k"]).to_numpy()
    assert work[train].max() < work[test].min() and len(test) <= 0.25 * len(rows) + 8
    table = evaluate({"plain": RooflineModel(), "wrapped": ConformalWrapper(RooflineModel(), n_splits=3)}, rows,
                     split="extrapolate").set_index("model")
    assert table.loc["plain", "coverage_method"] == "no intervals" and math.isnan(table.loc["plain", "coverage"])
    assert table.loc["wrapped", "coverage_method"] == "own intervals" and table.loc["wrapped", "coverage"] > 0


def test_train_calibrates_on_the_evaluation_folds_without_fitting_them_again(tmp_path, monkeypatch):
    from perfscope.models.persistence import load_bundle
    from perfscope.workflows.train import train

    rows = _one_parameter_sweep(tmp_path, range(1, 61))
    fits = []
    original = ParameterForestModel.fit

    def counted(self, X, y=None):
        fits.append(len(X))
        return original(self, X, y)

    monkeypatch.setattr(ParameterForestModel, "fit", counted)
    report = train(rows, out_dir=tmp_path / "bundle", n_splits=4, group_by=["x"])
    assert len(fits) == 4 + 1  # four folds, then every row once
    wrapper = load_bundle(tmp_path / "bundle")["param_forest"]
    assert wrapper.normaliser_ == "spread" and math.isfinite(wrapper.quantiles_["latency"])
    assert report.interval_quantiles["param_forest"]["latency"] == pytest.approx(wrapper.quantiles_["latency"])


def test_docstrings_claim_a_guarantee_only_where_the_method_has_one():
    doc = " ".join(intervals.__doc__.split())
    assert "Barber et al.'s (2021) 1 - 2·alpha bound, which holds for CV+ and jackknife+" in doc
    assert "is *not* CV+" in doc and "there is no finite-sample guarantee" in doc
    assert "No method holds under extrapolation" in doc
    assert "1 - alpha when the calibration groups and the new row's group are exchangeable" in doc


def test_tree_spread_is_the_standard_deviation_of_the_trees_predictions():
    from sklearn.ensemble import ExtraTreesRegressor

    from perfscope.models.tree_arrays import export_forest

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(400, 3))
    fitted = ExtraTreesRegressor(n_estimators=12, min_samples_leaf=3, random_state=0).fit(x, x[:, 0] ** 2 + x[:, 1])
    queries = rng.uniform(-2, 12, size=(300, 3))  # over DEDUPLICATE_MIN_ROWS: the binned path too
    expected = np.std([tree.predict(queries) for tree in fitted.estimators_], axis=0)
    np.testing.assert_allclose(export_forest(fitted).predict_spread(queries), expected, rtol=1e-9, atol=1e-12)


def test_the_command_lines_extrapolation_wraps_its_models_so_they_report_coverage(monkeypatch):
    from test_evaluation import law_rows

    from perfscope.models.roofline_model import LogLinearModel, RooflineModel
    from perfscope.workflows import train as workflow

    monkeypatch.setattr(workflow, "default_models", lambda seed, n_jobs, energy: {"roofline": RooflineModel(),
                                                                                  "log_linear": LogLinearModel()})
    rows = law_rows(sizes=(256, 512, 1024, 2048), replicates=2, shape_sigma=0.1, seed=1)
    table = workflow.evaluate_datasets(rows, split="extrapolate").set_index("model")
    assert (table["coverage_method"] == "own intervals").all() and (table["coverage"] > 0).all()
