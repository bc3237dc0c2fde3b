"""Honest evaluation of latency and energy models: grouped splits, side by side (docs/models.md).

``split="shape"`` (the default) keeps every row of one shape (kernel family, shape
columns, dtype, batch; *not* the tile, layout or implementation: variants of a shape
stay together) on one side: ``GroupKFold``, or leave-one-shape-out with
``n_splits=None``. ``"random"`` is shuffled ``KFold`` over rows: it leaks
near-replicates of every test shape into training and flatters every model (kept to
compare with published figures). ``"device"`` is leave-one-device-out.
``"extrapolate"`` is one fold: train on the rows whose FLOPs are at most the 75th
percentile (``EXTRAPOLATION_QUANTILE``), predict the larger rest: how a model does
beyond the sizes it saw.

Figures per model and target (latency s, energy J, power W), pooled over the
out-of-fold predictions: R^2 on the raw target (as the GPPerf paper reports it), mean
and median absolute percentage error, the share within ±10%, and, on every split, the
``coverage`` and mean and median relative width (``interval_width_mean``,
``interval_width_median``: (high - low) / prediction) of the 1 - alpha interval. A
model with ``predict_interval`` (``ConformalWrapper``) is judged on its own intervals;
for any other model the interval is the cross-fold conformal one: fold i's rows against the conformal quantile of the
other folds' out-of-fold log residuals, normalised by the fold model's tree spread and
distance from its data where the model has ``interval_difficulty``
(``perfscope.models.intervals``). ``coverage_method`` says which; ``"no intervals"``
(coverage NaN) where none can be made (one fold: nothing to calibrate on).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from perfscope.errors import InvalidInputError
from perfscope.models.efficiency import ok_rows
from perfscope.models.few_shot import adapt_to_chosen
from perfscope.models.groups import context_labels, parameter_groups, shape_groups
from perfscope.models.intervals import (
    conformal_quantile,
    difficulty_scale,
    log_scores,
    measured_target,
    model_targets,
    predict_target,
    spread_offset,
)
from perfscope.models.persistence import to_jsonable
from perfscope.models.ranking import ranking_figures
from perfscope.work import work_and_traffic

SPLITS = ("shape", "random", "device", "extrapolate")
EXTRAPOLATION_QUANTILE = 0.75
"""``split="extrapolate"``: train on rows with FLOPs up to this quantile, predict the larger rest."""

METRIC_COLUMNS = ("n_rows", "n_predicted", "n_groups", "n_folds", "r2", "mean_abs_pct_error",
                  "median_abs_pct_error", "within_10pct", "spearman", "regret", "coverage",
                  "nominal_coverage", "interval_width_mean", "interval_width_median", "coverage_method",
                  "reason")

Progress = Callable[[str], None]
NO_INTERVALS = "no intervals"


def split_folds(rows: pd.DataFrame, split: str = "shape", n_splits: int | None = 5, seed: int = 0,
                group_by: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train positions, test positions) per fold of ``rows`` for a ``split`` (see module docstring).

    ``n_splits=None`` means one fold per group (leave-one-shape-out); more folds than
    groups become one fold per group. ``group_by`` (tunable parameter names) holds out
    unseen combinations of those parameters' values instead of shapes (``split="shape"``).
    """
    # scikit-learn: seconds to import; only fitting needs it
    from sklearn.model_selection import KFold, LeaveOneGroupOut

    if group_by and split == "shape":
        return _grouped(rows, parameter_groups(rows, group_by), n_splits, seed, f"({', '.join(group_by)}) value")
    if split not in SPLITS:
        raise InvalidInputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "random":
        k = 5 if n_splits is None else n_splits
        if not 2 <= k <= len(rows):
            raise InvalidInputError(f"a random split needs 2 <= n_splits <= rows ({len(rows)}), got {k}")
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(rows))
    if split == "extrapolate":
        return [extrapolation_fold(rows)]
    if split == "device":
        labels = pd.factorize(rows["device_key"].astype(str))[0]
        if len(np.unique(labels)) < 2:
            raise InvalidInputError("a device split needs rows from at least two devices")
        return list(LeaveOneGroupOut().split(rows, groups=labels))
    return _grouped(rows, shape_groups(rows), n_splits, seed, "shape")


def extrapolation_fold(rows: Any, quantile: float = EXTRAPOLATION_QUANTILE) -> tuple[np.ndarray, np.ndarray]:
    """(positions of rows with FLOPs up to the ``quantile`` of all rows', positions of the rest)."""
    flops = np.asarray(work_and_traffic(rows)[0], dtype=float)
    missing = int((~np.isfinite(flops)).sum())
    if missing:
        raise InvalidInputError(f"an extrapolation split needs the FLOPs of every row; {missing} rows have none "
                                "(give --flops at import)")
    cut = np.percentile(flops, 100 * quantile)
    train, test = np.flatnonzero(flops <= cut), np.flatnonzero(flops > cut)
    if len(test) == 0:
        raise InvalidInputError("an extrapolation split needs rows of more than one size (FLOPs)")
    return train, test


