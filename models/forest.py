"""Random-forest predictors: ``ForestModel`` (physics features) and the published baseline.

``ForestModel`` learns on the roofline features of ``perfscope.roofline.feature_columns``
(FLOPs, minimum bytes, intensity, bound time and regime, wave and tile quantisation,
the dtype's peak, bandwidth, launch floor, SMs, L2, tile parameters when the row has
them) and predicts, by default, the log of the gap ``time / bound`` rather than the time
itself: the gap stays within a narrow range across sizes, so multiplying the predicted
gap back onto the bound extrapolates to shapes (and devices) the forest has not seen,
where a forest on raw times can only return times it has seen. Energy is learnt as the
log of the average power (energy / time), bounded between idle and the power limit,
and predicted as power x predicted time.

Hyper-parameters are fixed on principle, not tuned on any test split: every feature
tried at each split (scikit-learn's regression default, after Geurts et al. 2006,
"Extremely randomized trees", who found it the best default for regression; the
older p/3 rule lets trees split on size-correlated features before the dtype and
extrapolates worse: see tests/test_models.py), leaves of at least five rows (the
regression node size of Hastie, Tibshirani and Friedman, ESL section 15.3), and 300
trees (more trees only lower the variance).

``PaperBaselineModel`` is the model of the GPPerf paper, kept for comparison: one
``RandomForestRegressor(n_estimators=100, max_depth=6)`` per target on the raw features
m, n, k, blocksize1..3 (GPPerf's ignored profiler options, read from ``params_json``),
FLOPs, bytes and arithmetic intensity, predicting raw runtime and raw power.

Both fit with scikit-learn and keep each fitted forest as ``ForestArrays``
(``perfscope.models.tree_arrays``): the same predictions to the last bit, made with
numpy alone, so that a saved model loads and predicts without importing scikit-learn
(seconds of start-up for ``perfscope estimate``). ``ForestModel`` fits and predicts on
columns (``perfscope.columns``; a DataFrame is turned into columns on entry) and never
imports pandas for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.columns import as_columns, columns_size, float_column
from perfscope.devicespecs import DeviceFigures, RooflineDevice
from perfscope.errors import InvalidInputError, ModelFileError
from perfscope.models.efficiency import Computed, measured_energy_j
from perfscope.models.estimator_base import LightEstimator, LightRegressorMixin, check_is_fitted
from perfscope.models.intervals import design_range, forest_difficulty
from perfscope.models.roofline_model import DeviceFeaturesMixin, no_bound_reason, training_rows
from perfscope.models.tree_arrays import ForestArrays, export_forest
from perfscope.roofline import arithmetic_intensity
from perfscope.work import Rows, work_and_traffic

if TYPE_CHECKING:
    import pandas as pd

# pandas only in ``feature_importances`` (a Series): a loaded forest predicts on columns with numpy.

KERNEL_CODES = {"gemm": 0, "conv": 1, "attention": 2}
REGIME_CODES = {"launch": 0, "memory": 1, "compute": 2}

FOREST_FEATURES = (
    "log10_flops", "log10_min_bytes", "log10_intensity", "log10_bound_time_s", "regime",
    "intensity_over_ridge", "wave_efficiency", "tile_efficiency", "waves", "tiles",
    "peak_flops_per_s", "mem_bandwidth_bytes_per_s", "launch_overhead_s", "device_sm_count",
    "dtype_bytes", "min_bytes_over_l2", "tile_m_used", "tile_n_used",
    "tile_k", "tile_num_stages", "tile_num_warps", "tile_group_m", "kernel_code",
)
"""Columns of ``feature_columns`` (plus the regime and kernel family as codes, and the
row's own tile columns, -1 where absent) that ``ForestModel`` learns from. Trees split
on order, so taking logs or not changes nothing."""

TARGETS = ("efficiency", "log_time")


def forest_design(frame: Rows) -> np.ndarray:
    """The ``FOREST_FEATURES`` matrix of the columns ``feature_columns`` returns (-1 for
    absent tile columns)."""
    size = len(frame["bound"])
    columns = []
    for name in FOREST_FEATURES:
        if name == "regime":
            values = _codes(frame["bound"], REGIME_CODES)
        elif name == "kernel_code":
            values = _codes(frame["kernel"], KERNEL_CODES)
        elif name in frame:
            values = float_column(frame, name, size)
        else:
            values = np.full(size, np.nan)
        columns.append(values)
    design = np.column_stack(columns)
    return np.where(np.isfinite(design), design, -1.0)


def _codes(values: Any, table: Mapping[str, int]) -> np.ndarray:
    """``table[value]`` per row as float (NaN for a value not in it), looked up once per distinct
    value."""
    def lookup(distinct: Any) -> np.ndarray:
        return np.array([float(table.get(v, np.nan)) if isinstance(v, str) else np.nan for v in distinct]
                        + [np.nan])  # the last entry answers code -1 (missing)

    values = np.asarray(values, dtype=object)
    if len(values) <= 64:
        return lookup(values)[:-1]
    out = np.full(len(values), np.nan)  # one comparison pass per distinct value (few: regimes, families)
    for value in dict.fromkeys(values.tolist()):
        if isinstance(value, str) and value in table:
            out[values == value] = float(table[value])
    return out


def _new_forest(params: Mapping[str, Any], random_state: Any) -> Any:
    from sklearn.ensemble import RandomForestRegressor  # seconds to import; only fitting needs it

    return RandomForestRegressor(n_estimators=params["n_estimators"], min_samples_leaf=params["min_samples_leaf"],
                                 max_features=params["max_features"], random_state=random_state,
                                 n_jobs=params["n_jobs"])


def _forest_objects(objects: Mapping[str, Any], names: tuple[str, ...], required: str) -> dict[str, Any]:
    """The saved forests of a model state (``ModelFileError`` if one is missing or not ``ForestArrays``)."""
    if required not in objects:
        raise ModelFileError(f"the saved model has no {required!r} arrays: the bundle is incomplete")
    unknown = sorted(set(objects) - set(names))
    if unknown or not all(isinstance(objects[name], ForestArrays) for name in objects):
        raise ModelFileError(f"the saved model holds unexpected objects ({', '.join(unknown) or 'not forests'})")
    return {name: objects.get(name) for name in names}


class ForestModel(DeviceFeaturesMixin, LightRegressorMixin, LightEstimator):
    """Random forest on roofline features predicting latency (s) and, when learnt, energy (J).

    ``target``: ``"efficiency"`` (default: learn log(time / bound), multiply back) or
    ``"log_time"`` (learn log time directly: kept for comparison). ``energy``: learn
    energy when the rows have usable measured energy (see ``usable_energy_mask``;
    ``include_doubtful_energy`` admits rows marked doubtful, for example GPPerf's).
    With energy on every training row one multi-output forest learns both targets;
    with energy on only some rows (at least ``min_energy_rows``) a second forest learns
    power on those, so that latency keeps every row.

    Fitted: ``forest_`` (latency, or both), ``energy_forest_`` (None when ``forest_``
    is multi-output or energy was not learnt), both ``ForestArrays``; ``targets_``,
    ``devices_``, ``feature_names_``, ``n_rows_``, ``n_energy_rows_``.
    """

    def __init__(self, n_estimators: int = 300, min_samples_leaf: int = 5, max_features: float = 1.0,
                 target: str = "efficiency", energy: bool = True, include_doubtful_energy: bool = False,
                 min_energy_rows: int = 20, random_state: int | None = 0, n_jobs: int | None = None,
                 devices: Mapping[str, RooflineDevice] | None = None) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.target = target
        self.energy = energy
        self.include_doubtful_energy = include_doubtful_energy
        self.min_energy_rows = min_energy_rows
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.devices = devices

    def _latency_target(self, latency_s: np.ndarray, bound_s: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(latency_s / bound_s) if self.target == "efficiency" else np.log(latency_s)

    def fit(self, X: Any, y: Any = None) -> ForestModel:
        """Fit on the ok rows of ``X`` (``y``: latency in seconds, default the measured time)."""
        if self.target not in TARGETS:
            raise InvalidInputError(f"target must be one of {TARGETS}, got {self.target!r}")
        rows, latency_s = training_rows(X, y)
        self.devices_ = self._snapshot_devices(rows)
        frame = self._features(rows)
        bound = np.asarray(frame["bound_time_s"], dtype=float)
        target = self._latency_target(latency_s, bound)
        keep = np.isfinite(target)
        if keep.sum() < 2:
            raise InvalidInputError(no_bound_reason("a forest", frame) if not keep.any() else
                                    "too few rows with a roofline bound to fit a forest (need 2)")
        design = forest_design(frame)
        self.design_range_ = design_range(design[keep]) if keep.any() else None
        energy_j = (measured_energy_j(rows, self.include_doubtful_energy) if self.energy
                    else np.full(columns_size(rows), np.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            log_power = np.log(energy_j / latency_s)
        has_energy = keep & np.isfinite(log_power)
        params = self.get_params()
        self.energy_forest_ = None
        if has_energy.sum() >= max(self.min_energy_rows, 2) and has_energy.sum() == keep.sum():
            self.forest_ = export_forest(_new_forest(params, self.random_state).fit(
                design[keep], np.column_stack([target[keep], log_power[keep]])))
            self.targets_ = ("latency", "energy")
        else:
            self.forest_ = export_forest(_new_forest(params, self.random_state).fit(design[keep], target[keep]))
            self.targets_ = ("latency",)
            if has_energy.sum() >= max(self.min_energy_rows, 2):
                self.energy_forest_ = export_forest(_new_forest(params, self.random_state).fit(
                    design[has_energy], log_power[has_energy]))
                self.targets_ = ("latency", "energy")
        self.feature_names_ = list(FOREST_FEATURES)
        self.n_rows_ = int(keep.sum())
        self.n_energy_rows_ = int(has_energy.sum()) if "energy" in self.targets_ else 0
        return self

    def _design_of(self, X: Rows, computed: Computed | None) -> tuple[np.ndarray, np.ndarray]:
        """(bound s, forest design) of the rows."""
        check_is_fitted(self)
        features = self._features(as_columns(X), computed)
        return np.asarray(features["bound_time_s"], dtype=float), forest_design(features)

    def _predict_logs(self, X: Rows, computed: Computed | None = None) -> tuple[Any, Any, Any, Any]:
        """(bound s, predicted latency target, predicted log power or None, feature design): arrays."""
        bound, design = self._design_of(X, computed)
        out = self.forest_.predict(design)
        log_power = None
        if out.ndim == 2:
            out, log_power = out[:, 0], out[:, 1]
        elif self.energy_forest_ is not None:
            log_power = self.energy_forest_.predict(design)
        return bound, out, log_power, design

    def _latency(self, bound: np.ndarray, out: np.ndarray) -> np.ndarray:
        return bound * np.exp(out) if self.target == "efficiency" else np.exp(out)

    def predict(self, X: Rows) -> np.ndarray:
        """Predicted latency per row in seconds (NaN where the device has no bound for the dtype).

        ``X``: profile rows as columns (no pandas needed) or a DataFrame."""
        bound, out, *_ = self._predict_logs(X)
        return self._latency(bound, out)

    def predict_latency(self, X: Rows) -> np.ndarray:
        """Same as ``predict``: latency in seconds."""
        return self.predict(X)

    def predict_energy(self, X: Rows) -> np.ndarray:
        """Predicted energy per call (J): predicted average power x predicted latency."""
        bound, out, log_power, _ = self._predict_logs(X)
        if log_power is None:
            raise InvalidInputError("this forest learnt no energy: its training rows had no usable measured energy")
        return np.exp(log_power) * self._latency(bound, out)

    def predict_targets(self, X: Rows, *, computed: Computed | None = None,
                        with_difficulty: bool = False) -> dict[str, np.ndarray]:
        """Every learnt target from one feature pass: ``latency`` (s), ``energy`` (J) when learnt, and
        with ``with_difficulty`` the ``interval_difficulty``. ``computed``: ``(device, feature_columns(X,
        device))`` already computed by the caller for a column mapping ``X`` (see ``roofline_columns``),
        used when the model's device for the rows has the same figures."""
        bound, out, log_power, design = self._predict_logs(X, computed)
        targets = {"latency": self._latency(bound, out)}
        if log_power is not None:
            targets["energy"] = np.exp(log_power) * targets["latency"]
        if with_difficulty:
            targets["difficulty"] = forest_difficulty(self.forest_, design, self.design_range_)
        return targets

    def interval_difficulty(self, X: Rows, computed: Computed | None = None) -> np.ndarray:
        """Per row: tree spread of log latency and distance beyond the data (``intervals.forest_difficulty``)."""
        return forest_difficulty(self.forest_, self._design_of(X, computed)[1], self.design_range_)

    def feature_importances(self) -> pd.Series:
        """Impurity importance of each feature in the latency forest, largest first."""
        import pandas as pd  # kept off the light estimate path

        check_is_fitted(self)
        return pd.Series(self.forest_.feature_importances, index=self.feature_names_).sort_values(ascending=False)

    # -- persistence ---------------------------------------------------------------------
    def _to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        check_is_fitted(self)
        params = {k: v for k, v in self.get_params().items() if k != "devices"}
        objects = {"forest": self.forest_}
        if self.energy_forest_ is not None:
            objects["energy_forest"] = self.energy_forest_
        state = {"params": params, "targets": list(self.targets_), "features": self.feature_names_,
                 "n_rows": self.n_rows_, "n_energy_rows": self.n_energy_rows_, "design_range": self.design_range_,
                 "devices": {k: d.to_json_dict() for k, d in self.devices_.items()}}
        return state, objects

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], objects: Mapping[str, Any]) -> ForestModel:
        if list(state["features"]) != list(FOREST_FEATURES):
            raise InvalidInputError("the saved forest was trained on other features than this perfscope computes: "
                                 "retrain it with this version")
        model = cls(**state["params"])
        forests = _forest_objects(objects, ("forest", "energy_forest"), "forest")
        model.forest_ = forests["forest"]
        model.energy_forest_ = forests["energy_forest"]
        model.targets_ = tuple(state["targets"])
        model.feature_names_ = list(state["features"])
        model.n_rows_ = int(state["n_rows"])
        model.n_energy_rows_ = int(state["n_energy_rows"])
        model.design_range_ = state.get("design_range")  # None in bundles written before it
        model.devices_ = {k: DeviceFigures.from_json_dict(d) for k, d in state["devices"].items()}
        return model


