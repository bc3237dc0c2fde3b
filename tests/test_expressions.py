"""The bounded expression evaluator behind sweep filters and derived import columns."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from perfscope.collectors.filters import Filter
from perfscope.errors import InvalidInputError
from perfscope.expressions import MAX_INT_BITS, Expression, evaluate_number

HOSTILE = ["10**10**10 > 1", "'a' * 10**10 == dtype", "m / 0 > 1", "dtype + 1 > 0", "2**100000 > 1",
           "(m * 2**200) * (m * 2**200) > 1", "-'a' == dtype", "9.9e307 * 10 > 1", "m // 0 == 1", "m % 0 == 1"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_filters_fail_fast_with_a_user_error(text):
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="cannot be evaluated"):
        Filter(text)({"m": 64, "dtype": "fp32"})
    assert time.perf_counter() - start < 0.5


def test_results_stay_bounded_but_real_sizes_pass():
    assert Filter("m * n * k <= 2**27 and dtype != 'fp16'")({"m": 512, "n": 512, "k": 512, "dtype": "fp32"})
    assert Filter(f"2**{MAX_INT_BITS - 1} > 1")({})
    assert Filter("dtype + '_x' == 'fp32_x'")({"dtype": "fp32"})  # string concatenation stays allowed
    assert not Filter("tile_m < 4")({"tile_m": None})  # a missing value never passes a comparison
    with pytest.raises(InvalidInputError, match="not allowed"):
        Filter("dtype.upper() == 'FP32'")
    with pytest.raises(InvalidInputError, match="not allowed"):
        Filter("m[0] == 1")


def test_evaluate_number_gives_finite_floats_or_one_line_errors():
    assert evaluate_number("2 * m * n * k", {"m": 2, "n": 3, "k": 4}) == 48.0
    assert evaluate_number("bytes / 1e9", {"bytes": 3e9}, "--bytes") == 3.0
    for text, names, message in [("m > 1", {"m": 2}, "not a number"), ("dtype", {"dtype": "fp32"}, "not a number"),
                                 ("q * 2", {"m": 1}, "names 'q'"), ("m / 0", {"m": 1}, "division by zero"),
                                 ("1e308 * 10", {}, "infinity"), ("m *", {"m": 1}, "bad --flops")]:
        with pytest.raises(InvalidInputError, match=message):
            evaluate_number(text, names, "--flops")


def test_one_expression_evaluates_many_rows():
    expression = Expression("m * n", "--flops")
    assert [expression({"m": m, "n": 2}) for m in (1, 2, 3)] == [2, 4, 6]
    assert expression.names == ["m", "n"]


@pytest.mark.parametrize("text", ["10**10**10 > 1", "'a' * 10**10 == dtype", "m / 0 > 1", "dtype + 1 > 0"])
def test_plan_with_a_hostile_filter_exits_2_with_one_line(text):
    done = subprocess.run([sys.executable, "-m", "perfscope", "plan", "gemm", "--size", "8", "--filter", text],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "filter" in done.stderr
