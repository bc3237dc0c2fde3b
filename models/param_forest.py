"""``ParameterForestModel``: latency of any tunable kernel from its parameters, launch and device.

For data users bring from auto-tuners (Kernel Tuner caches, T4 files, Triton or CUTLASS
sweeps): one problem size, many configurations, kernels with no FLOP count, GPUs without
a spec row. Features (``perfscope.models.param_features``): every tunable parameter,
launch features where the geometry is known, the device's vendor and wave width, the
work (FLOPs, minimum bytes) and shape columns where the rows have them. Distinct
configurations stay distinct: nothing is bucketed.

Device features: only what tells how parameter effects change between kinds of
hardware (vendor, 32- or 64-lane scheduling) by default. The spec figures (bandwidth,
FP32 peak, compute units) are available (``device_features="spec"``) but with a handful
of training GPUs a forest's splits on them route a new GPU by coincidence: an MI250X
has an A100's bandwidth, peak and unit count, and a landscape of the other vendor.
Measured leaving each of six GPUs out (bench/README.md): rank correlation 0.81 with
vendor and wave width, 0.75 with the spec figures too.

Target: log time minus a per-device scale (the median log time of the device's training
rows), so the forest learns the shape of the landscape and the scale says how fast the
device is. A device not seen in training gets its scale from its spec figures
(zero-shot): time taken as proportional to 1 / sqrt(bandwidth x FP32 peak), the
geometric mean of the two roofline ceilings (a kernel of unknown intensity is as likely
memory- as compute-bound), with only the constant fitted over the training devices
that have both figures; fitted slopes from a handful of GPUs (least squares, ridge,
ridge towards this rule) predicted held-out GPUs worse. Without figures, the mean scale.

Few-shot (``adapt``, ``perfscope.models.few_shot``): k measured configurations of a new
device choose a non-negative mixture of the pooled landscape and one small forest per
training device, the scale is their median log residual, and with enough rows a shallow
forest learns what remains. The measured configurations themselves are kept: the adapted
model predicts their measured times (a measurement is never overruled by a prediction of
the same configuration on the same device), so an unmeasured configuration is picked over
the fastest measured one only where the model predicts it faster than that measurement.
Which k to measure: ``perfscope.models.few_shot.choose_to_measure``.

Extremely randomised trees (Geurts et al. 2006): thresholds drawn at random interpolate
between the parameter values seen, where a random forest's best-split thresholds make
steps; leaves of one row, every feature tried at each split (the regression defaults of
that paper), 200 trees. Fixed on principle, not tuned on any test split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.devices.declared import declared_devices
from perfscope.devices.registry import device_kind_for, resolve_row_device
from perfscope.errors import UserInputError
from perfscope.models.estimator_base import LightEstimator, LightRegressorMixin, check_is_fitted
from perfscope.models.few_shot import mixture_weights, residual_forest
from perfscope.models.intervals import design_range, forest_difficulty
from perfscope.models.param_features import (
    DEVICE_FEATURE_SETS,
    DEVICE_FIGURES,
    LAUNCH_FEATURES,
    VENDOR_CODES,
    encode,
    launch_features,
    parameters,
    problem_elements,
    tunable_names,
    wave_width,
)
from perfscope.models.roofline_model import training_rows
from perfscope.models.tree_arrays import ForestArrays, export_forest
from perfscope.work import work_and_traffic

if TYPE_CHECKING:
    import pandas as pd

SHAPE_FEATURES = ("batch", "m", "n", "k", "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s",
                  "heads", "seq_q", "seq_k", "head_dim")
DEVICE_FOREST_SHARE = 4  # each per-device landscape forest gets n_estimators / this many trees (at least 10)


class ParameterForestModel(LightRegressorMixin, LightEstimator):
    """Forest on tunable parameters + launch + device features, log time with a per-device scale.

    ``device_features``: which device figures the forest sees: ``"kind"`` (vendor and wave
    width, the default), ``"spec"`` (those and the spec figures) or ``"none"``.
    ``device_landscapes``: also fit one small forest per training device, which only
    ``adapt`` (few-shot) uses; ``False`` skips them where the model is never adapted (the
    fold fits of ``train``: about half of each fit's time), and ``adapt`` then mixes
    nothing but the pooled landscape.

    Fitted: ``forest_`` (``ForestArrays``), ``feature_names_``, ``params_`` (tunable
    parameter names), ``codes_`` (string parameter codes), ``scales_`` (device key ->
    scale), ``device_figures_`` (device key -> ``DEVICE_FIGURES`` values: log10 bandwidth,
    log10 FP32 peak, compute units, vendor code, wave width; NaN unknown),
    ``scale_line_`` (coefficients or None), ``residual_forests_`` (device key ->
    ``ForestArrays`` from ``adapt``), ``measured_`` (device key -> (design rows, log
    times) of the configurations ``adapt`` measured), ``n_rows_``.
    """

    def __init__(self, n_estimators: int = 200, min_samples_leaf: int = 1, random_state: int | None = 0,
                 n_jobs: int | None = None, device_features: str = "kind",
                 max_rows_per_tree: int | None = None, device_landscapes: bool = True) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.device_features = device_features
        self.max_rows_per_tree = max_rows_per_tree
        self.device_landscapes = device_landscapes

    # -- features --------------------------------------------------------------------------
    def _device_figures(self, rows: Any) -> dict[str, tuple[float, ...]]:
        known = dict(getattr(self, "device_figures_", {}))
        declared = declared_devices(rows)  # figures given at import, after profiles and spec rows
        keys = [str(k) for k in rows["device_key"]]
        names = list(rows["device_name"]) if "device_name" in rows else [None] * len(keys)
        for key, name in zip(keys, names, strict=True):
            if key in known:
                continue
            name = name if isinstance(name, str) else None
            resolved = resolve_row_device(key, name)
            device = resolved[0] if resolved is not None else declared.get(key)
            kind = key.split("-", 1)[0]
            if kind not in VENDOR_CODES:
                kind = device_kind_for(name or key)
            if device is None:
                known[key] = (math.nan, math.nan, math.nan, VENDOR_CODES.get(kind, math.nan), wave_width(kind, None))
                continue
            architecture = getattr(device, "architecture", None)
            if architecture is None:  # a calibrated profile or declared figures: a spec row may know it
                spec_id = getattr(device, "spec_id", None)
                spec = resolve_row_device(spec_id, None) if spec_id else None
                architecture = getattr(spec[0], "architecture", None) if spec else None
            bandwidth = device.mem_bandwidth_bytes_per_s or math.nan
            peak = device.peaks_flops_per_s.get("fp32", math.nan)
            known[key] = (math.log10(bandwidth) if bandwidth > 0 else math.nan,
                          math.log10(peak) if peak > 0 else math.nan, float(device.sm_count or math.nan),
                          VENDOR_CODES.get(kind, math.nan), wave_width(kind, architecture))
        return known

    def _design(self, rows: Any, fitting: bool) -> np.ndarray:
        size = len(rows["device_key"])
        params = parameters(rows)
        if fitting:
            self.params_ = tunable_names(params)
            self.codes_ = {}
        columns: list[np.ndarray] = []
        for name in self.params_:
            values, codes = encode(params.get(name, [None] * size), self.codes_.get(name))
            if fitting and codes is not None:
                self.codes_[name] = codes
            columns.append(values)
        figures = self._device_figures(rows)
        if fitting:
            self.device_figures_ = figures
            if self.device_features not in DEVICE_FEATURE_SETS:
                raise UserInputError(f"device_features must be one of {', '.join(DEVICE_FEATURE_SETS)}, "
                                     f"got {self.device_features!r}")
            device_names = list(DEVICE_FEATURE_SETS[self.device_features])
        else:  # the names the forest was fitted with (bundles of older versions included)
            device_names = [n for n in self.feature_names_ if n in DEVICE_FIGURES]
        device = np.array([figures[str(k)] for k in rows["device_key"]], dtype=float).reshape(size, len(DEVICE_FIGURES))
        launch = launch_features(params, problem_elements(rows, size), device[:, 2], size)
        columns += [launch[name] for name in LAUNCH_FEATURES]
        columns += [device[:, DEVICE_FIGURES.index(name)] for name in device_names]
        flops, min_bytes = work_and_traffic(rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            columns += [np.log10(np.asarray(flops, dtype=float)), np.log10(np.asarray(min_bytes, dtype=float))]
        for name in SHAPE_FEATURES:
            columns.append(_floats(rows, name, size))
        design = np.column_stack(columns) if columns else np.empty((size, 0))
        if fitting:
            self.feature_names_ = ([f"param_{n}" for n in self.params_] + list(LAUNCH_FEATURES)
                                   + device_names + ["log10_flops", "log10_min_bytes"] + list(SHAPE_FEATURES))
        return np.where(np.isfinite(design), design, -1.0)

    # -- fitting ---------------------------------------------------------------------------
    def _new_forest(self, n_rows: int) -> Any:
        """Every row to every tree; with more than ``max_rows_per_tree`` rows, each tree learns
        from that many drawn with replacement (subbagging), so fit time stops growing with the rows."""
        from sklearn.ensemble import ExtraTreesRegressor  # seconds to import; only fitting needs it

        subsample = self.max_rows_per_tree is not None and n_rows > self.max_rows_per_tree
        return ExtraTreesRegressor(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                   max_features=1.0, random_state=self.random_state, n_jobs=self.n_jobs,
                                   bootstrap=subsample, max_samples=self.max_rows_per_tree if subsample else None)

    def fit(self, X: pd.DataFrame, y: Any = None) -> ParameterForestModel:
        """Fit on the ok rows of ``X`` (``y``: latency in seconds, default the measured time)."""
        rows, latency_s = training_rows(X, y)
        if len(latency_s) < 2:
            raise UserInputError("too few ok rows with a time to fit the parameter forest (need 2)")
        log_time = np.log(latency_s)
        keys = np.asarray(rows["device_key"]).astype(str)
        self.scales_ = {key: float(np.median(log_time[keys == key])) for key in np.unique(keys)}
        design = self._design(rows, fitting=True)
        self.design_range_ = design_range(design)
        target = log_time - np.array([self.scales_[k] for k in keys])
        self.forest_ = export_forest(self._new_forest(len(target)).fit(design, target))
        self.device_forests_ = {}  # per training device: its own landscape, for few-shot mixtures
        if self.device_landscapes and len(self.scales_) > 1:
            trees = max(10, self.n_estimators // DEVICE_FOREST_SHARE)
            for key in self.scales_:
                mine = keys == key
                forest = self._new_forest(int(mine.sum())).set_params(n_estimators=trees)
                self.device_forests_[key] = export_forest(forest.fit(design[mine], target[mine]))
        self.scale_line_ = _scale_line(self.scales_, self.device_figures_)
        self.residual_forests_: dict[str, ForestArrays] = {}
        self.mixtures_: dict[str, list[float]] = {}
        self.measured_: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.n_rows_ = len(latency_s)
        return self

    def _scale(self, key: str) -> float:
        if key in self.scales_:
            return self.scales_[key]
        return _zero_shot_scale(self.scales_, self.scale_line_, self.device_figures_.get(key))

    def knows_device(self, keys: Any) -> np.ndarray:
        """Per device key: whether the model has a scale of its own (trained on it or adapted to it)."""
        check_is_fitted(self)
        return np.array([str(k) in self.scales_ for k in keys], dtype=bool)

    def scale_errors(self) -> dict[str, float]:
        """Per training device: how far its zero-shot scale (the rule fitted on the *other*
        training devices) is from its fitted one (log units, predicted - fitted): what a new
        device's scale is off by, from the training devices alone, with no forest fit. Empty
        with one training device; devices added by ``adapt`` are left out."""
        check_is_fitted(self)
        trained = {k: v for k, v in self.scales_.items() if k not in getattr(self, "measured_", {})}
        if len(trained) < 2:
            return {}
        errors = {}
        for key, scale in trained.items():
            others = {k: v for k, v in trained.items() if k != key}
            errors[key] = _zero_shot_scale(others, _scale_line(others, self.device_figures_),
                                           self.device_figures_.get(key)) - scale
        return errors

    def adapt(self, X: pd.DataFrame, y: Any = None) -> ParameterForestModel:
        """Few-shot: fit the devices of ``X``'s ok rows from those measured configurations
        (``perfscope.models.few_shot``): a mixture of the pooled and per-device landscapes,
        the scale (median log residual) and, with enough rows, a residual forest. The
        fitted forests are kept; takes seconds."""
        check_is_fitted(self)
        rows, latency_s = training_rows(X, y)
        if len(latency_s) == 0:
            raise UserInputError("adapt needs measured ok rows of the new device")
        self.device_figures_ = self._device_figures(rows)
        design = self._design(rows, fitting=False)
        landscapes = self._landscapes(design)
        log_time = np.log(latency_s)
        keys = np.asarray(rows["device_key"]).astype(str)
        for key in np.unique(keys):
            mine = keys == key
            weights = mixture_weights(landscapes[mine], log_time[mine])
            self.mixtures_[key] = [float(w) for w in weights]
            relative = landscapes[mine] @ weights
            self.scales_[key] = float(np.median(log_time[mine] - relative))
            self.residual_forests_.pop(key, None)
            forest = residual_forest(design[mine], log_time[mine] - relative - self.scales_[key], self.random_state)
            if forest is not None:
                self.residual_forests_[key] = forest
            self.measured_[key] = (design[mine], log_time[mine])
        return self

    def _measured_log_time(self, key: str, design: np.ndarray) -> np.ndarray:
        """Per row of ``design`` (rows of device ``key``): the mean measured log time of the same
        configuration from ``adapt``, NaN where it was not measured."""
        out = np.full(len(design), np.nan)
        known = getattr(self, "measured_", {}).get(key)
        if known is None or len(known[1]) == 0:
            return out
        sums: dict[bytes, list[float]] = {}
        for row, value in zip(_row_keys(known[0]), known[1], strict=True):
            sums.setdefault(row, []).append(float(value))
        means = {row: float(np.mean(values)) for row, values in sums.items()}
        for i, row in enumerate(_row_keys(design)):
            out[i] = means.get(row, np.nan)
        return out

    def measured_mask(self, X: Any) -> np.ndarray:
        """Per row of ``X``: whether ``adapt`` measured that configuration on that device."""
        check_is_fitted(self)
        self.device_figures_ = self._device_figures(X)
        design = self._design(X, fitting=False)
        keys = np.asarray([str(k) for k in X["device_key"]])
        mask = np.zeros(len(keys), dtype=bool)
        for key in np.unique(keys):
            mine = keys == key
            mask[mine] = np.isfinite(self._measured_log_time(key, design[mine]))
        return mask

    def _landscapes(self, design: np.ndarray) -> np.ndarray:
        """Relative log time of each row by the pooled forest, then by each training device's forest."""
        return np.column_stack([self.forest_.predict(design)]
                               + [f.predict(design) for f in self.device_forests_.values()])

    # -- prediction ------------------------------------------------------------------------
    def predict(self, X: Any) -> np.ndarray:
        """Predicted latency per row in seconds."""
        check_is_fitted(self)
        if not hasattr(X, "__getitem__") or "device_key" not in X:
            raise UserInputError("X must be profile rows with a device_key column")
        self.device_figures_ = self._device_figures(X)
        design = self._design(X, fitting=False)
        out = self.forest_.predict(design)
        keys = np.asarray([str(k) for k in X["device_key"]])
        for key in np.unique(keys):
            mine = keys == key
            weights = self.mixtures_.get(key)
            if weights is not None and len(weights) == 1 + len(self.device_forests_):
                out[mine] = self._landscapes(design[mine]) @ np.asarray(weights)
            out[mine] += self._scale(key)
            if key in self.residual_forests_:
                out[mine] += self.residual_forests_[key].predict(design[mine])
            measured = self._measured_log_time(key, design[mine])
            out[mine] = np.where(np.isfinite(measured), measured, out[mine])
        return np.exp(out)

    def predict_latency(self, X: Any) -> np.ndarray:
        """Same as ``predict``: latency in seconds."""
        return self.predict(X)

    def interval_difficulty(self, X: Any) -> np.ndarray:
        """Per row: the trees' spread of log time and the distance beyond the training data
        (``perfscope.models.intervals.forest_difficulty``: what normalised intervals widen by)."""
        check_is_fitted(self)
        self.device_figures_ = self._device_figures(X)
        return forest_difficulty(self.forest_, self._design(X, fitting=False), self.design_range_)

    # -- persistence -----------------------------------------------------------------------
    def _to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        check_is_fitted(self)
        objects: dict[str, Any] = {"forest": self.forest_}
        objects.update({f"residual.{i}": f for i, f in enumerate(self.residual_forests_.values())})
        objects.update({f"device.{i}": f for i, f in enumerate(self.device_forests_.values())})
        state = {"params": self.get_params(), "features": self.feature_names_, "tunables": self.params_,
                 "codes": self.codes_, "scales": self.scales_, "scale_line": self.scale_line_,
                 "device_figures": {k: list(v) for k, v in self.device_figures_.items()},
                 "residual_devices": list(self.residual_forests_), "n_rows": self.n_rows_,
                 "design_range": self.design_range_,
                 "landscape_devices": list(self.device_forests_), "mixtures": self.mixtures_,
                 "measured": {k: {"design": d.tolist(), "log_time": t.tolist()}
                              for k, (d, t) in getattr(self, "measured_", {}).items()}}
        return state, objects

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], objects: Mapping[str, Any]) -> ParameterForestModel:
        model = cls(**state["params"])
        model.forest_ = objects["forest"]
        model.feature_names_ = list(state["features"])
        model.params_ = list(state["tunables"])
        model.codes_ = {k: dict(v) for k, v in state["codes"].items()}
        model.scales_ = {k: float(v) for k, v in state["scales"].items()}
        model.scale_line_ = state["scale_line"]
        width = len(DEVICE_FIGURES)  # older bundles recorded fewer figures: the rest unknown
        model.device_figures_ = {k: tuple(math.nan if x is None else float(x) for x in [*v, *[None] * width][:width])
                                 for k, v in state["device_figures"].items()}
        model.residual_forests_ = {k: objects[f"residual.{i}"] for i, k in enumerate(state["residual_devices"])}
        model.n_rows_ = int(state["n_rows"])
        model.design_range_ = state.get("design_range")  # None in bundles written before it
        # bundles of older versions have no per-device landscapes
        model.device_forests_ = {k: objects[f"device.{i}"] for i, k in enumerate(state.get("landscape_devices", []))}
        model.mixtures_ = {k: [float(w) for w in v] for k, v in state.get("mixtures", {}).items()}
        model.measured_ = {k: (np.asarray(v["design"], dtype=float).reshape(len(v["log_time"]), -1),
                               np.asarray(v["log_time"], dtype=float))
                           for k, v in state.get("measured", {}).items()}  # older bundles kept none
        return model


