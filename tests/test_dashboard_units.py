"""The dashboard's one units helper and its numpy group statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perfscope.dashboards.aggregate import group_codes, group_quantiles
from perfscope.dashboards.units import byte_size, duration, flops_rate, format_cell, interval, linear_ticks, log_axis


def test_quantities_read_with_their_units():
    assert flops_rate(1.5e12) == "1.5 TFLOP/s" and flops_rate(2e11) == "200 GFLOP/s"
    assert duration(5.903735114776632e-4) == "590 µs" and duration(4.24e-3) == "4.24 ms" and duration(2.5) == "2.5 s"
    assert byte_size(3.2e9) == "3.2 GB" and byte_size(12) == "12 B"
    assert interval(8e-4, 1.3e-3, "s") == "800 µs – 1.3 ms"
    assert duration(float("nan")) == "n/a" and duration(None) == "n/a"
    assert format_cell("latency_s", 0.0005903735114776632) == "590 µs"
    assert format_cell("achieved_flops_per_s", 1e14) == "100 TFLOP/s"
    assert format_cell("efficiency", 0.42) == "42%"


def test_log_axis_ticks_carry_units_and_no_bare_exponent_letters():
    axis = log_axis([3e10, 2e14], "FLOP/s")
    assert axis["type"] == "log"
    assert axis["ticktext"][0] == "10 GFLOP/s" and axis["ticktext"][-1] == "1 PFLOP/s"
    assert not any(text.endswith("B") and "FLOP" not in text for text in axis["ticktext"])
    times = log_axis([1e-5, 0.03], "s")["ticktext"]
    assert times == ["10 µs", "100 µs", "1 ms", "10 ms", "100 ms"]  # one notation, no "100u" beside "0.01"
    ticks = linear_ticks([1.86e-3], "s")
    assert ticks["ticktext"][0] == "0 s" and ticks["ticktext"][1:5] == ["500 µs", "1 ms", "1.5 ms", "2 ms"]


@pytest.mark.parametrize("devices", [2, 30])  # 12 groups (a selection per group) and 180 (one sort)
def test_group_quantiles_match_pandas(devices):
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame({"device": pd.Categorical(rng.choice([f"d{i}" for i in range(devices)], n)),
                          "dtype": rng.choice(["x", "y"], n),
                          "bound": pd.Categorical(rng.choice(["memory", "compute", None], n)),
                          "value": rng.random(n)})
    groups, table = group_codes(frame, ["device", "dtype", "bound"])
    counts, quantiles = group_quantiles(groups, frame["value"].to_numpy(), [0.5, 0.1, 0.9], n_groups=len(table))
    keyed = frame.astype({"bound": object}).fillna({"bound": ""}).astype({"device": str, "bound": str})
    expected = keyed.groupby(["device", "dtype", "bound"])["value"]
    for i, row in table.iterrows():
        values = expected.get_group((row["device"], row["dtype"], row["bound"]))
        assert counts[i] == len(values)
        assert quantiles[i, 0] == pytest.approx(values.median())
        assert quantiles[i, 1] == pytest.approx(values.quantile(0.1))
        assert quantiles[i, 2] == pytest.approx(values.quantile(0.9))


def test_tables_are_sortable_grids_that_keep_numbers_and_show_units():
    from perfscope.dashboards.components import data_table

    table = data_table(pd.DataFrame({"configuration": ["a", "b"], "time_s": [5.9e-4, 2.0], "rows": [3, 10]}))
    grid = table.children[0]
    assert type(grid).__name__ == "AgGrid"
    assert all(c["sortable"] for c in grid.columnDefs)
    time_column = next(c for c in grid.columnDefs if c["headerName"] == "time_s")
    assert "'s'" in time_column["valueFormatter"]["function"]  # written with its unit in the browser
    assert [r[time_column["field"]] for r in grid.rowData] == [5.9e-4, 2.0]  # numbers sort as numbers
