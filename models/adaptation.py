"""Few-shot adaptation of a saved bundle to a new GPU: ``perfscope train --adapt DATASET``.

A bundle trained on some GPUs, plus k measured configurations of a new one: each model
that can adapt (``adapt(rows)``: ``ParameterForestModel`` learns the new device's scale
and, with enough rows, a small residual forest; its main forest is kept) learns from
those rows, and the bundle is saved again with the adapted per-device part, so it
predicts the new GPU. A model that cannot adapt is kept as trained and named, with
the reason, in the bundle's metadata (``adaptation``).

Which k rows: ``choose="random"`` draws them (seeded); ``choose="model"`` lets the model
pick them as a tuner would measure them (``perfscope.models.few_shot.adapt_to_chosen``:
mostly its predicted fastest, a quarter spread over the rest, in two batches) from a
dataset that holds more measurements than k, so what a model-guided search would have
measured can be replayed.

Intervals: a ``ConformalWrapper`` recalibrates each adapted device on its k rows
(K-fold adaptation residuals; at least the training quantile, see
``perfscope.models.device_intervals``); coverage measured in docs/models.md, "Intervals".
"""

from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.errors import InvalidInputError
from perfscope.models.efficiency import ok_rows
from perfscope.models.few_shot import adapt_to_chosen
from perfscope.models.persistence import data_fingerprint, load_bundle, save_bundle

if TYPE_CHECKING:
    import pandas as pd

# metadata every save writes afresh (the rest is carried over from the trained bundle)
_WRITTEN_BY_SAVE = ("created_at", "schema_version", "libraries", "kind", "name", "features", "targets")
CHOICES = ("random", "model")
CANNOT_ADAPT = "cannot adapt to a new device (only the parameter forest learns a device from a few rows)"


def adapt_bundle(model_dir: str | os.PathLike[str], rows: pd.DataFrame, *,
                 out_dir: str | os.PathLike[str] | None = None, sample: int | None = None,
                 seed: int = 0, choose: str = "random") -> dict[str, Any]:
    """Adapt the bundle at ``model_dir`` to the devices of ``rows``' ok rows and save it at
    ``out_dir`` (default: in place). ``sample``: use k ok rows instead of all, drawn at
    random (``choose="random"``, ``seed``) or chosen by the bundle's parameter forest
    (``choose="model"``, per device, see the module docstring). Returns what was done
    (also kept in the bundle metadata under ``adaptation``). ``InvalidInputError`` when no
    model of the bundle can adapt or no row is usable."""
    bundle = load_bundle(model_dir)
    usable = ok_rows(rows)
    if len(usable) == 0:
        raise InvalidInputError("--adapt: the dataset has no ok rows with a time to adapt to", parameter="adapt")
    if sample is not None:
        if sample < 1:
            raise InvalidInputError(f"--adapt-sample must be at least 1, got {sample}", parameter="adapt_sample")
    if choose not in CHOICES:
        raise InvalidInputError(f"--adapt-choose must be one of {', '.join(CHOICES)}, got {choose!r}",
                                parameter="adapt_choose")
    if choose == "model" and sample is None:
        raise InvalidInputError("--adapt-choose model needs --adapt-sample K (how many rows the model may choose)",
                                parameter="adapt_choose")
    if sample is not None and sample < len(usable):
        if choose == "model":
            usable = _chosen_by_model(bundle.models, usable, sample)
        else:
            chosen = np.random.default_rng(seed).choice(len(usable), size=sample, replace=False)
            usable = usable.iloc[np.sort(chosen)]
    adapted: list[str] = []
    skipped: dict[str, str] = {}
    for name, model in bundle.models.items():
        inner = getattr(model, "estimator_", model)
        if hasattr(inner, "adapt"):
            model.adapt(usable)  # a wrapper recalibrates its intervals on the rows as well
            adapted.append(name)
        else:
            skipped[name] = CANNOT_ADAPT
    if not adapted:
        raise InvalidInputError(f"no model in the bundle ({', '.join(bundle.models)}) {CANNOT_ADAPT}: train on rows "
                                "with tunable parameters (param_forest) to adapt", parameter="adapt")
    devices = sorted(usable["device_key"].astype(str).unique())
    report = {"models": adapted, "not_adapted": skipped, "devices": devices, "n_rows": int(len(usable)),
              "chosen_by": choose if sample is not None else "all rows",
              "fingerprint": data_fingerprint(usable),
              "interval": "re-calibrated per adapted device on K-fold adaptation residuals of its rows"}
    metadata = {**bundle.metadata, "adaptation": report}
    names = dict(metadata.get("device_names") or {})
    if "device_name" in usable:
        for key, name in zip(usable["device_key"].astype(str), usable["device_name"], strict=True):
            if isinstance(name, str) and name:
                names.setdefault(key, name)
    metadata["device_names"] = names
    per_model = {name: {k: v for k, v in meta.items() if k not in _WRITTEN_BY_SAVE}
                 for name, meta in bundle.model_metadata.items()}
    save_bundle(out_dir if out_dir is not None else model_dir, bundle.models,
                metadata={k: v for k, v in metadata.items() if k not in _WRITTEN_BY_SAVE},
                model_metadata=per_model)
    return report


def _chosen_by_model(models: dict[str, Any], usable: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per device of ``usable``: the ``k`` rows the bundle's parameter forest chooses to measure
    (``adapt_to_chosen`` on a copy: the models themselves adapt afterwards, to these rows)."""
    import pandas as pd  # only fitting needs frames; estimates must not load pandas

    ranker = next((getattr(m, "estimator_", m) for name, m in models.items() if name == "param_forest"), None)
    if ranker is None or not hasattr(ranker, "adapt"):
        raise InvalidInputError("--adapt-choose model needs a parameter forest in the bundle (train on rows with "
                                "tunable parameters)", parameter="adapt_choose")
    parts = []
    for _, mine in usable.groupby(usable["device_key"].astype(str), sort=True):
        mine = mine.reset_index(drop=True)
        _, chosen = adapt_to_chosen(copy.deepcopy(ranker), mine, k)
        parts.append(mine.iloc[chosen])
    return pd.concat(parts, ignore_index=True)
