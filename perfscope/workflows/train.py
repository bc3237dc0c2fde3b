"""The train and evaluate workflows (``perfscope train``, ``perfscope evaluate``): read rows,
select them, fit the models, judge them on unseen shapes, save a bundle.

``train`` filters the rows, fits on the ``ok`` ones:

* ``forest``: ``ForestModel`` (latency, and energy when the rows have measured energy)
  inside a ``ConformalWrapper`` (grouped cross-conformal 1 - alpha intervals);
* ``roofline``: ``RooflineModel`` inside a ``ConformalWrapper``;
* ``energy``: ``EnergyModel`` (idle power, J/FLOP, J/byte), when at least 8 rows have
  measured energy; it takes a time, which ``perfscope.models.prediction`` takes from the forest;

evaluates the same models with a grouped shape split (``perfscope.models.evaluation``;
the coverage of this evaluation is the cross-fold conformal one), calibrates each
wrapper's intervals on those out-of-fold predictions (the same grouped folds: no model
is fitted twice on a fold), fits the final models on every row and saves a bundle
(``perfscope.models.persistence``) carrying the figures. The pieces (estimators, splits,
evaluation, persistence) live in ``perfscope.models``; this module composes them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from perfscope.devices.registry import normalise_device_name
from perfscope.errors import InvalidInputError
from perfscope.models.efficiency import admit_contended, count_contended, ok_rows, usable_energy_mask
from perfscope.models.energy_model import EnergyModel
from perfscope.models.evaluation import cross_validated_predictions, evaluate, summarize, to_records
from perfscope.models.forest import ForestModel, PaperBaselineModel
from perfscope.models.groups import ParameterGroups, shape_groups
from perfscope.models.intervals import ConformalWrapper
from perfscope.models.param_features import parameters, tunable_names
from perfscope.models.param_forest import ParameterForestModel
from perfscope.models.param_space import observed_spaces
from perfscope.models.persistence import data_fingerprint, save_bundle, to_jsonable
from perfscope.models.ranking import most_varied_parameters
from perfscope.models.roofline_model import LogLinearModel, RooflineModel
from perfscope.store import ReadResult
from perfscope.store import read_datasets as read_stores

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MIN_ENERGY_ROWS", "TrainReport", "default_models", "evaluate_datasets", "read_datasets", "read_rows",
           "select_rows", "to_records", "train"]

RowsOrPaths = Union["pd.DataFrame", str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]
Progress = Callable[[str], None]

MIN_ENERGY_ROWS = 8
TRAIN_ROWS_PER_TREE = 20_000
"""``train``'s parameter forest: beyond this many rows each tree learns from this many drawn
with replacement, so that 100,000 rows train in minutes on two cores (bench/bench_train.py)."""
FOLD_TREES = 100
"""Trees of ``train``'s parameter forest in the evaluation folds (whose out-of-fold predictions
also calibrate the intervals); the saved model, fitted on every row, keeps its 200."""


@dataclass
class TrainReport:
    """What ``train`` did: the rows it used, the models it saved and their figures."""

    out_dir: Path
    n_rows: int
    n_shapes: int
    n_energy_rows: int
    devices: list[str]
    kernels: list[str]
    dtypes: list[str]
    models: list[str]
    evaluation: pd.DataFrame
    fingerprint: str
    interval_quantiles: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why it could not be fitted
    group_by: list[str] | None = None  # parameters whose combinations were held out (None: shapes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``perfscope train --json``)."""
        return to_jsonable({"out_dir": str(self.out_dir), "n_rows": self.n_rows, "n_shapes": self.n_shapes,
                          "n_energy_rows": self.n_energy_rows, "devices": self.devices, "kernels": self.kernels,
                          "dtypes": self.dtypes, "models": self.models, "fingerprint": self.fingerprint,
                          "interval_quantiles": self.interval_quantiles, "skipped": self.skipped,
                          "group_by": self.group_by,
                          "evaluation": self.evaluation.to_dict(orient="records")})


def read_rows(paths: Sequence[str | os.PathLike[str]]) -> tuple[pd.DataFrame, ReadResult]:
    """All rows of the datasets at ``paths`` as one DataFrame, with the ``ReadResult`` that
    names the files that had to be skipped (``StoreError`` for a bad path)."""
    result = read_stores(paths)
    return result.table.to_pandas(), result