def _grouped(rows: pd.DataFrame, labels: np.ndarray, n_splits: int | None, seed: int, what: str
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    # scikit-learn: seconds to import; only fitting needs it
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    n_groups = len(np.unique(labels))
    if n_groups < 2:
        hint = " (a one-shape sweep: pass --group-by PARAM1,PARAM2)" if what == "shape" else ""
        raise InvalidInputError(f"a grouped split needs at least two distinct {what}s{hint}")
    if n_splits is None or n_splits >= n_groups:
        return list(LeaveOneGroupOut().split(rows, groups=labels))
    if n_splits < 2:
        raise InvalidInputError(f"n_splits must be at least 2 (or None: leave one {what} out), got {n_splits}")
    return list(GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(rows, groups=labels))


def cross_validated_predictions(models: Mapping[str, Any], rows: pd.DataFrame, split: str = "shape",
                                n_splits: int | None = 5, seed: int = 0, *, include_doubtful_energy: bool = False,
                                targets: tuple[str, ...] = ("latency", "energy", "power"),
                                progress: Progress | None = None,
                                group_by: Sequence[str] | None = None) -> pd.DataFrame:
    """Out-of-fold predictions of every model: one row per (model, target, data row).

    Columns: ``model``, ``target``, ``row`` (position among the ok rows), ``fold``,
    ``group`` (the shape label, or the ``group_by`` combination), ``y_true``, ``y_pred`` and, for models with
    ``predict_interval``, ``low`` and ``high``. Each model is cloned and fitted per fold
    on the ok rows of the training side only, with its ``include_doubtful_energy``
    parameters (nested ones too) set to the value given here. A fold where a model
    refuses to fit (``InvalidInputError``, e.g. no energy rows there) is left out for that
    model: ``n_folds`` of the figures tells; the reasons are kept in
    ``attrs["reasons"]`` (model -> last reason), so a model that never ran is reported
    with its reason rather than dropped. ``context`` labels rows that share everything
    but the tunable parameters (``perfscope.models.ranking``).
    """
    if not models:
        raise InvalidInputError("no models to evaluate")
    data = ok_rows(rows).reset_index(drop=True)
    if len(data) < 2:
        raise InvalidInputError("fewer than two ok rows with a time: nothing to evaluate")
    folds = split_folds(data, split, n_splits, seed, group_by)
    if group_by and split == "shape":
        groups = parameter_groups(data, group_by)
    else:
        groups = shape_groups(data)
    contexts = context_labels(data)
    reasons: dict[str, str] = {}
    truth = {t: measured_target(data, t, include_doubtful_energy) for t in targets}
    records = []
    for name, template in models.items():
        for fold, (train, test) in enumerate(folds):
            if progress is not None:
                progress(f"{name}: fold {fold + 1}/{len(folds)}")
            model = _with_energy_policy(clone(template), include_doubtful_energy)
            try:
                model.fit(data.iloc[train])
            except InvalidInputError as exc:  # e.g. no energy rows on this side: the fold is left out
                reasons[name] = str(exc)
                if progress is not None:
                    progress(f"{name}: fold {fold + 1} left out: {exc}")
                continue
            part = data.iloc[test]
            fitted_targets = model_targets(model)
            difficulty = None  # the fold model's tree spread and distance from its data, per test row
            for target in targets:
                needed = "energy" if target == "power" else target
                if needed not in fitted_targets or not np.isfinite(truth[target][test]).any():
                    continue
                try:
                    predicted = predict_target(model, part, target)
                except InvalidInputError as exc:  # e.g. a device the model has no figures for
                    reasons[name] = str(exc)
                    continue
                frame = {"model": name, "target": target, "row": test, "fold": fold, "group": groups[test],
                         "context": contexts[test], "y_true": truth[target][test], "y_pred": predicted}
                if hasattr(model, "predict_interval") and target in getattr(model, "quantiles_", {}):
                    frame["low"], frame["high"] = model.predict_interval(part, target)
                elif hasattr(model, "interval_difficulty"):
                    if difficulty is None:
                        difficulty = model.interval_difficulty(part)
                    frame["spread"], frame["excess"] = difficulty[:, 0], difficulty[:, 1]
                records.append(pd.DataFrame(frame))
            if split == "device" and hasattr(_adaptable(model), "adapt"):
                records += _few_shot(name, model, data, test, truth["latency"], groups, contexts, fold, seed)
    columns = ["model", "target", "row", "fold", "group", "context", "y_true", "y_pred", "low", "high", "spread",
               "excess", "measured"]
    out = pd.concat(records, ignore_index=True).reindex(columns=columns) if records else pd.DataFrame(columns=columns)
    out.attrs["reasons"] = reasons
    out.attrs["models"] = list(models)
    return out


FEW_SHOT_K = (10, 20, 50)
"""Measured configurations of the held-out device that ``adapt``-able models get on a device split."""
CHOSEN_SUFFIX = "_chosen"
"""Model name suffix of the k-shot rows whose k configurations the model chose (``adapt_to_chosen``)."""


def _few_shot(name: str, model: Any, data: pd.DataFrame, test: np.ndarray, truth: np.ndarray, groups: np.ndarray,
              contexts: np.ndarray, fold: int, seed: int) -> list[pd.DataFrame]:
    """Predictions of ``name+{k}shot`` (the fitted model adapted to k random rows of the
    held-out device) and ``name+{k}shot_chosen`` (k rows the model chose to measure,
    ``perfscope.models.few_shot.adapt_to_chosen``), on every row of the device: the k
    measured ones are flagged ``measured`` (their prediction is their measurement), so
    error figures leave them out and regret counts them (a pick among measured rows is a
    pick too). A ``ConformalWrapper`` adapts and recalibrates on the k rows, as
    ``perfscope train --adapt`` does: its rows carry those intervals."""
    out = []
    rng = np.random.default_rng(seed + fold)
    part = data.iloc[test]
    for k in FEW_SHOT_K:
        if k >= len(test):
            continue
        random_rows = rng.choice(len(test), size=k, replace=False)
        runs = [("", copy.deepcopy(model).adapt(part.iloc[np.sort(random_rows)]), random_rows)]
        if hasattr(model, "predict_latency"):
            runs.append((CHOSEN_SUFFIX, *adapt_to_chosen(copy.deepcopy(model), part, k)))
        for suffix, adapted, chosen in runs:
            measured = np.zeros(len(test), dtype=bool)
            measured[chosen] = True
            frame = {"model": f"{name}+{k}shot{suffix}", "target": "latency", "row": test, "fold": fold,
                     "group": groups[test], "context": contexts[test], "y_true": truth[test],
                     "y_pred": adapted.predict_latency(part), "measured": measured}
            if hasattr(adapted, "predict_interval"):
                frame["low"], frame["high"] = adapted.predict_interval(part)
            out.append(pd.DataFrame(frame))
    return out


def _adaptable(model: Any) -> Any:
    """The part of a fitted model that ``adapt``s to a new device: a wrapper's inner model."""
    return getattr(model, "estimator_", model)


def _with_energy_policy(model: Any, include_doubtful_energy: bool) -> Any:
    """Set every ``include_doubtful_energy`` parameter (nested ones too) so that models
    learn energy from the same rows they are judged on."""
    params = model.get_params(deep=True)
    updates = {k: include_doubtful_energy for k in params
               if k == "include_doubtful_energy" or k.endswith("__include_doubtful_energy")}
    return model.set_params(**updates) if updates else model


def summarize(predictions: pd.DataFrame, alpha: float = 0.1) -> pd.DataFrame:
    """The figures of ``evaluate`` from ``cross_validated_predictions`` output; a model
    with no predictions at all gets a row with its ``reason`` and no figures."""
    rows = []
    for (name, target), part in predictions.groupby(["model", "target"], sort=False):
        part = part[np.isfinite(part["y_true"].to_numpy(dtype=float))]
        # few-shot rows measured on the device: in the pick (regret), not in the error figures
        measured = part["measured"].fillna(False).to_numpy(dtype=bool) if "measured" in part else None
        picked = part
        if measured is not None and measured.any():
            part = part[~measured]
        y = part["y_true"].to_numpy(dtype=float)
        p = part["y_pred"].to_numpy(dtype=float)
        ok = np.isfinite(p)
        pct = np.abs(p[ok] / y[ok] - 1.0)
        coverage, method, width = _coverage(part[ok], alpha)
        spearman, regret = (ranking_figures(y, p, part["context"].to_numpy()) if target == "latency"
                            else (np.nan, np.nan))
        if target == "latency" and picked is not part:
            regret = ranking_figures(picked["y_true"].to_numpy(dtype=float), picked["y_pred"].to_numpy(dtype=float),
                                     picked["context"].to_numpy())[1]
        rows.append({
            "model": name, "target": target, "n_rows": int(len(part)), "n_predicted": int(ok.sum()),
            "n_groups": int(part["group"].nunique()), "n_folds": int(part["fold"].nunique()),
            "r2": _r2(y[ok], p[ok]), "mean_abs_pct_error": float(np.mean(pct)) * 100 if ok.any() else np.nan,
            "median_abs_pct_error": float(np.median(pct)) * 100 if ok.any() else np.nan,
            "within_10pct": float(np.mean(pct <= 0.10)) if ok.any() else np.nan,
            "spearman": spearman, "regret": regret, "reason": None,
            "coverage": coverage, "nominal_coverage": 1.0 - alpha,
            "interval_width_mean": width[0], "interval_width_median": width[1], "coverage_method": method,
        })
    seen = {r["model"] for r in rows}
    reasons = predictions.attrs.get("reasons", {})
    for name in predictions.attrs.get("models", []):
        if name not in seen:
            rows.append({"model": name, "target": "latency", "n_rows": 0, "n_predicted": 0,
                         "reason": reasons.get(name, "the model made no predictions on this split")})
    return pd.DataFrame(rows, columns=["model", "target", *METRIC_COLUMNS])


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    if len(y) < 2:
        return float("nan")
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - p) ** 2) / total) if total > 0 else float("nan")


