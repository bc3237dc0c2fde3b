"""Scaling fits: time(x) = t0 + c·x^b over problem size or batch size (docs/formulas.md).

A power law plus a constant, as in the scaling-law papers: ``t0`` is the fixed cost
(launch, synchronisation), ``c·x^b`` the part that grows with ``x``. Pure functions.

The fit minimises squared errors of log(time), so every point weighs the same whatever
its magnitude and the noise is taken as multiplicative (timings are). It runs on
rescaled data (x and time over their geometric means) with bounds t0 >= 0, c > 0 and
b within ``b_bounds``, from several starting points, keeping the best.

Uncertainty: the covariance of the parameters is s²·(JᵀJ)⁻¹ at the optimum (J the
Jacobian of the log residuals, s² their variance with n - 3 degrees of freedom),
carried to (t0, c, b) by the delta method. ``PowerLawFit.band`` gives a confidence band
(the curve) or a prediction band (a new measurement: adds s²) with Student-t quantiles;
far outside the measured range it widens, as an extrapolation should. When t0 sits on
its bound (0) the band treats it as a regular parameter: approximate there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from perfscope.errors import InvalidInputError

MIN_POINTS = 4  # three parameters plus one degree of freedom for the noise


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted time(x) = t0 + c·x^b with its uncertainty. Times in the caller's unit."""

    t0: float
    c: float
    b: float
    covariance: np.ndarray  # 3 x 3, order (t0, c, b)
    n_points: int
    dof: int
    residual_std_log: float  # s: standard deviation of log residuals (natural log)
    x_min: float
    x_max: float
    x_scale: float  # internals of the rescaled fit, kept for the band
    time_scale: float
    scaled_params: tuple[float, float, float]  # (t0/time_scale, c·x_scale^b/time_scale, b)
    scaled_covariance: np.ndarray

    @property
    def stderr(self) -> dict[str, float]:
        """Standard errors of t0, c and b."""
        diag = np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))
        return {"t0": float(diag[0]), "c": float(diag[1]), "b": float(diag[2])}

    def predict(self, x: Any) -> np.ndarray:
        """t0 + c·x^b."""
        u = np.asarray(x, dtype=float) / self.x_scale
        a0, a1, b = self.scaled_params
        return (a0 + a1 * u ** b) * self.time_scale

    def residuals(self, x: Any, time: Any) -> np.ndarray:
        """Relative residuals time / fit - 1 (wave steps and cache edges show up here)."""
        return np.asarray(time, dtype=float) / self.predict(x) - 1.0

    def band(self, x: Any, level: float = 0.95, *, include_noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) around ``predict(x)`` at ``level``: a prediction band for a new
        measurement (``include_noise``) or a confidence band for the curve itself."""
        if not 0 < level < 1:
            raise InvalidInputError(f"band level must be in (0, 1), got {level!r}")
        from scipy.special import stdtrit  # Student-t quantile (scipy.stats costs seconds to import)

        u = np.asarray(x, dtype=float) / self.x_scale
        a0, a1, b = self.scaled_params
        f = a0 + a1 * u ** b
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = np.stack([1.0 / f, u ** b / f, a1 * u ** b * np.log(u) / f], axis=-1)
        var = np.einsum("...i,ij,...j->...", grad, self.scaled_covariance, grad)
        if include_noise:
            var = var + self.residual_std_log ** 2
        q = float(stdtrit(self.dof, 0.5 + level / 2)) if self.dof > 0 else math.inf
        half = q * np.sqrt(np.clip(var, 0.0, None))
        centre = np.log(f * self.time_scale)
        return np.exp(centre - half), np.exp(centre + half)

    def summary(self) -> dict[str, float]:
        """Parameters, standard errors and fit quality as a flat dict (for tables, JSON)."""
        se = self.stderr
        return {"t0": self.t0, "t0_se": se["t0"], "c": self.c, "c_se": se["c"], "b": self.b, "b_se": se["b"],
                "n_points": self.n_points, "residual_std_log": self.residual_std_log,
                "x_min": self.x_min, "x_max": self.x_max}


def fit_power_law(x: Any, time: Any, *, b_bounds: tuple[float, float] = (0.0, 4.0)) -> PowerLawFit:
    """Fit time = t0 + c·x^b (t0 >= 0, c > 0, b in ``b_bounds``) in log space.

    ``x`` and ``time`` must be positive; NaN pairs are dropped. ``InvalidInputError`` when
    fewer than ``MIN_POINTS`` distinct x values remain or a value is not positive.
    """
    from scipy.optimize import least_squares  # heavy; only fitting needs it, estimates do not

    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(time, dtype=float).ravel()
    if x.shape != y.shape:
        raise InvalidInputError(f"x and time differ in length ({x.size} vs {y.size})")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.any(x <= 0) or np.any(y <= 0):
        raise InvalidInputError("a power-law fit needs positive sizes and times")
    if np.unique(x).size < MIN_POINTS:
        raise InvalidInputError(f"a power-law fit needs at least {MIN_POINTS} distinct sizes "
                             f"(got {np.unique(x).size}): three parameters and one for the noise")
    lo_b, hi_b = b_bounds
    if not lo_b < hi_b:
        raise InvalidInputError(f"b_bounds must be increasing, got {b_bounds!r}")

    x_scale = float(np.exp(np.mean(np.log(x))))
    y_scale = float(np.exp(np.mean(np.log(y))))
    u, v = x / x_scale, y / y_scale
    log_u, log_v = np.log(u), np.log(v)

    def residual(p: np.ndarray) -> np.ndarray:
        return np.log(p[0] + p[1] * u ** p[2]) - log_v

    def jacobian(p: np.ndarray) -> np.ndarray:
        ub = u ** p[2]
        f = p[0] + p[1] * ub
        return np.column_stack([1.0 / f, ub / f, p[1] * ub * log_u / f])

    best = None
    for p0 in _starting_points(u, v, log_u, log_v, lo_b, hi_b):
        result = least_squares(residual, p0, jac=jacobian, method="trf", x_scale="jac",
                               bounds=([0.0, 1e-300, lo_b], [np.inf, np.inf, hi_b]))
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    a0, a1, b = (float(v_) for v_ in best.x)
    n = x.size
    dof = n - 3
    ssr = float(np.sum(best.fun ** 2))
    s2 = ssr / dof
    jac = jacobian(best.x)
    scaled_cov = s2 * np.linalg.pinv(jac.T @ jac)

    t0 = a0 * y_scale
    c = a1 * y_scale / x_scale ** b
    # delta method: (a0, a1, b) -> (t0, c, b)
    g = np.array([[y_scale, 0.0, 0.0],
                  [0.0, y_scale / x_scale ** b, -c * math.log(x_scale)],
                  [0.0, 0.0, 1.0]])
    cov = g @ scaled_cov @ g.T
    return PowerLawFit(t0=t0, c=c, b=b, covariance=cov, n_points=n, dof=dof, residual_std_log=math.sqrt(s2),
                       x_min=float(x.min()), x_max=float(x.max()), x_scale=x_scale, time_scale=y_scale,
                       scaled_params=(a0, a1, b), scaled_covariance=scaled_cov)


def _starting_points(u: np.ndarray, v: np.ndarray, log_u: np.ndarray, log_v: np.ndarray,
                     lo_b: float, hi_b: float) -> list[np.ndarray]:
    """Initial (a0, a1, b): the slope of the upper half in log-log space, and a few constants."""
    upper = log_u >= np.median(log_u)
    if np.ptp(log_u[upper]) > 0:
        slope = float(np.polyfit(log_u[upper], log_v[upper], 1)[0])
    else:
        slope = 1.0
    b0 = float(np.clip(slope, lo_b + 1e-3, hi_b - 1e-3))
    starts = []
    for frac in (0.0, 0.5, 0.9):
        a0 = frac * float(v.min())
        rest = v - a0
        a1 = float(np.median(rest[rest > 0] / u[rest > 0] ** b0)) if np.any(rest > 0) else 1.0
        starts.append(np.array([a0, max(a1, 1e-12), b0]))
    return starts
