"""The dashboard data layer's fast paths give what the plain pandas operations give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_dashboard_figures import dashboard_frame, no_calibrated_profiles  # noqa: F401 (a fixture)

from perfscope.dashboards.aggregate import group_codes
from perfscope.dashboards.data import DashboardData
from perfscope.dashboards.figures.overview import value_counts


@pytest.fixture(scope="module")
def data() -> DashboardData:
    return DashboardData.from_rows(dashboard_frame())


def test_take_is_iloc_of_the_columns_asked_for(data):
    positions = np.flatnonzero(data.rows["dtype"].to_numpy() == "bf16")[::2]
    taken = data.take(positions, ["m", "dtype", "no_such_column", "device_key"])
    expected = data.rows.iloc[positions][["m", "dtype", "device_key"]]
    pd.testing.assert_frame_equal(taken, expected, check_index_type=False)
    assert data.take(np.arange(len(data.rows)), ["m"]).shape == (len(data.rows), 1)


def test_is_value_on_codes_and_on_plain_columns(data):
    positions = np.arange(len(data.rows))[::3]
    for column, value in (("dtype", "bf16"), ("status", "ok"), ("m", 256.0)):
        expected = (data.rows[column].to_numpy()[positions] == value)
        assert (data.is_value(column, value, positions) == expected).all() and expected.any()
    assert not data.is_value("dtype", "not-a-dtype", positions).any()


def test_group_codes_on_categorical_codes_match_plain_values():
    plain = pd.DataFrame({"a": ["x", "y", None, "x", "y", "x"], "b": [1.0, 1.0, 2.0, 1.0, np.nan, 1.0]})
    categorical = plain.assign(a=plain["a"].astype("category"))
    for frame in (plain, categorical):
        groups, table = group_codes(frame, ["a", "b"])
        assert groups.tolist() == [0, 1, 2, 0, 3, 0]  # first appearance; a missing value is its own group
        assert table["a"].tolist() == ["x", "y", "", "y"] and table["b"].tolist() == ["1.0", "1.0", "2.0", ""]
        ids, empty = group_codes(frame, ["a", "b"], labels=False)
        assert ids.tolist() == groups.tolist() and empty.empty


def test_value_counts_from_codes_match_pandas():
    series = pd.Series(pd.Categorical(["b", "a", "b", None, "c", "b", "a"], categories=["a", "b", "c", "unused"]))
    counts = value_counts(series)
    assert counts.to_dict() == {"b": 3, "a": 2, "c": 1} and list(counts.index) == ["b", "a", "c"]
    assert value_counts(series.astype(str).where(series.notna())).to_dict() == counts.to_dict()


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def test_replaced_columns_release_the_block_they_shared():
    from perfscope.dashboards.features import release_replaced_columns

    frame = pd.DataFrame(np.arange(40_000, dtype=float).reshape(4_000, 10), columns=list("abcdefghij"))
    expected = frame[["a", "b"]].copy()
    for column in "cdefghij":  # eight of ten columns of one float64 block replaced
        frame[column] = frame[column].to_numpy(dtype=np.float32)
    block = _root(frame["a"].to_numpy())
    assert block.nbytes == 10 * 4_000 * 8  # still the whole block, for two columns
    assert release_replaced_columns(frame) == 8 * 4_000 * 8
    assert all(_root(frame[c].to_numpy()).nbytes == 4_000 * 8 for c in "ab")
    pd.testing.assert_frame_equal(frame[["a", "b"]], expected)
    assert release_replaced_columns(frame) == 0  # nothing left to free


def test_loaded_rows_hold_no_replaced_columns(data):
    by_root: dict[int, list[int]] = {}
    for column in data.rows.columns:
        if isinstance(data.rows[column].dtype, np.dtype):
            array = data.rows[column].to_numpy()
            root = _root(array)
            by_root.setdefault(id(root), [root.nbytes, 0])[1] += array.nbytes
    assert all(total <= used for total, used in by_root.values())