def _coverage(part: pd.DataFrame, alpha: float) -> tuple[float, str, tuple[float, float]]:
    """(coverage, method, (mean, median) relative width (high - low) / prediction) of one model and target's
    out-of-fold predictions (see the module docstring); NaN and ``"no intervals"`` when none can be made."""
    if len(part) == 0:
        return float("nan"), NO_INTERVALS, (float("nan"), float("nan"))
    y = part["y_true"].to_numpy(dtype=float)
    prediction = part["y_pred"].to_numpy(dtype=float)
    if part["low"].notna().any():
        low = part["low"].to_numpy(dtype=float)
        high = part["high"].to_numpy(dtype=float)
        return float(np.mean((y >= low) & (y <= high))), "own intervals", _widths(low, high, prediction)
    scores = log_scores(y, prediction)
    normalised = part["spread"].notna().all()
    folds = part["fold"].to_numpy()
    if len(np.unique(folds)) < 2:
        return float("nan"), NO_INTERVALS, (float("nan"), float("nan"))
    inside = np.zeros(len(part), dtype=bool)
    half = np.full(len(part), np.inf)
    for fold in np.unique(folds):
        mine = folds == fold
        if normalised:
            difficulty = part[["spread", "excess"]].to_numpy(dtype=float)
            beta = spread_offset(difficulty[~mine, 0])
            scale = difficulty_scale(difficulty, beta)
            half[mine] = conformal_quantile(scores[~mine] / scale[~mine], alpha) * scale[mine]
        else:
            half[mine] = conformal_quantile(scores[~mine], alpha)
        inside[mine] = scores[mine] <= half[mine]
    low, high = prediction * np.exp(-half), prediction * np.exp(half)
    method = "cross-fold, normalised" if normalised else "cross-fold"
    return float(np.mean(inside)), method, _widths(low, high, prediction)