def read_datasets(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """All rows of one or more perfscope datasets as one DataFrame (``StoreError`` for a bad
    path); each file that had to be skipped is named in a ``UserWarning`` (the CLI uses
    ``read_rows``, to report and count them)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise InvalidInputError("no dataset given")
    rows, result = read_rows(paths)
    for problem in result.problems:
        warnings.warn(f"skipped {problem}", stacklevel=2)
    return rows


def _as_rows(rows: RowsOrPaths) -> pd.DataFrame:
    if isinstance(rows, (str, os.PathLike)) or (isinstance(rows, Sequence) and not isinstance(rows, Mapping)):
        return read_datasets(rows)
    return rows  # a DataFrame: training's reader accepts one


def select_rows(rows: pd.DataFrame, *, kernels: Sequence[str] | None = None, devices: Sequence[str] | None = None,
                dtypes: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the given kernel families, devices (device key or name, any case) and dtypes."""
    mask = np.ones(len(rows), dtype=bool)
    if kernels:
        mask &= rows["kernel"].astype(str).isin(list(kernels)).to_numpy()
    if dtypes:
        mask &= rows["dtype"].astype(str).isin(list(dtypes)).to_numpy()
    if devices:
        wanted = {normalise_device_name(d) for d in devices}
        by_key = rows["device_key"].astype(str).map(normalise_device_name).isin(wanted)
        by_name = rows["device_name"].astype(str).map(normalise_device_name).isin(wanted) \
            if "device_name" in rows else False
        mask &= (by_key | by_name).to_numpy()
    return rows[mask]


def _learnable_rows(rows: RowsOrPaths, kernels: Sequence[str] | None, devices: Sequence[str] | None,
                    dtypes: Sequence[str] | None, include_contended: bool, progress: Progress | None) -> pd.DataFrame:
    """The selected ok rows with a time; contended rows too when asked, and said when left out."""
    selected = select_rows(_as_rows(rows), kernels=kernels, devices=devices, dtypes=dtypes)
    n_contended = count_contended(selected)
    if include_contended:
        return ok_rows(admit_contended(selected))
    left_out = (f"left out {n_contended} rows timed while another workload shared the device "
                "(status contended; include_contended keeps them)")
    if n_contended and progress is not None:
        progress(left_out)
    data = ok_rows(selected)
    if n_contended and len(data) < 2:
        raise InvalidInputError(f"fewer than two ok rows match: {left_out}", parameter="include_contended")
    return data


def default_models(seed: int = 0, n_jobs: int | None = None, *, energy: bool = True) -> dict[str, Any]:
    """The models ``perfscope evaluate`` compares: forest, parameter forest, roofline, log-linear,
    paper baseline (and roofline-timed energy when ``energy``)."""
    models: dict[str, Any] = {"forest": ForestModel(random_state=seed, n_jobs=n_jobs), "roofline": RooflineModel(),
                              "param_forest": ParameterForestModel(random_state=seed, n_jobs=n_jobs),
                              "log_linear": LogLinearModel(),
                              "paper_baseline": PaperBaselineModel(random_state=seed, n_jobs=n_jobs)}
    if energy:
        models["energy"] = EnergyModel(latency_model=RooflineModel())
    return models


def evaluate_datasets(rows: RowsOrPaths, *, split: str = "shape", n_splits: int | None = 5, seed: int = 0,
                      kernels: Sequence[str] | None = None, devices: Sequence[str] | None = None,
                      dtypes: Sequence[str] | None = None, include_doubtful_energy: bool = False,
                      models: Mapping[str, Any] | None = None, n_jobs: int | None = None,
                      include_contended: bool = False, progress: Progress | None = None,
                      group_by: Sequence[str] | None = None) -> pd.DataFrame:
    """``perfscope evaluate``: ``evaluate`` of ``default_models`` (or ``models``) on the selected rows.

    ``group_by`` (tunable parameter names): hold out unseen combinations of their values
    (with ``split="shape"``); a one-shape sweep without it is grouped by its two most
    varied parameters.

    ``split="extrapolate"`` (train on rows with FLOPs up to the 75th percentile, predict
    the rest) wraps the default models in ``ConformalWrapper`` so that they report the
    coverage of intervals calibrated on the training side alone.

    Returns the DataFrame of ``perfscope.models.evaluation.evaluate`` (one row per model
    and target; ``attrs["group_by"]``: the parameters grouped by, given or chosen, None for
    shapes); ``.to_dict(orient="records")`` is its JSON form. ``include_contended``
    also judges on rows timed while another workload shared the device.
    """
    data = _learnable_rows(rows, kernels, devices, dtypes, include_contended, progress)
    if len(data) < 2:
        raise InvalidInputError("fewer than two ok rows match: nothing to evaluate")
    if models is None:
        has_energy = usable_energy_mask(data, include_doubtful_energy).sum() >= MIN_ENERGY_ROWS
        models = default_models(seed, n_jobs, energy=bool(has_energy))
        if split == "extrapolate":  # one fold: intervals must be calibrated inside the training side
            models = {name: model if name == "energy" else ConformalWrapper(model, random_state=seed)
                      for name, model in models.items()}
    if split == "shape" and not group_by:
        if len(np.unique(shape_groups(data))) < 2:
            group_by = most_varied_parameters(data) or None
            if group_by and progress is not None:
                progress(f"one shape: holding out unseen ({', '.join(group_by)}) combinations")
    table = evaluate(models, data, split=split, n_splits=n_splits, seed=seed,
                     include_doubtful_energy=include_doubtful_energy, progress=progress, group_by=group_by)
    # what the groups were, given or chosen (only the shape split groups by parameters)
    table.attrs["group_by"] = list(group_by) if group_by and split == "shape" else None
    return table


def train(rows: RowsOrPaths, *, out_dir: str | os.PathLike[str], kernels: Sequence[str] | None = None,
          devices: Sequence[str] | None = None, dtypes: Sequence[str] | None = None, seed: int = 0,
          n_splits: int = 5, alpha: float = 0.1, include_doubtful_energy: bool = False,
          n_jobs: int | None = None, include_contended: bool = False, group_by: Sequence[str] | None = None,
          progress: Progress | None = None) -> TrainReport:
    """Fit perfscope's models on the selected ok rows, evaluate them on unseen groups, save a bundle.

    ``rows``: a DataFrame of profile rows or dataset path(s). ``kernels``, ``devices``
    (key or name) and ``dtypes`` select rows. ``n_splits`` folds of the grouped split
    serve both the evaluation and the conformal calibration; ``alpha`` = 0.1 gives 90%
    intervals. Groups are shapes; ``group_by`` (tunable parameter names) groups by
    their combinations instead, and a one-shape sweep (the common auto-tuning dataset)
    is grouped by its two most varied parameters when ``group_by`` is not given.
    ``include_doubtful_energy`` admits energy marked doubtful (imports);
    ``include_contended`` rows timed while another workload shared the device.

    Models: ``forest`` and ``roofline`` (they need FLOPs and a device with peaks) and
    ``param_forest`` (``ParameterForestModel``, when the rows have tunable parameters),
    each in a ``ConformalWrapper``; ``energy`` with measured energy. A model that cannot
    fit these rows is left out of the bundle and its reason kept (``skipped``). The
    parameter forest's fold models are smaller than the saved one (``FOLD_TREES``, no
    per-device landscapes); the roofline and forest are fitted once, not per fold, when
    they refuse every row.
    """
    notify = progress or (lambda message: None)
    data = _learnable_rows(rows, kernels, devices, dtypes, include_contended, progress)
    if len(data) == 0:
        raise InvalidInputError("no ok rows with a time match the selection: nothing to train on")
    n_shapes = int(len(np.unique(shape_groups(data))))
    if group_by is None and n_shapes < 2:
        group_by = most_varied_parameters(data)
        if not group_by:
            raise InvalidInputError("one shape and no tunable parameter that varies: nothing to hold out "
                                 "(training judges models on unseen shapes or parameter combinations)")
    n_energy = int(usable_energy_mask(data, include_doubtful_energy).sum())
    candidates: dict[str, Any] = {
        "forest": ForestModel(random_state=seed, n_jobs=n_jobs, include_doubtful_energy=include_doubtful_energy),
        "roofline": RooflineModel()}
    if tunable_names(parameters(data)):
        # the fold models are never adapted: no per-device landscapes (the final model has them)
        candidates["param_forest"] = ParameterForestModel(n_estimators=FOLD_TREES, random_state=seed,
                                                          n_jobs=n_jobs, max_rows_per_tree=TRAIN_ROWS_PER_TREE,
                                                          device_landscapes=False)
    if n_energy >= MIN_ENERGY_ROWS:
        candidates["energy"] = EnergyModel(latency_model=RooflineModel(),
                                           include_doubtful_energy=include_doubtful_energy)
    held_out = f"unseen ({', '.join(group_by)}) combinations" if group_by else f"unseen shapes ({n_shapes})"
    refused = _refusing_every_row(candidates, data)
    for name, reason in refused.items():
        notify(f"{name}: refuses these rows: {reason}")
    notify(f"evaluating on {held_out}, {n_splits} folds")
    predictions = cross_validated_predictions({k: v for k, v in candidates.items() if k not in refused}, data,
                                              "shape", n_splits, seed, include_doubtful_energy=include_doubtful_energy,
                                              progress=progress, group_by=group_by)
    predictions.attrs["reasons"].update(refused)  # reported with their reason, as a fold's refusal is
    predictions.attrs["models"] = list(candidates)
    table = summarize(predictions, alpha)
    table.insert(2, "split", "shape")
    notify("fitting the final models on every row")
    names = list(group_by) if group_by else None
    groups: Any = ParameterGroups(names) if names else "shape"
    final: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in ("forest", "roofline", "param_forest"):
        if name not in candidates:
            continue
        out_of_fold = predictions[predictions["model"] == name]
        if out_of_fold.empty:  # it could fit no fold: it cannot fit all rows either
            skipped[name] = predictions.attrs["reasons"].get(name, "it made no predictions on unseen groups")
            notify(f"{name} left out: {skipped[name]}")
            continue
        try:
            # calibrated on the evaluation's out-of-fold predictions (same grouped folds): no refits
            final[name] = ConformalWrapper(_final_estimator(name, candidates[name]), alpha=alpha, groups=groups,
                                           n_splits=n_splits, random_state=seed).fit(data, out_of_fold=out_of_fold)
        except InvalidInputError as exc:
            skipped[name] = str(exc)
            notify(f"{name} left out: {exc}")
    if not final:
        raise InvalidInputError("no model could be fitted on these rows: " + "; ".join(f"{k}: {v}"
                                                                                    for k, v in skipped.items()))
    if n_energy >= MIN_ENERGY_ROWS:
        final["energy"] = EnergyModel(include_doubtful_energy=include_doubtful_energy).fit(data)
    per_model = {name: {"evaluation": table[table["model"] == name].to_dict(orient="records")} for name in final}
    if "energy" in final:
        per_model["energy"]["coefficients"] = final["energy"].report().to_dict(orient="records")
    if "roofline" in final:
        per_model["roofline"]["efficiencies"] = final["roofline"].estimator_.report().to_dict(orient="records")
    selection = {"kernels": list(kernels or []), "devices": list(devices or []), "dtypes": list(dtypes or []),
                 "include_doubtful_energy": include_doubtful_energy, "include_contended": include_contended,
                 "seed": seed, "n_splits": n_splits, "alpha": alpha, "group_by": names}
    out = save_bundle(out_dir, final, rows=data, model_metadata=per_model,
                      metadata={"evaluation": table.to_dict(orient="records"),
                                "evaluation_split": f"group_by:{','.join(names)}" if names else "shape",
                                "selection": selection, "n_shapes": n_shapes, "n_energy_rows": n_energy,
                                "skipped_models": skipped,
                                # what `estimate --best-config` searches without the data
                                "parameter_spaces": observed_spaces(data),
                                "device_names": _device_names(data)})
    quantiles = {name: dict(model.quantiles_) for name, model in final.items() if hasattr(model, "quantiles_")}
    return TrainReport(out_dir=out, n_rows=int(len(data)), n_shapes=n_shapes, n_energy_rows=n_energy,
                       devices=sorted(data["device_key"].astype(str).unique()),
                       kernels=sorted(data["kernel"].astype(str).unique()),
                       dtypes=sorted(data["dtype"].astype(str).unique()), models=list(final), evaluation=table,
                       fingerprint=data_fingerprint(data), interval_quantiles=quantiles, skipped=skipped,
                       group_by=names)


def _refusing_every_row(candidates: Mapping[str, Any], rows: pd.DataFrame) -> dict[str, str]:
    """{model: its reason} for the roofline and forest when they refuse every row (no row has
    a roofline bound: no FLOPs or no device peaks, as in most auto-tuning caches): fitted once
    on all rows, a refusal takes a second, where once per fold it took ten. The forest needs
    the same bound, so it is tried only after the roofline refused."""
    from sklearn.base import clone  # seconds to import; only fitting needs it

    refused: dict[str, str] = {}
    for name in ("roofline", "forest"):
        if name not in candidates:
            continue
        try:
            clone(candidates[name]).fit(rows)
        except InvalidInputError as exc:
            refused[name] = str(exc)
            continue
        break  # it fits some rows: evaluated fold by fold as usual
    return refused


def _final_estimator(name: str, fold_model: Any) -> Any:
    """The model fitted on every row: the fold models' settings, except that the parameter
    forest gets its full size back (``FOLD_TREES``) and what only a saved model uses (its
    per-device landscapes, for few-shot ``adapt``)."""
    from sklearn.base import clone  # seconds to import; only fitting needs it

    if name == "param_forest":
        full_size = ParameterForestModel().n_estimators
        return clone(fold_model).set_params(device_landscapes=True, n_estimators=full_size)
    return fold_model


def _device_names(rows: pd.DataFrame) -> dict[str, str]:
    """Each device key's first recorded name (how ``estimate --best-config`` finds a device by name)."""
    if "device_name" not in rows:
        return {}
    named = rows[rows["device_name"].notna()]
    return {str(k): str(v) for k, v in named.groupby(named["device_key"].astype(str))["device_name"].first().items()}
