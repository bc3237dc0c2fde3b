"""Saved intervals on a GPU the training data did not have: wider zero-shot (by the
leave-one-GPU-out scale errors), recalibrated on the measured rows after ``adapt``, kept
by a save and load, and unchanged on the training GPUs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perfscope.models.intervals import ConformalWrapper
from perfscope.models.param_forest import ParameterForestModel

GPUS = {  # key: (name, speed): speeds off the spec rule, so the scale rule errs on each
    "cuda-nvidia-rtx-a4000": ("NVIDIA RTX A4000", 1.0),
    "cuda-nvidia-rtx-a6000": ("NVIDIA RTX A6000", 1.3),
    "rocm-amd-radeon-pro-w6600": ("AMD Radeon PRO W6600", 0.6),
    "rocm-amd-radeon-pro-w7800": ("AMD Radeon PRO W7800", 1.1),
}
NEW = "cuda-nvidia-rtx-a4000"


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


def _sweep(key: str, seed: int) -> pd.DataFrame:
    """60 configurations of (block_size_x, block_size_y) with 5% noise on a shared landscape."""
    name, speed = GPUS[key]
    rng = np.random.default_rng(seed)
    configs = [(bx, by) for bx in (1, 2, 4, 8, 16, 32) for by in (16, 32, 48, 64, 96, 128, 160, 192, 224, 256)]
    return pd.DataFrame({
        "device_key": key, "device_name": name, "kind": "stencil", "status": "ok",
        "param_block_size_x": [c[0] for c in configs], "param_block_size_y": [c[1] for c in configs],
        "time_median_ms": [speed * math.exp(0.3 * math.log2(bx) + 0.002 * by + 0.05 * rng.standard_normal())
                           for bx, by in configs]})


@pytest.fixture(scope="module")
def fitted():
    train = pd.concat([_sweep(k, i) for i, k in enumerate(GPUS) if k != NEW], ignore_index=True)
    wrapper = ConformalWrapper(ParameterForestModel(n_estimators=20, random_state=0), groups="row", n_splits=3)
    return wrapper.fit(train), train, _sweep(NEW, 9)


def _half_width(wrapper, rows):
    low, high = wrapper.predict_interval(rows)
    return np.log(high / low) / 2


def test_an_unseen_gpu_gets_a_wider_interval_and_seen_ones_keep_theirs(fitted):
    wrapper, train, new = fitted
    errors = wrapper.estimator_.scale_errors()
    assert set(errors) == set(GPUS) - {NEW} and all(math.isfinite(e) for e in errors.values())
    assert wrapper.device_quantiles_["latency"] > wrapper.quantiles_["latency"]
    seen = train[train["device_key"] == "cuda-nvidia-rtx-a6000"]
    sigma = np.asarray(wrapper._half_widths(seen, "latency", q=1.0))
    np.testing.assert_allclose(_half_width(wrapper, seen), wrapper.quantiles_["latency"] * sigma)  # as before
    ratio = _half_width(wrapper, new) / np.asarray(wrapper._half_widths(new, "latency", q=1.0))
    np.testing.assert_allclose(ratio, wrapper.device_quantiles_["latency"])
    both = pd.concat([seen.head(5), new.head(5)], ignore_index=True)  # per row, in one call
    widths = _half_width(wrapper, both)
    assert (widths[5:] > widths[:5]).all()


def test_new_device_scores_shift_each_residual_by_its_gpus_scale_error():
    from perfscope.models.device_intervals import new_device_scores

    scores = new_device_scores(np.array([0.1, -0.1, 0.2]), 2.0, np.array(["a", "b", "c"]), {"a": 0.3, "b": 0.3})
    np.testing.assert_allclose(scores[:2], [0.1, 0.2])
    assert math.isnan(scores[2])  # a device without a scale error is left out


def test_one_training_gpu_keeps_the_plain_interval_everywhere():
    one = ConformalWrapper(ParameterForestModel(n_estimators=10), groups="row", n_splits=3).fit(
        _sweep("cuda-nvidia-rtx-a6000", 0))
    assert one.estimator_.scale_errors() == {} and one.device_quantiles_ == {}
    np.testing.assert_allclose(_half_width(one, _sweep(NEW, 1)) / one._half_widths(_sweep(NEW, 1), "latency", q=1.0),
                               one.quantiles_["latency"])


def test_adapt_recalibrates_the_device_on_its_rows_and_leaves_the_rest(fitted):
    import copy

    wrapper, train, new = fitted
    adapted = copy.deepcopy(wrapper).adapt(new.iloc[:20])
    q = adapted.adapted_quantiles_[NEW]["latency"]
    assert math.isfinite(q) and q >= wrapper.quantiles_["latency"]
    ratio = _half_width(adapted, new) / np.asarray(adapted._half_widths(new, "latency", q=1.0))
    np.testing.assert_allclose(ratio, q)
    other = train[train["device_key"] == "cuda-nvidia-rtx-a6000"]
    np.testing.assert_allclose(_half_width(adapted, other), _half_width(wrapper, other))
    few = copy.deepcopy(wrapper).adapt(new.iloc[:4])  # too few rows for a 90% quantile: the new-device q
    assert few.adapted_quantiles_[NEW]["latency"] == wrapper.device_quantiles_["latency"]


def test_the_recalibration_leaves_the_model_it_scores_untouched(fitted):
    from perfscope.models.device_intervals import adaptation_scores

    wrapper, _, new = fitted
    model = wrapper.estimator_
    scales = dict(model.scales_)
    scores = adaptation_scores(model, new.iloc[:10], ("latency",), lambda m, part, t: m.predict(part), 0)
    assert len(scores["latency"]) == 10 and model.scales_ == scales and NEW not in model.measured_


def test_new_device_and_adapted_quantiles_survive_save_and_load(fitted, tmp_path):
    import copy

    from perfscope.models.persistence import load_bundle, save_bundle

    wrapper, _, new = fitted
    adapted = copy.deepcopy(wrapper).adapt(new.iloc[:20])
    for name, model in (("base", wrapper), ("adapted", adapted)):
        loaded = load_bundle(save_bundle(tmp_path / name, {"param_forest": model}))["param_forest"]
        assert loaded.device_quantiles_ == pytest.approx(model.device_quantiles_)
        assert loaded.adapted_quantiles_ == model.adapted_quantiles_
        np.testing.assert_allclose(_half_width(loaded, new), _half_width(model, new))


def test_the_new_device_q_treats_gpus_not_rows_as_the_units():
    from perfscope.models.device_intervals import device_level_quantile

    # one GPU far off with few rows, four close ones with many: pooled rows would hide it
    keys = np.array(["far"] * 10 + [g for g in "abcd" for _ in range(1000)])
    scores = np.concatenate([np.full(10, 5.0), np.tile(np.linspace(0.0, 1.0, 1000), 4)])
    assert device_level_quantile(scores, keys, 0.1) == pytest.approx(5.0)  # five GPUs: their largest
    scores[:10] = np.nan  # a GPU without scores is left out
    assert device_level_quantile(scores, keys, 0.1) == pytest.approx(0.9, abs=1e-3)
    many = np.repeat([f"g{i}" for i in range(19)], 10)  # 19 GPUs: the conformal quantile of their 19 figures
    per_gpu = np.repeat(np.arange(19.0), 10)
    assert device_level_quantile(per_gpu, many, 0.1) == pytest.approx(17.0)
    assert math.isinf(device_level_quantile(np.array([np.nan]), np.array(["a"]), 0.1))


def test_adaptation_folds_hold_out_whole_groups_when_there_are_enough():
    from perfscope.models.device_intervals import ADAPT_FOLDS, adaptation_folds

    labels = np.repeat(np.arange(8), 3)  # 8 groups of 3 rows
    folds = adaptation_folds(len(labels), labels, 0)
    assert len(folds) == ADAPT_FOLDS and sorted(np.concatenate(folds).tolist()) == list(range(24))
    for held in folds:  # a group is never split between folds
        assert all(set(np.flatnonzero(labels == g)) <= set(held.tolist()) for g in np.unique(labels[held]))
    few = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])  # fewer groups than folds: rows at random
    assert [len(h) for h in adaptation_folds(10, few, 0)] == [2] * 5  # groups of 3 and 4 rows split
    assert [len(h) for h in adaptation_folds(10, None, 0)] == [2] * 5


def test_a_wrapper_groups_the_adaptation_rows_as_it_grouped_its_calibration(fitted):
    wrapper, _, new = fitted
    assert wrapper._new_group_labels(new) is None  # groups="row": each row alone, folds at random
    by_block = ConformalWrapper(wrapper.estimator, groups=lambda rows: np.asarray(rows["param_block_size_x"]))
    labels = by_block._new_group_labels(new)
    assert labels is not None and len(np.unique(labels)) == 6
    assert ConformalWrapper(wrapper.estimator, groups="custom")._new_group_labels(new) is None  # lost in a save


def test_a_saved_wrapper_keeps_its_parameter_grouping(fitted, tmp_path):
    from perfscope.models.groups import ParameterGroups
    from perfscope.models.persistence import load_bundle, save_bundle

    wrapper, train, new = fitted
    grouped = ConformalWrapper(ParameterForestModel(n_estimators=10, random_state=0),
                               groups=ParameterGroups(["block_size_x"]), n_splits=3).fit(train)
    loaded = load_bundle(save_bundle(tmp_path / "m", {"param_forest": grouped}, rows=train))["param_forest"]
    assert isinstance(loaded.groups, ParameterGroups) and loaded.groups.names == ["block_size_x"]
    np.testing.assert_array_equal(loaded._new_group_labels(new), grouped._new_group_labels(new))


def test_adapt_hands_its_grouping_to_the_folds_and_takes_fit_labels_too(fitted, monkeypatch):
    import copy

    from perfscope.models import device_intervals
    from perfscope.models.groups import ParameterGroups

    wrapper, train, new = fitted
    seen = []
    real = device_intervals.adaptation_folds
    monkeypatch.setattr(device_intervals, "adaptation_folds", lambda n, labels, seed: seen.append(labels)
                        or real(n, labels, seed))
    grouped = copy.deepcopy(wrapper)
    grouped.groups = ParameterGroups(["block_size_y"])
    grouped.adapt(new.iloc[:30])
    assert seen[-1] is not None and len(np.unique(seen[-1])) >= 5
    by_labels = ConformalWrapper(ParameterForestModel(n_estimators=10, random_state=0),
                                 groups=np.arange(len(train)) % 7, n_splits=3).fit(train)
    by_labels.adapt(new.iloc[:30])  # labels given at fit cannot label new rows: rows at random
    assert seen[-1] is None and NEW in by_labels.adapted_quantiles_
    assert repr(ParameterGroups(["a"])) == "ParameterGroups(['a'])" and ParameterGroups(["a"]) == ParameterGroups(["a"])


def test_a_saved_grouping_that_names_no_parameters_is_refused(fitted):
    from perfscope.errors import ModelFileError

    wrapper, _, _ = fitted
    state, objects = wrapper._to_state()
    state["params"]["groups"] = {"parameters": "block_size_x"}  # a string, not a list of names
    with pytest.raises(ModelFileError, match="name no parameters"):
        ConformalWrapper._from_state(state, objects, wrapper.estimator_)


def test_repeated_fold_draws_keep_the_conformal_rank_of_the_rows():
    from perfscope.models.device_intervals import repeated_conformal_quantile
    from perfscope.models.interval_scores import conformal_quantile

    one = np.arange(1.0, 21.0)  # 20 rows: the 19th smallest
    assert repeated_conformal_quantile([one], 0.1) == conformal_quantile(one, 0.1) == 19.0
    assert repeated_conformal_quantile([one, one], 0.1) == 19.0
    draws = [one, one + 10.0, one + 1.0]  # three draws: their own q 19, 29 and 20
    assert repeated_conformal_quantile(draws, 0.1) == 20.0  # the median, not the largest
    ten = [np.arange(1.0, 11.0), np.arange(1.0, 11.0) + np.array([0.0] * 9 + [90.0])]
    assert repeated_conformal_quantile(ten, 0.1) == 55.0  # 10 rows: each draw's largest, then their median
    assert math.isinf(repeated_conformal_quantile([np.arange(8.0)] * 5, 0.1))  # 8 rows: no 90% quantile
