"""Conformal scores for a device the training data did not have: zero-shot and after ``adapt``.

``ConformalWrapper`` calibrates on unseen shapes or parameter groups of the training
devices, whose scale (how fast the device is) the model knows. On a new device that
scale is itself predicted (``ParameterForestModel``: from the spec figures by a rule
fitted on the training devices), and its error adds to every row's.

* Zero-shot: each training device g gets its leave-one-out scale error e_g (the rule
  fitted on the other training devices, ``scale_errors``; no forest fit), and each of its
  calibration rows the "new device" score |log y - log ŷ - e_g| / σ(x): what the row's
  residual would have been had g's scale been predicted. The GPUs, not the rows, are
  the units (``device_level_quantile``): each device's 90% quantile of its scores, then
  the conformal quantile over devices, or their largest with fewer than nine; used for
  rows of a device the model has no scale for. This assumes the GPUs are exchangeable
  (a new GPU is like a training GPU drawn at random) and only the scale changes, not the
  landscape; with n training GPUs a new one's per-GPU quantile exceeds all of theirs
  with probability up to 1/(n + 1), so the row coverage is measured, not promised
  (docs/models.md, "Intervals").
* After ``adapt`` to k measured rows of a device: K-fold adaptation residuals on those
  rows (adapt on k - k/K of them, score the rest), and the device's quantile is the
  larger of the training one and the conformal quantile of those scores; with too few
  rows for that quantile (k < 9 at alpha = 0.1), the zero-shot one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from perfscope.models.efficiency import ok_rows
from perfscope.models.interval_scores import conformal_quantile, log_scores, measured_target, predict_target

ADAPT_FOLDS = 5
ADAPT_DRAWS = 5  # fold draws whose quantiles' median is the device's q: one draw's q moved 2x between seeds


def new_device_scores(signed_residual: np.ndarray, sigma: np.ndarray | float, device_keys: np.ndarray,
                      scale_errors: Mapping[str, float]) -> np.ndarray:
    """|r - e_g| / σ per calibration row of training device g (NaN where g has no scale error)."""
    errors = np.array([scale_errors.get(str(k), np.nan) for k in device_keys], dtype=float)
    return np.abs(signed_residual - errors) / sigma


def device_level_quantile(scores: np.ndarray, device_keys: np.ndarray, alpha: float) -> float:
    """The new-device q from per-row ``scores`` of the training devices: each device's own
    (1 - alpha) quantile of its rows (the q that would have covered that share of *its*
    rows), then the conformal quantile of those n per-device figures, GPUs being the
    exchangeable units; with too few devices for it (n < 9 at alpha = 0.1), their largest,
    which a new device exceeds with probability at most 1/(n + 1). NaN scores are left out;
    inf without any device."""
    finite = np.isfinite(scores)
    per_device = [float(np.quantile(scores[finite & (device_keys == key)], 1 - alpha))
                  for key in np.unique(device_keys[finite])]
    if not per_device:
        return math.inf
    q = conformal_quantile(per_device, alpha)
    return q if math.isfinite(q) else max(per_device)


def detached_copy(model: Any) -> Any:
    """A shallow copy of ``model`` whose dict attributes are copies: ``adapt`` on it (which
    only sets per-device entries) leaves ``model`` as it was, without copying its forests."""
    out = copy.copy(model)
    for name, value in vars(model).items():
        if isinstance(value, dict):
            setattr(out, name, dict(value))
    return out


def adaptation_folds(n: int, labels: np.ndarray | None, random_state: int | None) -> list[np.ndarray]:
    """Held-out positions of each adaptation fold over ``n`` rows: ``ADAPT_FOLDS`` folds (at
    most one per row), whole groups held out together where ``labels`` give at least that
    many groups (as the training calibration holds out unseen groups), else rows at random:
    a few rows in fewer groups would leave a fold too little to adapt to."""
    rng = np.random.default_rng(random_state)
    if labels is None or len(np.unique(labels)) < ADAPT_FOLDS:
        return [np.sort(h) for h in np.array_split(rng.permutation(n), min(ADAPT_FOLDS, n))]
    groups = rng.permutation(np.unique(labels))
    return [np.flatnonzero(np.isin(labels, part)) for part in np.array_split(groups, ADAPT_FOLDS)]


def adaptation_scores(model: Any, rows: Any, targets: tuple[str, ...],
                      score: Callable[[Any, Any, str], np.ndarray], random_state: int | None,
                      labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per target: the scores of ``rows`` (one device's measured ok rows, a DataFrame)
    predicted by ``model`` adapted to the other folds' rows, one fold draw
    (``adaptation_folds``; whole groups of ``labels`` held out together where given).
    ``score(adapted, part, target)``: the normalised scores of ``part``."""
    n = len(rows)
    out: dict[str, list[np.ndarray]] = {target: [] for target in targets}
    if n < 2:
        return {target: np.array([]) for target in targets}
    for held in adaptation_folds(n, labels, random_state):  # sorted positions
        adapted = detached_copy(model).adapt(rows.iloc[np.setdiff1d(np.arange(n), held)])
        part = rows.iloc[held]
        for target in targets:
            out[target].append(score(adapted, part, target))
    return {target: np.concatenate(parts) for target, parts in out.items()}


