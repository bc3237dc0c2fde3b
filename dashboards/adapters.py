"""Adapters to the parts of perfscope the dashboard calls but does not own.

* ``run_estimate``: ``perfscope.workflows.estimate.estimate(kernel, device, dtype, model=..., **config)``
  with the dashboard's loaded model, as ``perfscope estimate --model`` calls it (and
  ``perfscope.workflows.best_config`` for the best configuration, as ``--best-config``).
* ``run_estimate_params``: an imported family's configuration, by the parameter forest
  (``perfscope.workflows.estimate_params``).
* ``load_model`` / ``predict_latency_s``: a model bundle saved by ``perfscope train``
  (``perfscope.models.persistence.load_bundle``) and its latency predictions for
  configuration rows (``perfscope.models.prediction.estimate_rows``), for the tile explorer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfscope.errors import InvalidInputError, PerfscopeError
from perfscope.models.persistence import load_bundle
from perfscope.models.prediction import estimate_rows
from perfscope.workflows.estimate import SHAPE_COLUMNS, estimate_with_best_config
from perfscope.workflows.estimate import estimate as workflow_estimate
from perfscope.workflows.estimate_params import estimate_params

SHAPE_EXAMPLES = {
    "gemm": "batch=1 m=4096 n=4096 k=4096",
    "conv": "conv_n=32 conv_c=64 conv_h=56 conv_w=56 conv_k=64 conv_r=3 conv_s=3 pad_h=1 pad_w=1",
    "attention": "batch=1 heads=16 kv_heads=16 seq_q=2048 seq_k=2048 head_dim=64 causal=true",
}


@dataclass(frozen=True)
class EstimateOutcome:
    """What the Estimate page shows: the estimate's dict, or why there is none."""

    ok: bool
    message: str
    result: dict[str, Any] | None = None


def parse_shape(kernel: str, text: str | None) -> dict[str, int | bool]:
    """"m=1024 n=512 k=256" (spaces or commas) -> {"m": 1024, ...}; ``InvalidInputError`` for
    unknown keys or values that are not positive integers (``causal`` takes true/false)."""
    if kernel not in SHAPE_COLUMNS:
        raise InvalidInputError(f"unknown kernel family {kernel!r}: use one of {', '.join(SHAPE_COLUMNS)}")
    out: dict[str, int | bool] = {}
    for part in (text or "").replace(",", " ").split():
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(f"{part!r}: write key=value, for example {SHAPE_EXAMPLES[kernel]}")
        if key not in SHAPE_COLUMNS[kernel]:
            raise InvalidInputError(f"{key!r} is not a {kernel} size: use {', '.join(SHAPE_COLUMNS[kernel])}")
        if key == "causal":
            if value.lower() not in ("true", "false", "1", "0"):
                raise InvalidInputError(f"causal must be true or false, got {value!r}")
            out[key] = value.lower() in ("true", "1")
            continue
        try:
            number = int(value)
        except ValueError:
            raise InvalidInputError(f"{key} must be an integer, got {value!r}") from None
        if number < (0 if key.startswith("pad") else 1):
            raise InvalidInputError(f"{key} must be {'>= 0' if key.startswith('pad') else 'positive'}, got {number}")
        out[key] = number
    if not out:
        raise InvalidInputError(f"give the {kernel} sizes, for example {SHAPE_EXAMPLES[kernel]}")
    return out


def parse_params(text: str | None) -> dict[str, int | float | str]:
    """"block_size_x=128 tile=4" -> {"param_block_size_x": 128, ...}: tunable parameters as
    the ``param_<name>`` columns imported parameter spaces carry (numbers kept as numbers)."""
    out: dict[str, int | float | str] = {}
    for part in (text or "").replace(",", " ").split():
        key, sep, value = part.partition("=")
        key = key.strip().removeprefix("param_")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise InvalidInputError(f"{part!r}: write name=value, for example block_size_x=128")
        number: int | float | str
        try:
            number = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                number = value
        out[f"param_{key}"] = number
    return out


def run_estimate(kernel: str, device: str, dtype: str, config: Mapping[str, Any], *, model: Any = None,
                 implementation: str | None = None, best_tile: bool = False, best_config: bool = False,
                 estimate: Callable[..., Any] | None = None) -> EstimateOutcome:
    """``perfscope.workflows.estimate.estimate`` (or ``estimate`` when given, without
    ``best_config``) with the loaded
    ``model``: the answer ``perfscope estimate ... --model`` gives; with ``best_config``, the
    answer of ``perfscope estimate ... --best-config`` (``perfscope.workflows.best_config``:
    the ``param_<name>`` entries of ``config`` are the given configuration's parameters).
    Never raises for perfscope's own errors: the page shows their message."""
    try:
        if best_config:
            params = {k.removeprefix("param_"): v for k, v in config.items() if k.startswith("param_")}
            shape = {k: v for k, v in config.items() if not k.startswith("param_")}
            # the page's fields may name part of a configuration: the space is ranked all the same
            result = estimate_with_best_config(kernel, device, dtype, model=model, shape=shape, params=params or None,
                                               implementation=implementation, rank_when_incomplete=True)
        else:
            if estimate is None:
                estimate = workflow_estimate
            result = estimate(kernel, device, dtype, model=model, implementation=implementation, best_tile=best_tile,
                              **dict(config))
    except PerfscopeError as exc:
        return EstimateOutcome(False, str(exc))
    if not isinstance(result, Mapping):
        return EstimateOutcome(False, f"the estimate returned {type(result).__name__}, not a dict")
    return EstimateOutcome(True, "", dict(result))


def run_estimate_params(kernel: str, device: str, dtype: str, params: Mapping[str, Any], *, model: Any,
                        problem_size: list[int] | None = None, implementation: str | None = None,
                        region: str = "World", pue: float = 1.0, best_config: bool = False) -> EstimateOutcome:
    """``perfscope.workflows.estimate_params.estimate_params``: an imported family's
    configuration estimated by the model's parameter forest (with ``best_config``, the
    best configuration too). Never raises for perfscope's own errors."""
    try:
        result = estimate_params(kernel, device, dtype, model=model, params=params, problem_size=problem_size,
                                 implementation=implementation, region=region, pue=pue, best=best_config)
    except PerfscopeError as exc:
        return EstimateOutcome(False, str(exc))
    return EstimateOutcome(True, "", result)


def load_model(path: str | Path | None) -> tuple[Any | None, str]:
    """(loaded model bundle or None, a note for the page)."""
    if path is None:
        return None, "no model loaded (start the dashboard with a model to compare predictions)"
    try:
        bundle = load_bundle(path)
    except PerfscopeError as exc:
        return None, f"model not loaded: {exc}"
    return bundle, f"model: {path}"


def predict_latency_s(bundle: Any, rows: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """Predicted latency (s) per row from a bundle, or (None, why not)."""
    if bundle is None or rows.empty:
        return None, ""
    try:
        predicted = estimate_rows(bundle, rows)
    except (PerfscopeError, KeyError, AttributeError, ValueError) as exc:  # a model that cannot predict here
        return None, f"no predictions from the model: {type(exc).__name__}: {exc}"
    return predicted["latency_s"].to_numpy(dtype=float), ""
