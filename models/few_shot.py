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

from typing import Any

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


EXPLORE_SHARE = 0.25  # of the k measurements spread over the predicted ranks (the rest: the predicted fastest)


def fastest_share(k: int, explore_share: float = EXPLORE_SHARE) -> int:
    """How many of ``choose_to_measure``'s k are the predicted fastest (all of them below 4)."""
    return k - (int(round(k * explore_share)) if k >= 4 else 0)


def choose_to_measure(predicted_s: np.ndarray, k: int, *, exclude: np.ndarray | None = None,
                      explore_share: float = EXPLORE_SHARE) -> np.ndarray:
    """Positions of ``k`` configurations to measure on a new device, from the model's
    ``predicted_s`` latencies: most of them the predicted fastest (where the best one
    likely is; measured, they also correct the model where it matters), and
    ``explore_share`` of them spread evenly over the predicted ranks of the rest (the
    measured contrast from fast to slow is what fits the device's scale and the mixture of
    landscapes). ``exclude``: a mask of configurations already measured. Deterministic."""
    predicted = np.where(np.isfinite(predicted_s), predicted_s, np.inf)
    order = np.argsort(predicted, kind="stable")
    if exclude is not None:
        order = order[~np.asarray(exclude, dtype=bool)[order]]
    k = min(int(k), len(order))
    top = order[:fastest_share(k, explore_share)]
    rest = order[len(top):]
    explore = k - len(top)
    # evenly over the rest's ranks, its slowest included and its fastest (next to the top) left out
    where = np.linspace(0, len(rest) - 1, explore + 1)[1:].round().astype(int) if explore and len(rest) else []
    spread = rest[:explore] if len(rest) <= explore else np.unique(rest[where]) if len(where) else rest[:0]
    return np.concatenate([top, spread]).astype(int)


def adapt_to_chosen(model: Any, rows: Any, k: int, *, rounds: int = 2) -> tuple[Any, np.ndarray]:
    """Adapt ``model`` (fitted, with ``predict_latency`` and ``adapt``; changed in place) to
    ``k`` of ``rows`` (one new device's measured ok rows) chosen by the model itself, in
    ``rounds`` batches as a tuner would measure them: each batch is ``choose_to_measure``
    on the latest model's predictions (zero-shot first, then adapted to all the rows
    measured so far), so later batches look where the adapted model expects the fastest.
    With a dataset that already holds every measurement this replays that loop; on a GPU
    the batches are measured in between (``perfscope estimate --best-config --suggest K``
    after each ``train --adapt``). Returns the model and the chosen positions."""
    chosen = np.zeros(0, dtype=int)
    total = min(int(k), len(rows))
    rounds = max(1, min(int(rounds), total))
    for r in range(rounds):
        wanted = total * (r + 1) // rounds - len(chosen)
        taken = np.zeros(len(rows), dtype=bool)
        taken[chosen] = True
        batch = choose_to_measure(np.asarray(model.predict_latency(rows), dtype=float), wanted, exclude=taken)
        chosen = np.concatenate([chosen, batch])
        model.adapt(rows.iloc[np.sort(chosen)])
    return model, np.sort(chosen)
