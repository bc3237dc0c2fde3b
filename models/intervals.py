"""Conformal prediction intervals on grouped residuals, in log space, for any model.

The score of a row is its absolute log residual |log y - log prediction|, taken only
on rows whose group (by default their shape: ``perfscope.models.evaluation.shape_groups``)
the predicting model never saw, so the scores are those of unseen shapes, which is
what the interval must cover. The interval of a new row is
``prediction · exp(±q·σ(x))`` with q the ceil((n + 1)(1 - alpha))-th smallest of the n
scores (Vovk et al.; Lei et al. 2018, "Distribution-free predictive inference for
regression").

Normalised scores (``normalise="spread"``, the default for forests: models with an
``interval_difficulty`` hook; otherwise σ = 1): the score is divided by
σ(x) = (s(x) + β)·(1 + γ·d(x)) (``perfscope.models.interval_difficulty``): s the trees'
spread, β its median over the calibration rows, d the importance-weighted distance beyond
the training values, γ = ``distance_scale`` (1 unless given). Intervals are wide where the
model is unsure or beyond its data, narrow where it is not.

Guarantees. Split conformal (``method="split"``) covers with probability at least
1 - alpha when the calibration groups and the new row's group are exchangeable, and
normalising by any σ fitted without the calibration rows keeps that (Lei et al. 2018);
a handful of calibration groups give a noisy q. ``method="cv"`` (default) is
cross-conformal with a refit (grouped K-fold scores, then a fit on every row). It is
*not* CV+: the interval is centred on the refitted model with one pooled quantile, so
Barber et al.'s (2021) 1 - 2·alpha bound, which holds for CV+ and jackknife+, does not
apply; there is no finite-sample guarantee, only measured coverage. No method holds
under extrapolation: rows beyond the training data (larger sizes, another GPU) are not
exchangeable with the calibration rows, and d(x) is a heuristic that widens intervals
there (γ is a fixed prior: see ``perfscope.models.interval_difficulty``). A device the
model has no scale for gets a new-device q, and an adapted device one from its measured
rows (``perfscope.models.device_intervals``: GPUs taken as exchangeable). Check the measured
coverage (``coverage``; ``perfscope.models.evaluation``
reports it for every split).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from perfscope.columns import Columns, as_columns, columns_size, group_codes, take
from perfscope.errors import InvalidInputError, ModelFileError
from perfscope.models import device_intervals
from perfscope.models.efficiency import ok_mask
from perfscope.models.estimator_base import LightEstimator, check_is_fitted
from perfscope.models.groups import SHAPE_COLUMNS as SHAPE_COLUMNS  # re-exported
from perfscope.models.groups import ParameterGroups
from perfscope.models.interval_difficulty import design_range as design_range  # re-exported
from perfscope.models.interval_difficulty import difficulty_scale, spread_offset
from perfscope.models.interval_difficulty import forest_difficulty as forest_difficulty  # re-exported
from perfscope.models.interval_difficulty import out_of_range_distance as out_of_range_distance  # re-exported
from perfscope.models.interval_scores import conformal_quantile as conformal_quantile  # re-exported
from perfscope.models.interval_scores import log_scores as log_scores  # re-exported
from perfscope.models.interval_scores import measured_target as measured_target  # re-exported
from perfscope.models.interval_scores import model_targets as model_targets  # re-exported
from perfscope.models.interval_scores import predict_target as predict_target  # re-exported
from perfscope.models.interval_scores import signed_log_residuals

# numpy only (scikit-learn in ``fit``): a loaded wrapper predicts on column arrays.
METHODS = ("cv", "split")
NORMALISERS = ("auto", "spread", "none")
GROUPINGS = ("shape", "device", "row")


def group_labels(rows: Columns, groups: Any) -> np.ndarray:
    """Integer group labels of ``rows``: ``"shape"``, ``"device"``, ``"row"`` (each row alone),
    a callable ``rows -> labels``, or labels aligned with the rows."""
    size = columns_size(rows)
    if isinstance(groups, str):
        if groups == "shape":
            columns = [c for c in SHAPE_COLUMNS if c in rows]
            if not columns:
                raise InvalidInputError("rows have none of the shape columns (kernel, m, n, k, ...)")
            return group_codes(rows, columns)
        if groups == "device":
            return group_codes(rows, ["device_key"])
        if groups == "row":
            return np.arange(size)
        raise InvalidInputError(f"groups must be one of {GROUPINGS}, a callable or labels; got {groups!r}")
    labels = groups(rows) if callable(groups) else groups
    labels = np.asarray(labels)
    if labels.shape != (size,):
        raise InvalidInputError(f"groups has {labels.shape[0] if labels.ndim else 0} labels for {size} rows")
    return group_codes({"label": labels}, ["label"])


class ConformalWrapper(LightEstimator):
    """Any perfscope model plus conformal intervals in log space (see module docstring).

    Parameters: ``estimator`` (an unfitted perfscope model), ``alpha`` (miscoverage: 0.1 for
    90% intervals), ``groups`` (``"shape"``, ``"device"``, ``"row"``, a callable, or
    labels aligned with the rows given to ``fit``), ``method`` (``"cv"`` or
    ``"split"``), ``n_splits`` (folds of ``"cv"``), ``calibration_fraction`` (share of
    groups held out by ``"split"``), ``random_state``, ``normalise`` (``"auto"``:
    ``"spread"`` for a model with ``interval_difficulty``, else ``"none"``), ``distance_scale``
    (γ of σ: how strongly the distance beyond the training data widens the interval; 0 for
    the tree spread alone).

    Fitted: ``estimator_``, ``quantiles_`` (q per target, log units or units of σ),
    ``normaliser_`` (``"spread"`` or ``"none"``), ``beta_`` (β of σ),
    ``n_calibration_rows_`` and ``n_calibration_groups_`` per target, ``targets_``,
    ``device_quantiles_`` (new-device q per target), ``adapted_quantiles_`` (device -> q per target).
    """

    def __init__(self, estimator: Any, alpha: float = 0.1, groups: str | Callable[..., Any] | Any = "shape",
                 method: str = "cv", n_splits: int = 5, calibration_fraction: float = 0.25,
                 random_state: int | None = 0, normalise: str = "auto", distance_scale: float = 1.0) -> None:
        self.estimator = estimator
        self.alpha = alpha
        self.groups = groups
        self.method = method
        self.n_splits = n_splits
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state
        self.normalise = normalise
        self.distance_scale = distance_scale

    def _normaliser(self) -> str:
        if self.normalise not in NORMALISERS:
            raise InvalidInputError(f"normalise must be one of {NORMALISERS}, got {self.normalise!r}")
        if self.normalise == "auto":
            return "spread" if hasattr(self.estimator, "interval_difficulty") else "none"
        if self.normalise == "spread" and not hasattr(self.estimator, "interval_difficulty"):
            raise InvalidInputError(f"{type(self.estimator).__name__} has no tree spread: use normalise='none'")
        return self.normalise

    def fit(self, X: Any, y: Any = None, out_of_fold: Any = None) -> ConformalWrapper:
        """Fit the model and calibrate its intervals on unseen-group residuals of ``X``'s ok rows.

        ``out_of_fold``: this model's rows of ``perfscope.models.evaluation.cross_validated_predictions``
        on the same rows with the same grouped folds (``train`` passes them): the scores are
        taken from them instead of fitting the K fold models again (``method="cv"`` only)."""
        from sklearn.base import clone  # seconds to import; only fitting needs it
        from sklearn.model_selection import GroupKFold, GroupShuffleSplit

        if not 0 < self.alpha < 1:
            raise InvalidInputError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.method not in METHODS:
            raise InvalidInputError(f"method must be one of {METHODS}, got {self.method!r}")
        if not (math.isfinite(self.distance_scale) and self.distance_scale >= 0):
            raise InvalidInputError(f"distance_scale must be a finite number >= 0, got {self.distance_scale}")
        self.normaliser_ = self._normaliser()
        given = as_columns(X)
        if out_of_fold is not None and self.method == "cv":
            rows = take(given, ok_mask(given))
            self.estimator_ = clone(self.estimator).fit(rows)
            samples = {target: [(part["y_true"].to_numpy(dtype=float), part["y_pred"].to_numpy(dtype=float),
                                 _difficulty_columns(part) if self.normaliser_ == "spread" else None,
                                 part["group"].to_numpy())]
                       for target, part in out_of_fold.groupby("target", sort=False)}
            keys = device_intervals.device_keys(given)
            return self._calibrate(samples, {target: [keys[part["row"].to_numpy()] if keys is not None else None]
                                             for target, part in out_of_fold.groupby("target", sort=False)})
        labels_all = group_labels(given, self.groups) if not isinstance(self.groups, str) else None
        keep = ok_mask(given)
        rows = take(given, keep)
        labels = labels_all[keep] if labels_all is not None else group_labels(rows, self.groups)
        n_groups = len(np.unique(labels))
        if n_groups < 2:
            raise InvalidInputError("conformal calibration needs rows from at least two groups (shapes)")
        doubtful = bool(getattr(self.estimator, "include_doubtful_energy", False))
        if self.method == "split":
            splitter = GroupShuffleSplit(n_splits=1, test_size=self.calibration_fraction,
                                         random_state=self.random_state)
            folds = list(splitter.split(labels, groups=labels))
        else:
            folds = list(GroupKFold(n_splits=min(self.n_splits, n_groups), shuffle=True,
                                    random_state=self.random_state).split(labels, groups=labels))
        samples: dict[str, list[Any]] = {}
        devices: dict[str, list[Any]] = {}
        keys = device_intervals.device_keys(rows)
        fitted = None
        for train, test in folds:
            fitted = clone(self.estimator).fit(take(rows, train))
            part = take(rows, test)
            difficulty = fitted.interval_difficulty(part) if self.normaliser_ == "spread" else None
            for target in model_targets(fitted):
                samples.setdefault(target, []).append((measured_target(part, target, doubtful),
                                                       predict_target(fitted, part, target), difficulty,
                                                       labels[test]))
                devices.setdefault(target, []).append(keys[test] if keys is not None else None)
        self.estimator_ = fitted if self.method == "split" else clone(self.estimator).fit(rows)
        return self._calibrate(samples, devices)

    def _calibrate(self, samples: Mapping[str, list[Any]],
                   devices: Mapping[str, list[Any]] | None = None) -> ConformalWrapper:
        """q per target from (truth, prediction, difficulty or None, group labels) per fold, and
        with the device keys of those rows (``devices``), the new-device q
        (``perfscope.models.device_intervals``) when the model has ``scale_errors``."""
        self.quantiles_ = {}
        self.device_quantiles_: dict[str, float] = {}
        self.adapted_quantiles_: dict[str, dict[str, float]] = {}
        errors = self.estimator_.scale_errors() if hasattr(self.estimator_, "scale_errors") else {}
        self.n_calibration_rows_ = {}
        self.n_calibration_groups_ = {}
        latency = samples.get("latency", [])
        spreads = [d[:, 0] for *_, d, _ in latency if d is not None]
        self.beta_ = spread_offset(np.concatenate(spreads)) if spreads else 1.0
        if self.normaliser_ == "spread" and not spreads:
            self.normaliser_ = "none"
        for target in model_targets(self.estimator_):
            parts = samples.get(target, [])
            signed = np.concatenate([signed_log_residuals(t, p) for t, p, *_ in parts]) if parts else np.array([])
            s = np.abs(signed)  # the log scores
            g = np.concatenate([labels for *_, labels in parts]) if parts else np.array([], dtype=int)
            sigma: np.ndarray | float = 1.0
            if self.normaliser_ == "spread" and parts:
                sigma = np.concatenate([difficulty_scale(d, self.beta_, self.distance_scale) for *_, d, _ in parts])
                s = s / sigma
            finite = np.isfinite(s)
            self.quantiles_[target] = conformal_quantile(s[finite], self.alpha)
            keys = (devices or {}).get(target, [])
            if errors and parts and keys and all(k is not None for k in keys):
                all_keys = np.concatenate(keys).astype(str)
                new = device_intervals.new_device_scores(signed, sigma, all_keys, errors)
                self.device_quantiles_[target] = max(self.quantiles_[target], device_intervals.device_level_quantile(
                    new, all_keys, self.alpha))
            self.n_calibration_rows_[target] = int(finite.sum())
            self.n_calibration_groups_[target] = int(len(np.unique(g[finite])))
        self.targets_ = model_targets(self.estimator_)
        return self

    def adapt(self, rows: Any) -> ConformalWrapper:
        """Adapt the wrapped model to the devices of ``rows``' measured ok rows (its ``adapt``)
        and recalibrate each device's interval on those rows: K-fold adaptation residuals
        (``perfscope.models.device_intervals``), the device's q being the larger of the
        training q and their conformal quantile (the new-device q with too few rows)."""
        check_is_fitted(self)
        if not hasattr(self.estimator_, "adapt"):
            raise InvalidInputError(f"{type(self.estimator_).__name__} cannot adapt to a new device")
        recalibrated = device_intervals.adapted_device_quantiles(self, rows, self._new_group_labels)  # before adapting
        self.estimator_.adapt(rows)
        self.adapted_quantiles_ = {**getattr(self, "adapted_quantiles_", {}), **recalibrated}
        return self

    def _new_group_labels(self, rows: Any) -> np.ndarray | None:
        """The calibration's groups of other rows (a device's adaptation rows), so that
        their folds hold out whole groups too; None where ``groups`` cannot label new rows
        (labels given at fit, a callable lost in a save) or gives one group."""
        if not (callable(self.groups) or (isinstance(self.groups, str) and self.groups in ("shape", "device"))):
            return None
        try:
            labels = group_labels(as_columns(rows), self.groups)
        except (InvalidInputError, KeyError, TypeError, ValueError):
            return None
        return labels if len(np.unique(labels)) > 1 else None

    def predict(self, X: Any) -> np.ndarray:
        """The wrapped model's ``predict`` (latency in seconds for perfscope's latency models)."""
        check_is_fitted(self)
        return self.estimator_.predict(X)

    def predict_latency(self, X: Any) -> np.ndarray:
        """The wrapped model's latency (s)."""
        check_is_fitted(self)
        return predict_target(self.estimator_, X, "latency")

    def predict_energy(self, X: Any) -> np.ndarray:
        """The wrapped model's energy per call (J)."""
        check_is_fitted(self)
        return predict_target(self.estimator_, X, "energy")

    def _half_widths(self, X: Any, target: str, difficulty: np.ndarray | None = None,
                     q: np.ndarray | float | None = None) -> np.ndarray | float:
        """q·σ(x) per row (log units); σ of the latency for every target of the model."""
        q = device_intervals.row_quantiles(self, X, target) if q is None else q
        if self.normaliser_ != "spread" or not np.isfinite(q).any():
            return q
        if difficulty is None:
            difficulty = self.estimator_.interval_difficulty(X)
        return q * difficulty_scale(difficulty, self.beta_, self.distance_scale)

    def predict_interval(self, X: Any, target: str = "latency") -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the 1 - alpha interval of ``target`` per row: prediction · exp(∓q·σ(x))."""
        check_is_fitted(self)
        if target not in self.quantiles_:
            raise InvalidInputError(f"no interval for {target!r}: this model predicts {', '.join(self.targets_)}")
        return _bounds(predict_target(self.estimator_, X, target), self._half_widths(X, target))

    def predict_with_intervals(self, X: Any, **options: Any) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(prediction, low, high) of every target, predicting each once (one feature pass when the
        wrapped model has ``predict_targets``, as ``ForestModel`` does). ``X``: profile rows, or a
        mapping of column arrays for a wrapped model that takes one (``ForestModel``: no pandas);
        ``options`` (``computed=``) go to its ``predict_targets``."""
        check_is_fitted(self)
        difficulty = None
        if hasattr(self.estimator_, "predict_targets"):
            normalised = self.normaliser_ == "spread"
            predictions = dict(self.estimator_.predict_targets(X, **options, **({"with_difficulty": True}
                                                                                 if normalised else {})))
            difficulty = predictions.pop("difficulty", None)
        else:
            predictions = {target: predict_target(self.estimator_, X, target) for target in self.quantiles_}
        out = {}
        for target, prediction in predictions.items():
            out[target] = (prediction, *_bounds(prediction, self._half_widths(X, target, difficulty)))
        return out

    def coverage(self, X: Any, target: str = "latency") -> float:
        """Share of ``X``'s rows with a measured ``target`` that fall inside their interval
        (use held-out shapes: on training rows it is optimistic)."""
        given = as_columns(X)
        rows = take(given, ok_mask(given))
        truth = measured_target(rows, target, bool(getattr(self.estimator_, "include_doubtful_energy", False)))
        low, high = self.predict_interval(rows, target)
        has = np.isfinite(truth)
        if not has.any():
            raise InvalidInputError(f"no row has a measured {target} to check coverage against")
        return float(np.mean((truth[has] >= low[has]) & (truth[has] <= high[has])))

    # -- persistence (the wrapped model is saved by perfscope.models.persistence) --------
    def _to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        check_is_fitted(self)
        groups = self.groups if isinstance(self.groups, str) else (
            {"parameters": list(self.groups.names)} if isinstance(self.groups, ParameterGroups) else "custom")
        return {"params": {"alpha": self.alpha, "groups": groups, "method": self.method, "n_splits": self.n_splits,
                           "calibration_fraction": self.calibration_fraction, "random_state": self.random_state,
                           "normalise": self.normalise, "distance_scale": self.distance_scale},
                "quantiles": {k: (v if math.isfinite(v) else None) for k, v in self.quantiles_.items()},
                "normaliser": self.normaliser_, "beta": self.beta_,
                "n_calibration_rows": self.n_calibration_rows_,
                "n_calibration_groups": self.n_calibration_groups_,
                "device_quantiles": {k: (v if math.isfinite(v) else None) for k, v in self.device_quantiles_.items()},
                "adapted_quantiles": {d: {k: (v if math.isfinite(v) else None) for k, v in qs.items()}
                                      for d, qs in self.adapted_quantiles_.items()}}, {}

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], objects: Mapping[str, Any], model: Any) -> ConformalWrapper:
        params = dict(state["params"])
        if isinstance(params.get("groups"), Mapping):  # held-out parameter combinations
            names = params["groups"].get("parameters")
            if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
                raise ModelFileError(f"saved interval groups name no parameters: {params['groups']!r}")
            params["groups"] = ParameterGroups(names)
        wrapper = cls(estimator=model, **params)
        wrapper.estimator_ = model
        wrapper.quantiles_ = {k: (float(v) if v is not None else math.inf) for k, v in state["quantiles"].items()}
        # bundles written before normalised scores carry plain quantiles
        wrapper.normaliser_ = str(state.get("normaliser", "none"))
        if wrapper.normaliser_ not in ("spread", "none"):
            raise ModelFileError(f"unknown interval normaliser {wrapper.normaliser_!r} in the saved model")
        wrapper.beta_ = float(state.get("beta", 1.0))
        wrapper.n_calibration_rows_ = {k: int(v) for k, v in state["n_calibration_rows"].items()}
        wrapper.n_calibration_groups_ = {k: int(v) for k, v in state["n_calibration_groups"].items()}
        wrapper.targets_ = model_targets(model)
        # bundles written before new-device intervals have neither
        wrapper.device_quantiles_ = {k: (float(v) if v is not None else math.inf)
                                     for k, v in state.get("device_quantiles", {}).items()}
        wrapper.adapted_quantiles_ = {d: {k: (float(v) if v is not None else math.inf) for k, v in qs.items()}
                                      for d, qs in state.get("adapted_quantiles", {}).items()}
        return wrapper


def _bounds(prediction: np.ndarray, half_width: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(prediction·exp(-h), prediction·exp(h)); low 0 where h is infinite (too few calibration rows)."""
    with np.errstate(over="ignore"):
        low = np.where(np.isfinite(half_width), prediction * np.exp(-np.minimum(half_width, 700.0)), 0.0)
        high = prediction * np.exp(np.minimum(half_width, 700.0))
    return np.asarray(low, dtype=float), np.where(np.isfinite(half_width), high, np.inf)


def _difficulty_columns(part: Any) -> np.ndarray | None:
    """The ``spread`` and ``excess`` columns of out-of-fold predictions (None when not recorded)."""
    if "spread" not in part or not part["spread"].notna().all():
        return None
    return part[["spread", "excess"]].to_numpy(dtype=float)
