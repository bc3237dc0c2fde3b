"""Analytical latency models: the roofline with fitted efficiencies, and a log-linear baseline.

``RooflineModel`` (docs/formulas.md, Lavin's efficiency): latency =
bound time / efficiency, where the bound comes from ``perfscope.roofline.feature_frame``
(max of FLOPs/peak, bytes/bandwidth and the launch floor) and the efficiency is the
median measured ``bound / time`` of the row's group. Groups go from fine to coarse
(``levels``): (device, kernel family, dtype, bound regime), (kernel, dtype, regime),
(kernel, dtype), (kernel), then one global median. A group needs ``min_group_rows``
training rows to be used; otherwise the next coarser level answers.

``LogLinearModel``: log time = a + b·log FLOPs + c·log bytes + d·log waves, least
squares: the plain baseline of bench/bench_models.py.

Both follow scikit-learn's conventions (``__init__`` stores parameters, ``fit``
returns self and sets ``*_`` attributes, predicting unfitted raises ``NotFittedError``)
and take profile rows (a DataFrame of perfscope schema columns) as ``X``; ``y``, when
given, is the latency in seconds (default: the rows' ``time_median_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.devices.registry import resolve_row_devices
from perfscope.devicespecs import NO_DEVICE, DeviceFigures, RooflineDevice
from perfscope.errors import UserInputError
from perfscope.models.persistence import LightEstimator, LightRegressorMixin, RecordsFrame, check_is_fitted
from perfscope.roofline import Rows, columns_size, feature_columns, is_frame

if TYPE_CHECKING:
    import pandas as pd

# pandas and perfscope.models.efficiency (which imports it) are imported inside the
# functions that take frames: a loaded model predicts on column arrays without them.

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

    def _snapshot_devices(self, rows: Rows) -> dict[str, DeviceFigures]:
        if "device_key" not in rows:
            raise UserInputError("rows have no device_key column: pass perfscope profile rows")
        resolved = resolve_row_devices(_cells(rows["device_key"]),
                                       _cells(rows["device_name"]) if "device_name" in rows else None, self.devices)
        return {key: DeviceFigures.of(device) for key, device in resolved.items()}

    def _features(self, rows: Rows, computed: Computed | None = None) -> Any:
        """Roofline features of ``rows`` on their devices: a frame for a DataFrame
        (``roofline_features``), a column mapping for a column mapping (``roofline_columns``,
        which takes ``computed``)."""
        known: dict[str, RooflineDevice] = dict(self.devices or {})
        known.update(getattr(self, "devices_", {}))
        if is_frame(rows):
            from perfscope.models.efficiency import roofline_features

            return roofline_features(rows, known)
        return roofline_columns(rows, known, computed=computed)


Computed = tuple[RooflineDevice, Mapping[str, Any]]
"""``(device, feature_columns(rows, device))``: features a caller has already computed for the rows."""


def roofline_columns(rows: Mapping[str, Any], devices: Mapping[str, RooflineDevice] | None = None, *,
                     computed: Computed | None = None) -> dict[str, np.ndarray]:
    """``perfscope.models.efficiency.roofline_features`` for a column mapping, without pandas:
    ``perfscope.roofline.feature_columns`` of each row on its own device (``device_key``,
    then ``device_name``, resolved by ``perfscope.devices.registry.resolve_row_devices``;
    ``devices`` by key first).

    ``computed``: ``(device, feature_columns(rows, device))`` when the caller has them (an
    estimate computes them for its output): returned as they are when every row resolves
    to a device with the same figures (``DeviceFigures``), since features depend on the
    rows and those figures only.
    """
    size = columns_size(rows)
    if size == 0:
        return feature_columns(rows, NO_DEVICE)
    if "device_key" not in rows:
        raise UserInputError("rows have no device_key column: pass perfscope profile rows")
    keys = np.asarray(rows["device_key"]).astype(str)
    names = np.asarray(rows["device_name"], dtype=object) if "device_name" in rows else np.empty(size, dtype=object)
    _, first = np.unique(keys, return_index=True)
    first.sort()  # each key's first row, in the order the keys appear
    unique = keys[first].tolist()
    resolved = resolve_row_devices(unique, names[first].tolist(), devices)
    if len(unique) == 1:
        device = resolved[unique[0]]
        if computed is not None and DeviceFigures.of(computed[0]) == DeviceFigures.of(device):
            return dict(computed[1])
        return feature_columns(rows, device)
    positions = [np.flatnonzero(keys == key) for key in unique]
    parts = [feature_columns({c: np.asarray(v)[where] for c, v in rows.items()}, resolved[key])
             for key, where in zip(unique, positions, strict=True)]
    order = np.argsort(np.concatenate(positions), kind="stable")
    return {column: np.concatenate([part[column] for part in parts])[order] for column in parts[0]}


def _cells(values: Any) -> list[Any]:
    """A column (array, list or pandas Series) as a list of its cells."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def training_rows(X: pd.DataFrame, y: Any = None) -> tuple[pd.DataFrame, np.ndarray]:
    """(ok rows, latency in seconds) for ``fit``: ``y`` when given (aligned to ``X``), else measured."""
    from perfscope.models.efficiency import measured_latency_s, ok_rows

    if not is_frame(X):
        raise UserInputError("X must be a pandas DataFrame of profile rows "
                             "(ProfileStore(...).read().table.to_pandas())")
    if y is not None:
        y = np.asarray(y, dtype=float)
        if y.shape != (len(X),):
            raise UserInputError(f"y has shape {y.shape}; expected ({len(X)},): one latency (s) per row")
        keep = np.isfinite(y) & (y > 0)
        if "status" in X:
            keep &= (X["status"].astype(str) == "ok").to_numpy()
        return X[keep], y[keep]
    rows = ok_rows(X)
    return rows, measured_latency_s(rows)