PAPER_FEATURES = ("m", "n", "k", "blocksize1", "blocksize2", "blocksize3", "flops", "min_bytes",
                  "intensity_flops_per_byte")


def paper_design(rows: Any) -> np.ndarray:
    """The GPPerf paper's raw features (``PAPER_FEATURES``); -1 where a row lacks one."""
    rows = as_columns(rows)
    size = columns_size(rows)
    flops, min_bytes = work_and_traffic(rows)
    params = [_params(text) for text in (rows["params_json"].tolist() if "params_json" in rows else [None] * size)]
    columns = {
        **{c: float_column(rows, c, size) for c in ("m", "n", "k")},
        **{c: np.array([float(p.get(c, np.nan)) for p in params]) for c in ("blocksize1", "blocksize2", "blocksize3")},
        "flops": flops, "min_bytes": min_bytes, "intensity_flops_per_byte": arithmetic_intensity(flops, min_bytes),
    }
    design = np.column_stack([columns[c] for c in PAPER_FEATURES])
    return np.where(np.isfinite(design), design, -1.0)


def _params(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class PaperBaselineModel(LightRegressorMixin, LightEstimator):
    """The GPPerf paper's model: random forests (100 trees, depth 6) on raw features.

    Predicts raw runtime and raw power (W) from ``PAPER_FEATURES``, as published. The
    paper wraps one forest per target in ``MultiOutputRegressor``; that is exactly one
    independent forest per target, which is what this fits, so that latency can use
    every row and power only the rows with usable measured power. Energy = power x
    predicted runtime. No device figures are used (the paper has none).

    Fitted: ``latency_forest_``, ``power_forest_`` (None without energy rows), both
    ``ForestArrays``; ``targets_``.
    """

    def __init__(self, n_estimators: int = 100, max_depth: int = 6, include_doubtful_energy: bool = False,
                 random_state: int | None = 42, n_jobs: int | None = None) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.include_doubtful_energy = include_doubtful_energy
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _forest(self) -> Any:
        from sklearn.ensemble import RandomForestRegressor  # seconds to import; only fitting needs it

        return RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                     random_state=self.random_state, n_jobs=self.n_jobs)

    def fit(self, X: Any, y: Any = None) -> PaperBaselineModel:
        """Fit runtime on every ok row and power on the rows with usable measured energy."""
        rows, latency_s = training_rows(X, y)
        if len(latency_s) < 2:
            raise InvalidInputError("too few ok rows to fit the paper baseline")
        design = paper_design(rows)
        self.latency_forest_ = export_forest(self._forest().fit(design, latency_s))
        energy_j = measured_energy_j(rows, self.include_doubtful_energy)
        power_w = energy_j / latency_s
        has_power = np.isfinite(power_w)
        self.power_forest_ = (export_forest(self._forest().fit(design[has_power], power_w[has_power]))
                              if has_power.sum() >= 2 else None)
        self.targets_ = ("latency", "energy") if self.power_forest_ is not None else ("latency",)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted latency per row in seconds."""
        check_is_fitted(self)
        return self.latency_forest_.predict(paper_design(X))

    def predict_latency(self, X: Any) -> np.ndarray:
        """Same as ``predict``: latency in seconds."""
        return self.predict(X)

    def predict_power(self, X: Any) -> np.ndarray:
        """Predicted average power (W), as the paper predicts it."""
        check_is_fitted(self)
        if self.power_forest_ is None:
            raise InvalidInputError("this baseline learnt no power: its training rows had no usable measured energy")
        return self.power_forest_.predict(paper_design(X))

    def predict_energy(self, X: Any) -> np.ndarray:
        """Predicted energy per call (J): predicted power x predicted runtime."""
        return self.predict_power(X) * self.predict(X)

    def _to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        check_is_fitted(self)
        objects = {"latency_forest": self.latency_forest_}
        if self.power_forest_ is not None:
            objects["power_forest"] = self.power_forest_
        return {"params": self.get_params(), "features": list(PAPER_FEATURES), "targets": list(self.targets_)}, objects

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], objects: Mapping[str, Any]) -> PaperBaselineModel:
        model = cls(**state["params"])
        forests = _forest_objects(objects, ("latency_forest", "power_forest"), "latency_forest")
        model.latency_forest_ = forests["latency_forest"]
        model.power_forest_ = forests["power_forest"]
        model.targets_ = tuple(state["targets"])
        return model
