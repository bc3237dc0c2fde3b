"""Analytical latency models: the roofline with fitted efficiencies, and a log-linear baseline.

``RooflineModel`` (docs/formulas.md, Lavin's efficiency): latency =
bound time / efficiency, where the bound comes from ``perfscope.roofline.feature_columns``
(max of FLOPs/peak, bytes/bandwidth and the launch floor) and the efficiency is the
median measured ``bound / time`` of the row's group. Groups go from fine to coarse
(``levels``): (device, kernel family, dtype, bound regime), (kernel, dtype, regime),
(kernel, dtype), (kernel), then one global median. A group needs ``min_group_rows``
training rows to be used; otherwise the next coarser level answers.

``LogLinearModel``: log time = a + b·log FLOPs + c·log bytes + d·log waves, least
squares: the plain baseline of bench/bench_models.py.

Both follow scikit-learn's conventions (``__init__`` stores parameters, ``fit``
returns self and sets ``*_`` attributes, predicting unfitted raises ``NotFittedError``)
and take profile rows as ``X``: columns (``perfscope.columns``) or a DataFrame of perfscope
schema columns, turned into columns on entry; ``y``, when given, is the latency in seconds
(default: the rows' ``time_median_ms``). Everything inside works on numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.columns import Columns, as_columns, columns_size, take
from perfscope.devices.declared import declared_devices
from perfscope.devices.registry import resolve_row_devices
from perfscope.devicespecs import DeviceFigures, RooflineDevice
from perfscope.errors import InvalidInputError
from perfscope.models.efficiency import Computed, measured_latency_s, ok_mask, roofline_columns
from perfscope.models.estimator_base import LightEstimator, LightRegressorMixin, check_is_fitted

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported only by ``explain`` and ``report``, which return DataFrames: a
# loaded model predicts on column arrays without it.

DEFAULT_LEVELS: tuple[tuple[str, ...], ...] = (
    ("device_key", "kernel", "dtype", "bound"),
    ("kernel", "dtype", "bound"),
    ("kernel", "dtype"),
    ("kernel",),
)
"""Efficiency groups of ``RooflineModel``, finest first; the global median comes last."""


class DeviceFeaturesMixin:
    """Shared by perfscope's row models: device resolution, snapshots and roofline features.

    ``devices`` (a parameter) maps device keys to devices that override resolution;
    ``devices_`` holds a ``DeviceFigures`` snapshot of every device seen in ``fit`` and
    is used first at predict time, so a saved model keeps its training figures.
    """

    devices: Mapping[str, RooflineDevice] | None

    def _snapshot_devices(self, rows: Columns) -> dict[str, DeviceFigures]:
        if "device_key" not in rows:
            raise InvalidInputError("rows have no device_key column: pass perfscope profile rows")
        resolved = resolve_row_devices(rows["device_key"].tolist(),
                                       rows["device_name"].tolist() if "device_name" in rows else None, self.devices,
                                       declared=declared_devices(rows))
        return {key: DeviceFigures.of(device) for key, device in resolved.items()}

    def _features(self, rows: Columns, computed: Computed | None = None) -> Columns:
        """Roofline features of ``rows`` on their devices (``roofline_columns``): the fitted
        snapshots first, then the ``devices`` parameter, then the registry."""
        known: dict[str, RooflineDevice] = dict(self.devices or {})
        known.update(getattr(self, "devices_", {}))
        return roofline_columns(rows, known, computed=computed)


def training_rows(X: Any, y: Any = None) -> tuple[Columns, np.ndarray]:
    """(ok rows as columns, latency in seconds) for ``fit``: ``y`` when given (aligned to
    ``X``), else the measured time."""
    rows = as_columns(X)
    if y is None:
        keep = ok_mask(rows)
        return take(rows, keep), measured_latency_s(rows)[keep]
    y = np.asarray(y, dtype=float)
    size = columns_size(rows)
    if y.shape != (size,):
        raise InvalidInputError(f"y has shape {y.shape}; expected ({size},): one latency (s) per row")
    keep = np.isfinite(y) & (y > 0)
    if "status" in rows:
        keep &= rows["status"].astype(str) == "ok"
    return take(rows, keep), y[keep]


def no_bound_reason(what: str, features: Columns) -> str:
    """One line saying why the ok rows of ``features`` (``roofline_columns``) give ``what``
    (e.g. "a roofline model") nothing to fit: no rows, unknown work, or no device figures."""
    size = columns_size(features)
    if size == 0:
        return f"no rows to fit {what} on: none has status ok and a time"
    flops = np.asarray(features["flops"], dtype=float)
    min_bytes = np.asarray(features["min_bytes"], dtype=float)
    unsized = int((~(np.isfinite(flops) & np.isfinite(min_bytes))).sum())
    peak = np.asarray(features["peak_flops_per_s"], dtype=float)
    bandwidth = np.asarray(features["mem_bandwidth_bytes_per_s"], dtype=float)
    no_figures = int((~(np.isfinite(peak) & np.isfinite(bandwidth))).sum())
    if unsized == 0 and no_figures == 0:
        return (f"no usable roofline bound to fit {what} on: the {size} ok rows have work and device figures, but "
                "no bound and time give a positive, finite ratio")
    return (f"no roofline bound to fit {what} on: of {size} ok rows, {unsized} have no FLOP or byte count (give "
            f"--flops/--bytes at import, or the kernel's sizes) and {no_figures} a device without a peak for their "
            "dtype or a bandwidth (a spec row, --peak-flops/--bandwidth at import, or `perfscope calibrate`)")


def _group_keys(rows: Mapping[str, Any], columns: Sequence[str]) -> list[tuple[str, ...]]:
    """Each row's values of ``columns`` as a tuple of strings ("" where missing or absent)."""
    size = columns_size(rows)
    parts = [[("" if v is None or (isinstance(v, float) and v != v) else str(v)) for v in rows[c].tolist()]
             if c in rows else [""] * size for c in columns]
    return list(zip(*parts, strict=True)) if parts else [()] * size


