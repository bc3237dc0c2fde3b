"""Few-shot transfer of a parameter model to a new device from k measured configurations.

The model keeps, besides its pooled forest, one small forest per training device: the
landscape of that device (log time minus its median log time over the parameters). A new
device's landscape is taken as a non-negative combination of the pooled landscape and
those per-device ones, weighted by how well each explains the k measurements
(non-negative least squares on the centred log times: devices whose landscape looks
like the new one's get the weight, with the spread fitted as well). The device's scale
is the median residual of the k rows (robust to a few odd measurements), and with enough
rows a shallow forest learns what remains.
"""

from __future__ import annotations

import numpy as np

from perfscope.models.tree_arrays import export_forest

MIN_ROWS_FOR_MIXTURE = 5  # fewer measured rows: the pooled landscape alone, shifted
MIN_ROWS_FOR_RESIDUALS = 8


def mixture_weights(landscapes: np.ndarray, log_time: np.ndarray) -> np.ndarray:
    """Non-negative weights of the ``landscapes`` columns (k rows x m candidates, the pooled
    one first) that best explain the centred ``log_time`` of the k measured rows; the
    pooled landscape alone (``[1, 0, ...]``) when there are too few rows or nothing fits."""
    from scipy.optimize import nnls  # heavy; only fitting needs it, estimates do not

    weights = np.zeros(landscapes.shape[1])
    weights[0] = 1.0
    if len(log_time) < MIN_ROWS_FOR_MIXTURE or landscapes.shape[1] < 2:
        return weights
    centred = landscapes - landscapes.mean(axis=0)
    fitted, _ = nnls(centred, log_time - log_time.mean())
    return fitted if np.isfinite(fitted).all() and fitted.sum() > 0 else weights


def residual_forest(design: np.ndarray, residual: np.ndarray, random_state: int | None):
    """A shallow forest of the k rows' residuals (leaves of three rows: k is small), or None
    with fewer than ``MIN_ROWS_FOR_RESIDUALS`` rows."""
    if len(residual) < MIN_ROWS_FOR_RESIDUALS:
        return None
    from sklearn.ensemble import ExtraTreesRegressor  # seconds to import; only fitting needs it

    small = ExtraTreesRegressor(n_estimators=50, min_samples_leaf=3, random_state=random_state)
    return export_forest(small.fit(design, residual))