def _check_rows(X: Any) -> pd.DataFrame:
    if not is_frame(X):
        raise UserInputError("X must be a pandas DataFrame of profile rows")
    return X


def _key_index(frame: pd.DataFrame, columns: Sequence[str]) -> pd.MultiIndex:
    import pandas as pd

    return pd.MultiIndex.from_arrays([frame[c].astype(object).where(frame[c].notna(), "").astype(str).to_numpy()
                                      if c in frame else np.full(len(frame), "") for c in columns],
                                     names=list(columns))


class RooflineModel(DeviceFeaturesMixin, LightRegressorMixin, LightEstimator):
    """Latency = roofline bound / fitted efficiency of the row's group (see module docstring).

    Parameters: ``levels`` (grouping columns, finest first), ``min_group_rows`` (rows a
    group needs), ``default_efficiency`` (the last fallback; None: the global median of
    the training rows), ``devices`` (device overrides by key).

    Fitted: ``efficiencies_`` (one row per group: level, its columns, ``efficiency``,
    ``n_rows``), ``global_efficiency_``, ``devices_``, ``n_rows_``, ``targets_``.
    """

    efficiencies_ = RecordsFrame()

    def __init__(self, levels: Sequence[Sequence[str]] = DEFAULT_LEVELS, min_group_rows: int = 5,
                 default_efficiency: float | None = None,
                 devices: Mapping[str, RooflineDevice] | None = None) -> None:
        self.levels = levels
        self.min_group_rows = min_group_rows
        self.default_efficiency = default_efficiency
        self.devices = devices

    def fit(self, X: pd.DataFrame, y: Any = None) -> RooflineModel:
        """Fit the group efficiencies (median of bound / measured time) on the ok rows of ``X``."""
        import pandas as pd

        rows, latency_s = training_rows(X, y)
        self.devices_ = self._snapshot_devices(rows)
        frame = self._features(rows)
        efficiency = frame["bound_time_s"].to_numpy(dtype=float) / latency_s
        keep = np.isfinite(efficiency) & (efficiency > 0)
        if not keep.any():
            raise UserInputError("no rows to fit a roofline model on: they need status ok, a time and a device "
                                 "with a peak for their dtype")
        frame = frame[keep]
        efficiency = efficiency[keep]
        tables = []
        for level, columns in enumerate(self.levels):
            series = pd.Series(efficiency, index=_key_index(frame, columns))
            grouped = series.groupby(level=list(range(len(columns))), sort=True)
            table = pd.DataFrame({"efficiency": grouped.median(), "n_rows": grouped.size()})
            table = table[table["n_rows"] >= self.min_group_rows].reset_index()
            table.insert(0, "level", level)
            tables.append(table)
        self.efficiencies_ = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        self.global_efficiency_ = float(self.default_efficiency if self.default_efficiency is not None
                                        else np.median(efficiency))
        self.n_rows_ = int(keep.sum())
        self.targets_ = ("latency",)
        return self

    def explain(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row: ``bound_time_s``, ``bound``, ``efficiency``, ``efficiency_level`` (-1: global) and
        ``latency_s`` (= bound / efficiency)."""
        import pandas as pd

        check_is_fitted(self)
        frame = self._features(_check_rows(X))
        efficiency = np.full(len(frame), np.nan)
        level_used = np.full(len(frame), -1, dtype=int)
        for level, columns in enumerate(self.levels):
            todo = np.isnan(efficiency)
            if not todo.any():
                break
            table = self.efficiencies_[self.efficiencies_["level"] == level]
            if table.empty:
                continue
            lookup = pd.Series(table["efficiency"].to_numpy(), index=_key_index(table, columns))
            found = lookup.reindex(_key_index(frame, columns)).to_numpy(dtype=float)
            fill = todo & np.isfinite(found)
            efficiency[fill] = found[fill]
            level_used[fill] = level
        efficiency = np.where(np.isnan(efficiency), self.global_efficiency_, efficiency)
        bound = frame["bound_time_s"].to_numpy(dtype=float)
        return pd.DataFrame({"bound_time_s": bound, "bound": frame["bound"].to_numpy(), "efficiency": efficiency,
                             "efficiency_level": level_used, "latency_s": bound / efficiency}, index=X.index)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted latency per row in seconds (NaN where the device has no bound for the dtype)."""
        return self.explain(X)["latency_s"].to_numpy(dtype=float)

    def predict_latency(self, X: pd.DataFrame) -> np.ndarray:
        """Same as ``predict``: latency in seconds."""
        return self.predict(X)

    def report(self) -> pd.DataFrame:
        """The fitted efficiencies, finest level first, with the global default as level -1."""
        import pandas as pd

        check_is_fitted(self)
        default = pd.DataFrame([{"level": -1, "efficiency": self.global_efficiency_, "n_rows": self.n_rows_}])
        return pd.concat([self.efficiencies_, default], ignore_index=True)

    # -- persistence (see perfscope.models.persistence) ----------------------------------
    def _to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        check_is_fitted(self)
        records = []
        for record in self.efficiencies_.to_dict(orient="records"):
            columns = self.levels[int(record["level"])]
            records.append({"level": int(record["level"]), "keys": [str(record[c]) for c in columns],
                            "efficiency": float(record["efficiency"]), "n_rows": int(record["n_rows"])})
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
        rows = []
        for record in state["efficiencies"]:
            columns = model.levels[record["level"]]
            rows.append({"level": record["level"], **dict(zip(columns, record["keys"], strict=True)),
                         "efficiency": record["efficiency"], "n_rows": record["n_rows"]})
        model.efficiencies_ = RecordsFrame.records(rows)  # a DataFrame on first use
        model.global_efficiency_ = float(state["global_efficiency"])
        model.n_rows_ = int(state["n_rows"])
        model.devices_ = {k: DeviceFigures.from_json_dict(d) for k, d in state["devices"].items()}
        model.targets_ = ("latency",)
        return model


LOG_LINEAR_FEATURES = ("flops", "min_bytes", "waves")


class LogLinearModel(DeviceFeaturesMixin, LightRegressorMixin, LightEstimator):
    """log10 time = a + b·log10 FLOPs + c·log10 bytes + d·log10 waves (ordinary least squares).

    The plain baseline that the GPPerf README and the issue compare against. ``waves``
    comes from ``feature_frame`` (tile and wave quantisation on the row's device).
    Fitted: ``coef_`` (b, c, d), ``intercept_``, ``devices_``, ``targets_``.
    """

    def __init__(self, devices: Mapping[str, RooflineDevice] | None = None) -> None:
        self.devices = devices

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.column_stack([np.log10(frame[c].to_numpy(dtype=float)) for c in LOG_LINEAR_FEATURES])

    def fit(self, X: pd.DataFrame, y: Any = None) -> LogLinearModel:
        """Least squares in log10 space on the ok rows of ``X``."""
        rows, latency_s = training_rows(X, y)
        self.devices_ = self._snapshot_devices(rows)
        design = self._design(self._features(rows))
        keep = np.isfinite(design).all(axis=1) & np.isfinite(latency_s)
        if keep.sum() < design.shape[1] + 1:
            raise UserInputError("too few rows with FLOPs, bytes and waves to fit a log-linear model")
        a = np.column_stack([np.ones(keep.sum()), design[keep]])
        solution, *_ = np.linalg.lstsq(a, np.log10(latency_s[keep]), rcond=None)
        self.intercept_ = float(solution[0])
        self.coef_ = solution[1:]
        self.targets_ = ("latency",)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted latency per row in seconds."""
        check_is_fitted(self)
        design = self._design(self._features(_check_rows(X)))
        return 10.0 ** (self.intercept_ + design @ self.coef_)

    def predict_latency(self, X: pd.DataFrame) -> np.ndarray:
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
