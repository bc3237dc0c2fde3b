"""Forests as numpy arrays: scikit-learn's predictions to the last bit, and refusal of bad arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

from perfscope.errors import InvalidInputError
from perfscope.models import tree_arrays
from perfscope.models.persistence import ModelFileError
from perfscope.models.tree_arrays import FIELDS, ForestArrays, export_forest, predict


def _data(n_rows: int, n_features: int, n_outputs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features spanning magnitudes (as FLOPs and times do) and a nonlinear target."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features)) * 10.0 ** rng.integers(-6, 12, n_features)
    y = np.column_stack([np.sin(X[:, i % n_features] / X[:, i % n_features].std()) + 0.1 * rng.standard_normal(n_rows)
                         for i in range(n_outputs)])
    return X, y[:, 0] if n_outputs == 1 else y


def _near_thresholds(forest: ForestArrays, X: np.ndarray, seed: int) -> np.ndarray:
    """Rows whose split features sit on, and one float32 or float64 step either side of, thresholds:
    where casting to float32 (as scikit-learn does) decides the side."""
    rng = np.random.default_rng(seed)
    internal = np.flatnonzero(forest.children_left != -1)
    picks = rng.choice(internal, size=min(300, len(internal)), replace=False)
    rows = X[rng.integers(0, len(X), len(picks))].copy()
    t = forest.threshold[picks]
    candidates = np.stack([t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf),
                           np.nextafter(t.astype(np.float32), np.float32(np.inf)).astype(np.float64),
                           np.nextafter(t.astype(np.float32), np.float32(-np.inf)).astype(np.float64),
                           t.astype(np.float32).astype(np.float64)])
    rows[np.arange(len(picks)), forest.feature[picks]] = candidates[rng.integers(0, len(candidates), len(picks)),
                                                                    np.arange(len(picks))]
    return rows


@pytest.mark.parametrize("n_outputs", [1, 2, 3])
@pytest.mark.parametrize("params", [{"max_depth": 2}, {"max_depth": 6}, {"min_samples_leaf": 5},
                                    {"min_samples_leaf": 1, "max_features": 0.5}])
def test_exported_forest_predicts_exactly_as_scikit_learn(n_outputs, params):
    X, y = _data(400, 7, n_outputs, seed=n_outputs)
    forest = RandomForestRegressor(n_estimators=25, random_state=0, **params).fit(X, y)
    arrays = export_forest(forest)
    X_new, _ = _data(700, 7, 1, seed=10 + n_outputs)
    X_new = np.vstack([X_new, _near_thresholds(arrays, X, seed=n_outputs), X[:50]])
    for rows in (X_new, X_new[:40]):  # batches above and below DEDUPLICATE_MIN_ROWS take both paths
        expected = forest.predict(rows)
        got = predict(arrays, rows)
        assert got.dtype == np.float64 and got.shape == expected.shape
        assert np.array_equal(got, expected)
        assert np.array_equal(arrays.apply(rows), forest.apply(rows))
    assert arrays.n_trees == 25 and arrays.n_outputs == n_outputs and arrays.n_features == 7
    assert arrays.max_depth == max(t.tree_.max_depth for t in forest.estimators_)
    assert np.array_equal(arrays.feature_importances, forest.feature_importances_)


def test_float32_casting_decides_rows_on_a_threshold():
    """A value above a threshold in float64 that rounds onto it in float32 goes left, as in scikit-learn."""
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    forest = RandomForestRegressor(n_estimators=1, bootstrap=False, random_state=0).fit(X, [0.0, 0.0, 1.0, 1.0])
    threshold = forest.estimators_[0].tree_.threshold[0]
    assert threshold == 1.5
    probe = np.array([[np.nextafter(1.5, 2.0)], [1.5 + 2.0**-30], [np.nextafter(np.float32(1.5), np.float32(2))]])
    expected = forest.predict(probe)
    assert list(expected) == [0.0, 0.0, 1.0]  # the first two round to 1.5 in float32
    assert np.array_equal(export_forest(forest).predict(probe), expected)


def test_missing_values_go_where_the_trees_learnt():
    X, y = _data(300, 4, 1, seed=5)
    X[::7, 1] = np.nan
    X[::5, 3] = np.nan
    forest = RandomForestRegressor(n_estimators=15, random_state=0).fit(X, y)
    arrays = export_forest(forest)
    assert arrays.missing_go_to_left.any() and not arrays.missing_go_to_left.all()
    X_new, _ = _data(500, 4, 1, seed=6)
    X_new[::3, 1] = np.nan
    X_new[::4, 3] = np.nan
    assert np.array_equal(arrays.predict(X_new), forest.predict(X_new))
    assert np.array_equal(arrays.predict(X_new[:20]), forest.predict(X_new[:20]))


def test_extra_trees_and_repeated_rows():
    X, y = _data(200, 5, 2, seed=8)
    forest = ExtraTreesRegressor(n_estimators=10, random_state=0).fit(X, y)
    rows = np.repeat(X[:40], 20, axis=0)  # many rows share bins: the deduplicated path
    assert np.array_equal(export_forest(forest).predict(rows), forest.predict(rows))


def test_arrays_round_trip_and_refuse_wrong_inputs():
    X, y = _data(200, 3, 1, seed=2)
    arrays = export_forest(RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y))
    plain = arrays.to_arrays()
    assert set(plain) == set(FIELDS) and all(isinstance(v, np.ndarray) and v.dtype != object for v in plain.values())
    again = ForestArrays.from_arrays(plain)
    assert np.array_equal(again.predict(X), arrays.predict(X))
    with pytest.raises(InvalidInputError, match="takes \\(rows, 3\\)"):
        arrays.predict(X[:, :2])
    with pytest.raises(InvalidInputError, match="only averaging regression forests"):
        export_forest(object())


def _corrupt(field: str, change) -> dict[str, np.ndarray]:
    X, y = _data(200, 3, 1, seed=4)
    plain = {k: v.copy() for k, v in export_forest(RandomForestRegressor(n_estimators=3, max_depth=3,
                                                                         random_state=0).fit(X, y)).to_arrays().items()}
    plain[field] = change(plain[field], plain)
    return plain


def _set(index, value):
    def change(array, _):
        array[index] = value
        return array
    return change


def _second_tree_root(field_value, plain):
    """Point tree 0's root at tree 1's root (in range of the concatenation, not of the tree)."""
    field_value[0] = plain["tree_offsets"][1]
    return field_value


@pytest.mark.parametrize("field, change, message", [
    ("children_left", _set(0, 10**6), "out-of-range node"),
    ("children_right", _set(0, -7), "out-of-range node"),
    ("children_left", _set(0, 0), "out-of-range node"),  # a self loop: an endless walk
    ("children_left", _second_tree_root, "out-of-range node"),
    ("children_right", lambda a, p: np.where(p["children_left"] == -1, 1, a), "out-of-range node"),  # half a leaf
    ("children_right", lambda a, p: np.where(np.arange(len(a)) == 0, p["children_left"][0], a), "not a tree"),
    ("feature", _set(0, 3), "feature out of range"),
    ("feature", lambda a, p: np.where(p["children_left"] == -1, 0, a), "leaf names a feature"),
    ("threshold", _set(0, np.nan), "NaN threshold"),
    ("value", _set(-1, np.inf), "non-finite value"),
    ("value", lambda a, p: a[:-1], "different lengths"),
    ("tree_offsets", lambda a, p: a[:-1], "tree offsets"),
    ("tree_offsets", lambda a, p: np.array([0, 5, 5, a[-1]]), "tree offsets"),
    ("missing_go_to_left", _set(0, 7), "missing-value flag"),
    ("feature_importances", lambda a, p: a[:-1], "importances"),
    ("threshold", lambda a, p: a.astype(object), "dtype object"),
    ("n_features", lambda a, p: np.array([3]), "dimensions"),
])
def test_corrupt_arrays_are_refused(field, change, message):
    with pytest.raises(ModelFileError, match=message):
        ForestArrays.from_arrays(_corrupt(field, change), name="test")


def test_every_check_above_can_pass():
    """The corruption helper itself leaves valid arrays valid (so each refusal above is the change's)."""
    assert ForestArrays.from_arrays(_corrupt("feature", lambda a, p: a)).n_trees == 3


def _stumps(n_features: int) -> ForestArrays:
    """One tree per feature j: x_j <= 0 ? (x_j <= -1 ? 3j : 3j + 1) : 3j + 2, built by hand."""
    left, right, feature, threshold, value = [], [], [], [], []
    for j in range(n_features):
        left += [1, 3, -1, -1, -1]
        right += [2, 4, -1, -1, -1]
        feature += [j, j, -2, -2, -2]
        threshold += [0.0, -1.0, -2.0, -2.0, -2.0]
        value += [0.0, 0.0, 3 * j + 2, 3 * j, 3 * j + 1]
    return ForestArrays(tree_offsets=np.arange(0, 5 * n_features + 1, 5), children_left=np.array(left),
                        children_right=np.array(right), feature=np.array(feature), threshold=np.array(threshold),
                        value=np.array(value)[:, None] * 1.1, missing_go_to_left=np.zeros(5 * n_features, np.uint8),
                        n_features=n_features)


def test_wide_bin_keys_are_renumbered_instead_of_overflowing():
    """40 features of 4 bins each pack into 4**40 = 2**80 keys: without re-numbering the
    first features' bins would be shifted out of int64 and distinct rows merged."""
    forest = _stumps(40)
    rng = np.random.default_rng(0)
    X = np.repeat(rng.choice([-2.0, -0.5, 0.5], size=(700, 40)), 3, axis=0)
    X[:, 0] = np.tile([-2.0, -0.5, 0.5], 700)  # rows that differ in the first feature only
    expected = np.zeros(len(X))
    for j in range(40):  # tree by tree, in order, as scikit-learn sums
        expected += np.where(X[:, j] <= -1, 3 * j, np.where(X[:, j] <= 0, 3 * j + 1, 3 * j + 2)) * 1.1
    expected /= 40
    assert len(X) >= tree_arrays.DEDUPLICATE_MIN_ROWS and forest.max_depth == 2
    assert np.array_equal(forest.predict(X), expected)
