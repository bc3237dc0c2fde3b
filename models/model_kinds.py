"""The kinds of model a bundle can hold, and each model's state as JSON plus forests.

Model classes are found by registry name and imported only when a bundle holds that
kind. A model's state is its own ``_to_state()`` with the kind added, and the state of
a wrapped model (a conformal wrapper's estimator, an energy model's latency model)
nested under ``"inner"``; its forests travel beside it, by dotted name.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from perfscope.errors import ModelFileError
from perfscope.models.forest import FOREST_FEATURES, PAPER_FEATURES
from perfscope.models.roofline_model import LOG_LINEAR_FEATURES

KINDS: dict[str, tuple[str, str]] = {
    "roofline": ("perfscope.models.roofline_model", "RooflineModel"),
    "log_linear": ("perfscope.models.roofline_model", "LogLinearModel"),
    "forest": ("perfscope.models.forest", "ForestModel"),
    "paper_baseline": ("perfscope.models.forest", "PaperBaselineModel"),
    "param_forest": ("perfscope.models.param_forest", "ParameterForestModel"),
    "energy": ("perfscope.models.energy_model", "EnergyModel"),
    "conformal": ("perfscope.models.intervals", "ConformalWrapper"),
}
"""Model kinds by registry name: (module, class), imported only when a bundle holds that kind."""


def model_class(kind: str) -> type:
    """The model class of a registry name (its module imported now)."""
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)


def model_kind(model: Any) -> str:
    """The registry name of a perfscope model's class (``ModelFileError`` for any other object)."""
    cls = type(model)
    for kind, (module, name) in KINDS.items():
        if cls.__module__ == module and cls.__qualname__ == name and model_class(kind) is cls:
            return kind
    raise ModelFileError(f"cannot save a {type(model).__name__}: only perfscope's own models are saved")


def model_state(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON state with the kind, forests by dotted name) of a model, nested models included."""
    kind = model_kind(model)
    state, objects = model._to_state()
    state = {"kind": kind, **state}
    inner = getattr(model, "estimator_", None) if kind == "conformal" else getattr(model, "latency_model_", None)
    if inner is not None:
        inner_state, inner_objects = model_state(inner)
        state["inner"] = inner_state
        objects.update({f"inner.{k}": v for k, v in inner_objects.items()})
    return state, objects


def model_from_state(state: Mapping[str, Any], objects: Mapping[str, Any]) -> Any:
    """The model (nested models included) that ``model_state`` described."""
    kind = state.get("kind")
    if kind not in KINDS:
        raise ModelFileError(f"unknown model kind {kind!r} in the bundle: upgrade perfscope")
    own = {k: v for k, v in objects.items() if not k.startswith("inner.")}
    inner = None
    if "inner" in state:
        inner = model_from_state(state["inner"], {k[len("inner."):]: v for k, v in objects.items()
                                                  if k.startswith("inner.")})
    cls = model_class(kind)
    if kind in ("conformal", "energy"):
        return cls._from_state(state, own, inner)
    return cls._from_state(state, own)


def features_of(model: Any) -> dict[str, Any]:
    """The features and targets a model reads and predicts, for its metadata."""
    kind = model_kind(model)
    if kind == "conformal":
        return features_of(model.estimator_)
    if kind == "param_forest":
        return {"features": list(model.feature_names_), "targets": ["latency"]}
    features = {"forest": list(FOREST_FEATURES), "paper_baseline": list(PAPER_FEATURES),
                "log_linear": list(LOG_LINEAR_FEATURES), "roofline": ["bound_time_s", "bound", "kernel", "dtype"],
                "energy": ["time_s", "flops", "min_bytes"]}[kind]
    return {"features": features, "targets": list(getattr(model, "targets_", ()))}