def _scale_line(scales: Mapping[str, float], figures: Mapping[str, tuple[float, ...]]) -> list[float] | None:
    """scale = a - ln(10)/2 * (log10 bandwidth + log10 FP32 peak): ``[a, slope, slope]``, only
    ``a`` fitted (the mean over the devices of ``scales`` with both figures); None without any."""
    slope = -math.log(10) / 2
    points = [s - slope * (figures[k][0] + figures[k][1]) for k, s in scales.items()
              if k in figures and all(map(math.isfinite, figures[k][:2]))]
    return [float(np.mean(points)), slope, slope] if points else None


def _zero_shot_scale(scales: Mapping[str, float], line: list[float] | None, figures: tuple[float, ...] | None) -> float:
    """A device's scale from its spec figures by ``line``; without figures (or line), the mean scale."""
    figures = figures if figures is not None else (math.nan, math.nan)
    if line is not None and all(map(math.isfinite, figures[:2])):
        return line[0] + line[1] * figures[0] + line[2] * figures[1]
    return float(np.mean(list(scales.values())))


def _row_keys(design: np.ndarray) -> list[bytes]:
    """One hashable key per design row: the same configuration on the same device gives the same key."""
    return [row.tobytes() for row in np.ascontiguousarray(np.round(design, 9), dtype=float)]


def _floats(rows: Any, name: str, size: int) -> np.ndarray:
    if name not in rows:
        return np.full(size, np.nan)
    values = rows[name]
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return np.array([float(v) if isinstance(v, (int, float)) else np.nan for v in values])