def repeated_conformal_quantile(draws: list[np.ndarray], alpha: float) -> float:
    """The median over fold draws (``draws``: each draw's scores of the same rows) of each
    draw's split-conformal quantile, so that one draw's luck weighs less; the median rather
    than the rank among all the draws' scores, which for a rank of n (9-18 rows at
    alpha = 0.1) would be the largest of every draw's largest. inf with too few rows, as
    for one draw."""
    return float(np.median([conformal_quantile(draw, alpha) for draw in draws]))


def device_keys(rows: Any) -> np.ndarray | None:
    """The rows' device keys as strings (None when the rows have no ``device_key``)."""
    if not hasattr(rows, "__getitem__") or "device_key" not in rows:
        return None
    return np.asarray([str(k) for k in rows["device_key"]])


def row_quantiles(wrapper: Any, X: Any, target: str) -> np.ndarray | float:
    """A ``ConformalWrapper``'s q for each row of ``X``: the device's after ``adapt``, the
    new-device q for a device its model has no scale for, else the training q (one float)."""
    q = wrapper.quantiles_.get(target, math.inf)
    new = getattr(wrapper, "device_quantiles_", {}).get(target)
    adapted = getattr(wrapper, "adapted_quantiles_", {})
    keys = device_keys(X) if (new is not None or adapted) and hasattr(wrapper.estimator_, "knows_device") else None
    if keys is None:
        return q
    out = np.full(len(keys), q)
    if new is not None:
        out[~wrapper.estimator_.knows_device(keys)] = new
    for key, quantiles in adapted.items():
        out[keys == key] = quantiles.get(target, q)
    return out


def adapted_device_quantiles(wrapper: Any, rows: Any, labels_of: Callable[[Any], np.ndarray | None] | None = None
                             ) -> dict[str, dict[str, float]]:
    """Device key -> target -> q of a fitted ``ConformalWrapper`` about to adapt to ``rows``
    (a DataFrame): max(training q, median over ``ADAPT_DRAWS`` fold draws of the conformal
    quantile of the K-fold adaptation scores), the new-device q (else the training one) in
    place of a quantile too few rows cannot give. ``labels_of(rows)``: the group labels the
    folds hold out whole (None: rows at random)."""
    usable = ok_rows(rows)
    if "device_key" not in usable or len(usable) == 0:
        return {}
    doubtful = bool(getattr(wrapper.estimator_, "include_doubtful_energy", False))

    def score(adapted: Any, part: Any, target: str) -> np.ndarray:
        scores = log_scores(measured_target(part, target, doubtful), predict_target(adapted, part, target))
        return scores / np.asarray(wrapper._half_widths(part, target, q=1.0), dtype=float)  # σ(x)

    trained = wrapper.quantiles_
    fallback = getattr(wrapper, "device_quantiles_", {})
    out = {}
    for key, mine in usable.groupby(usable["device_key"].astype(str), sort=True):
        labels = labels_of(mine) if labels_of is not None else None
        seeds = [None if wrapper.random_state is None else wrapper.random_state + r for r in range(ADAPT_DRAWS)]
        draws = [adaptation_scores(wrapper.estimator_, mine, tuple(trained), score, seed, labels) for seed in seeds]
        quantiles = {t: repeated_conformal_quantile([d[t] for d in draws], wrapper.alpha) for t in trained}
        out[str(key)] = {t: max(trained[t], q if math.isfinite(q) else fallback.get(t, trained[t]))
                         for t, q in quantiles.items()}
    return out