def _widths(low: np.ndarray, high: np.ndarray, prediction: np.ndarray) -> tuple[float, float]:
    """(mean, median) of (high - low) / prediction: the mean is pulled up by a few very wide ones."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        width = (high - low) / prediction
    width = width[~np.isnan(width)]
    return (float(np.mean(width)), float(np.median(width))) if len(width) else (float("nan"), float("nan"))


def to_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """``evaluate``'s table as JSON-ready records (NaN becomes None): ``perfscope evaluate --json``."""
    return to_jsonable(table.to_dict(orient="records"))


def evaluate(models: Mapping[str, Any], rows: pd.DataFrame, split: str = "shape", n_splits: int | None = 5,
             seed: int = 0, *, alpha: float = 0.1, include_doubtful_energy: bool = False,
             progress: Progress | None = None, group_by: Sequence[str] | None = None) -> pd.DataFrame:
    """Cross-validate every model on ``rows`` and return their figures side by side.

    One row per (model, target) with ``METRIC_COLUMNS``: errors in percent,
    ``within_10pct`` and coverages as shares, ``interval_width_mean`` and
    ``interval_width_median`` the mean and median relative width of the interval. Targets: latency always;
    energy and power where the model learnt energy and rows have usable measured energy
    (``include_doubtful_energy`` admits rows marked doubtful). See the module docstring
    for the splits.
    """
    predictions = cross_validated_predictions(models, rows, split, n_splits, seed,
                                              include_doubtful_energy=include_doubtful_energy, progress=progress,
                                              group_by=group_by)
    table = summarize(predictions, alpha)
    table.insert(2, "split", split)
    return table
