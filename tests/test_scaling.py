"""perfscope.scaling: fits of time = t0 + c*x^b, their uncertainty, band and residuals."""

from __future__ import annotations

import numpy as np
import pytest

from perfscope.errors import InvalidInputError
from perfscope.scaling import fit_power_law

T0, C, B = 5e-6, 2e-12, 1.2  # a launch floor and a super-linear term, as a GEMM in FLOPs
X = np.logspace(2, 10, 25)


def _noisy(rng, x=X, sigma=0.03, t0=T0, c=C, b=B):
    return (t0 + c * x ** b) * np.exp(rng.normal(0.0, sigma, np.size(x)))


def test_recovers_known_parameters_from_noisy_data():
    fit = fit_power_law(X, _noisy(np.random.default_rng(0)))
    se = fit.stderr
    assert fit.t0 == pytest.approx(T0, rel=0.05)
    assert fit.c == pytest.approx(C, rel=0.3)
    assert fit.b == pytest.approx(B, abs=0.02)
    for name, truth in (("t0", T0), ("c", C), ("b", B)):
        assert abs(getattr(fit, name) - truth) < 4 * se[name]
    assert fit.residual_std_log == pytest.approx(0.03, rel=0.4)
    assert fit.n_points == 25 and fit.dof == 22


def test_standard_errors_cover_the_truth_and_shrink_with_less_noise():
    rng = np.random.default_rng(1)
    hits = 0
    trials = 60
    for _ in range(trials):
        fit = fit_power_law(X, _noisy(rng))
        hits += abs(fit.b - B) < 2.07 * fit.stderr["b"]  # t quantile, 22 degrees of freedom
    assert 0.85 <= hits / trials <= 1.0
    loud = fit_power_law(X, _noisy(np.random.default_rng(2), sigma=0.10))
    quiet = fit_power_law(X, _noisy(np.random.default_rng(2), sigma=0.01))
    assert quiet.stderr["b"] < loud.stderr["b"] / 3


def test_pure_power_law_puts_t0_near_zero():
    t = C * X ** B * np.exp(np.random.default_rng(3).normal(0, 0.02, X.size))
    fit = fit_power_law(X, t)
    assert 0 <= fit.t0 < 0.1 * t.min()  # negligible next to the smallest time
    assert fit.t0 < 3 * fit.stderr["t0"]  # and not distinguishable from zero
    assert fit.b == pytest.approx(B, abs=0.02)


def test_band_contains_truth_and_widens_when_extrapolating():
    fit = fit_power_law(X, _noisy(np.random.default_rng(4)))
    inside = np.logspace(3, 9, 7)
    low, high = fit.band(inside, 0.95)
    truth = T0 + C * inside ** B
    assert np.all(low < truth) and np.all(truth < high)
    mid_low, mid_high = fit.band([1e6], include_noise=False)
    far_low, far_high = fit.band([1e13], include_noise=False)
    assert np.log(far_high / far_low)[0] > 2 * np.log(mid_high / mid_low)[0]
    noisy_low, noisy_high = fit.band([1e6], include_noise=True)
    assert (noisy_high - noisy_low)[0] > (mid_high - mid_low)[0]


def test_residuals_are_relative_and_show_a_step():
    x = np.logspace(3, 9, 30)
    t = T0 + C * x ** B
    t[x > 1e7] *= 1.3  # a wave-quantisation-like step
    fit = fit_power_law(x, t)
    res = fit.residuals(x, t)
    assert res.shape == x.shape
    np.testing.assert_allclose(fit.predict(x) * (1 + res), t, rtol=1e-10)
    assert res[x > 1e7].mean() > res[x < 1e6].mean()


def test_nan_pairs_are_dropped():
    t = _noisy(np.random.default_rng(5))
    t[3] = np.nan
    assert fit_power_law(X, t).n_points == X.size - 1


@pytest.mark.parametrize("x,t", [
    ([1, 2, 3], [1, 2, 3]),  # too few sizes
    ([1, 1, 1, 1, 1], [1, 2, 3, 4, 5]),  # one distinct size
    ([1, 2, 3, -4, 5], [1, 2, 3, 4, 5]),  # a negative size
    ([1, 2, 3, 4, 5], [1, 2, 0, 4, 5]),  # a zero time
    ([1, 2, 3, 4, 5], [1, 2, 3, 4]),  # lengths differ
])
def test_bad_inputs_are_user_errors(x, t):
    with pytest.raises(InvalidInputError):
        fit_power_law(x, t)