class RooflineModel(DeviceFeaturesMixin, LightRegressorMixin, LightEstimator):
    """Latency = roofline bound / fitted efficiency of the row's group (see module docstring).

    Parameters: ``levels`` (grouping columns, finest first), ``min_group_rows`` (rows a
    group needs), ``default_efficiency`` (the last fallback; None: the global median of
    the training rows), ``devices`` (device overrides by key).

    Fitted: ``efficiencies_`` (one dict per group: ``level``, ``keys`` (the values of the
    level's columns), ``efficiency``, ``n_rows``), ``global_efficiency_``, ``devices_``,
    ``n_rows_``, ``targets_``.
    """

    def __init__(self, levels: Sequence[Sequence[str]] = DEFAULT_LEVELS, min_group_rows: int = 5,
                 default_efficiency: float | None = None,
                 devices: Mapping[str, RooflineDevice] | None = None) -> None:
        self.levels = levels
        self.min_group_rows = min_group_rows
        self.default_efficiency = default_efficiency
        self.devices = devices

    def fit(self, X: Any, y: Any = None) -> RooflineModel:
        """Fit the group efficiencies (median of bound / measured time) on the ok rows of ``X``."""
        rows, latency_s = training_rows(X, y)
        self.devices_ = self._snapshot_devices(rows)
        features = self._features(rows)
        efficiency = np.asarray(features["bound_time_s"], dtype=float) / latency_s
        keep = np.isfinite(efficiency) & (efficiency > 0)
        if not keep.any():
            raise InvalidInputError(no_bound_reason("a roofline model", features))
        features = take(features, keep)
        efficiency = efficiency[keep]
        records = []
        for level, columns in enumerate(self.levels):
            groups: dict[tuple[str, ...], list[int]] = {}
            for i, key in enumerate(_group_keys(features, columns)):
                groups.setdefault(key, []).append(i)
            for key in sorted(groups):
                members = groups[key]
                if len(members) >= self.min_group_rows:
                    records.append({"level": level, "keys": list(key),
                                    "efficiency": float(np.median(efficiency[members])), "n_rows": len(members)})
        self.efficiencies_ = records
        self.global_efficiency_ = float(self.default_efficiency if self.default_efficiency is not None
                                        else np.median(efficiency))
        self.n_rows_ = int(keep.sum())
        self.targets_ = ("latency",)
        return self

    def _explain_columns(self, X: Any) -> Columns:
        check_is_fitted(self)
        features = self._features(as_columns(X))
        size = columns_size(features)
        efficiency = np.full(size, np.nan)
        level_used = np.full(size, -1, dtype=int)
        for level, columns in enumerate(self.levels):
            todo = np.isnan(efficiency)
            if not todo.any():
                break
            lookup = {tuple(r["keys"]): r["efficiency"] for r in self.efficiencies_ if r["level"] == level}
            if not lookup:
                continue
            found = np.array([lookup.get(key, np.nan) for key in _group_keys(features, columns)], dtype=float)
            fill = todo & np.isfinite(found)
            efficiency[fill] = found[fill]
            level_used[fill] = level
        efficiency = np.where(np.isnan(efficiency), self.global_efficiency_, efficiency)
        bound = np.asarray(features["bound_time_s"], dtype=float)
        return {"bound_time_s": bound, "bound": features["bound"], "efficiency": efficiency,
                "efficiency_level": level_used, "latency_s": bound / efficiency}

    def explain(self, X: Any) -> pd.DataFrame:
        """Per row: ``bound_time_s``, ``bound``, ``efficiency``, ``efficiency_level`` (-1: global) and
        ``latency_s`` (= bound / efficiency), as a DataFrame (on ``X``'s index when it has one)."""
        import pandas as pd  # kept off the light estimate path

        return pd.DataFrame(self._explain_columns(X), index=getattr(X, "index", None))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted latency per row in seconds (NaN where the device has no bound for the dtype)."""
        return self._explain_columns(X)["latency_s"]

    def predict_latency(self, X: Any) -> np.ndarray:
        """Same as ``predict``: latency in seconds."""
        return self.predict(X)

    def report(self) -> pd.DataFrame:
        """The fitted efficiencies, finest level first, with the global default as level -1."""
        import pandas as pd  # kept off the light estimate path

        check_is_fitted(self)
        records = [{"level": r["level"], **dict(zip(self.levels[r["level"]], r["keys"], strict=True)),
                    "efficiency": r["efficiency"], "n_rows": r["n_rows"]} for r in self.efficiencies_]
        records.append({"level": -1, "efficiency": self.global_efficiency_, "n_rows": self.n_rows_})
        return pd.DataFrame(records)

    # -- persistence (see perfscope.models.persistence) ----------------------------------
    def _to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        check_is_fitted(self)
        records = [{"level": int(r["level"]), "keys": [str(k) for k in r["keys"]],
                    "efficiency": float(r["efficiency"]), "n_rows": int(r["n_rows"])} for r in self.efficiencies_]
        state = {"params": {"levels": [list(c) for c in self.levels], "min_group_rows": self.min_group_rows,
                            "default_efficiency": self.default_efficiency},
                 "efficiencies": records, "global_efficiency": self.global_efficiency_, "n_rows": self.n_rows_,
                 "devices": {k: d.to_json_dict() for k, d in self.devices_.items()}}
        return state, {}

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], objects: Mapping[str, Any]) -> RooflineModel:
        params = dict(state["params"])
        params["levels"] = tuple(tuple(c) for c in params["levels"])
        model = cls(**params)
        model.efficiencies_ = [{"level": int(r["level"]), "keys": [str(k) for k in r["keys"]],
                                "efficiency": float(r["efficiency"]), "n_rows": int(r["n_rows"])}
                               for r in state["efficiencies"]]
        model.global_efficiency_ = float(state["global_efficiency"])
        model.n_rows_ = int(state["n_rows"])
        model.devices_ = {k: DeviceFigures.from_json_dict(d) for k, d in state["devices"].items()}
        model.targets_ = ("latency",)
        return model


LOG_LINEAR_FEATURES = ("flops", "min_bytes", "waves")


class LogLinearModel(DeviceFeaturesMixin, LightRegressorMixin, LightEstimator):
    """log10 time = a + b·log10 FLOPs + c·log10 bytes + d·log10 waves (ordinary least squares).

    The plain baseline that the GPPerf README and the issue compare against. ``waves``
    comes from ``feature_columns`` (tile and wave quantisation on the row's device).
    Fitted: ``coef_`` (b, c, d), ``intercept_``, ``devices_``, ``targets_``.
    """

    def __init__(self, devices: Mapping[str, RooflineDevice] | None = None) -> None:
        self.devices = devices

    def _design(self, features: Columns) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.column_stack([np.log10(np.asarray(features[c], dtype=float)) for c in LOG_LINEAR_FEATURES])

    def fit(self, X: Any, y: Any = None) -> LogLinearModel:
        """Least squares in log10 space on the ok rows of ``X``."""
        rows, latency_s = training_rows(X, y)
        self.devices_ = self._snapshot_devices(rows)
        design = self._design(self._features(rows))
        keep = np.isfinite(design).all(axis=1) & np.isfinite(latency_s)
        if keep.sum() < design.shape[1] + 1:
            raise InvalidInputError("too few rows with FLOPs, bytes and waves to fit a log-linear model")
        a = np.column_stack([np.ones(keep.sum()), design[keep]])
        solution, *_ = np.linalg.lstsq(a, np.log10(latency_s[keep]), rcond=None)
        self.intercept_ = float(solution[0])
        self.coef_ = solution[1:]
        self.targets_ = ("latency",)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted latency per row in seconds."""
        check_is_fitted(self)
        design = self._design(self._features(as_columns(X)))
        return 10.0 ** (self.intercept_ + design @ self.coef_)

    def predict_latency(self, X: Any) -> np.ndarray:
        """Same as ``predict``: latency in seconds."""
        return self.predict(X)

    def _to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        check_is_fitted(self)
        return {"features": list(LOG_LINEAR_FEATURES), "intercept": self.intercept_,
                "coef": [float(c) for c in self.coef_],
                "devices": {k: d.to_json_dict() for k, d in self.devices_.items()}}, {}

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], objects: Mapping[str, Any]) -> LogLinearModel:
        model = cls()
        model.intercept_ = float(state["intercept"])
        model.coef_ = np.asarray(state["coef"], dtype=float)
        model.devices_ = {k: DeviceFigures.from_json_dict(d) for k, d in state["devices"].items()}
        model.targets_ = ("latency",)
        return model
