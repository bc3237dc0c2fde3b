"""The scores conformal intervals are calibrated on: a model's prediction of a target, the
measured target of profile rows, log residuals, and the split-conformal quantile of scores."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from perfscope.errors import InvalidInputError
from perfscope.models.efficiency import measured_energy_j, measured_latency_s


def conformal_quantile(scores: Any, alpha: float) -> float:
    """The split-conformal quantile: the ceil((n + 1)(1 - alpha))-th smallest score (inf if n is too small)."""
    scores = np.asarray(scores, dtype=float)
    scores = np.sort(scores[np.isfinite(scores)])
    n = len(scores)
    rank = math.ceil((n + 1) * (1 - alpha))
    return float(scores[rank - 1]) if 1 <= rank <= n else math.inf


def model_targets(model: Any) -> tuple[str, ...]:
    """The targets a fitted perfscope model predicts (``targets_``: latency and/or energy)."""
    return tuple(getattr(model, "targets_", ("latency",)))


def predict_target(model: Any, X: Any, target: str) -> np.ndarray:
    """A fitted model's prediction of ``target`` (latency s, energy J or power W) for rows ``X``."""
    if target == "latency":
        return np.asarray(model.predict_latency(X) if hasattr(model, "predict_latency") else model.predict(X),
                          dtype=float)
    if target == "energy":
        return np.asarray(model.predict_energy(X), dtype=float)
    if target == "power":
        if hasattr(model, "predict_power"):
            return np.asarray(model.predict_power(X), dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return predict_target(model, X, "energy") / predict_target(model, X, "latency")
    raise InvalidInputError(f"unknown target {target!r}: latency, energy or power")


def measured_target(rows: Any, target: str, include_doubtful_energy: bool = False) -> np.ndarray:
    """The measured ``target`` of each row (NaN where it has none usable)."""
    if target == "latency":
        return measured_latency_s(rows)
    energy = measured_energy_j(rows, include_doubtful_energy)
    if target == "energy":
        return energy
    if target == "power":
        with np.errstate(divide="ignore", invalid="ignore"):
            return energy / measured_latency_s(rows)
    raise InvalidInputError(f"unknown target {target!r}: latency, energy or power")


def signed_log_residuals(y_true: Any, y_pred: Any) -> np.ndarray:
    """log y - log prediction (NaN where either is missing or not positive)."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    ok = (y_true > 0) & (y_pred > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.log(np.where(ok, y_true, 1.0)) - np.log(np.where(ok, y_pred, 1.0)), np.nan)


def log_scores(y_true: Any, y_pred: Any) -> np.ndarray:
    """|log y - log prediction| (NaN where either is missing or not positive)."""
    return np.abs(signed_log_residuals(y_true, y_pred))
