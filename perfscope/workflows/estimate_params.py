"""Estimates for one configuration of an imported tunable kernel (Kernel Tuner, ...): a
family without GEMM/conv/attention sizes, whose configurations are its tunable
parameters and its problem size.

The roofline cannot bound such a kernel (the import knows no FLOPs or bytes unless given
``--flops``/``--bytes``), so the answer comes from the bundle's parameter forest, which
``perfscope train`` fits on every tunable parameter, with its conformal interval; the
parameter space it was trained on (kept in the bundle) supplies the fields to fill,
their values, the launch geometry of an observed configuration and the constants.
Energy is TDP x latency (an upper-end estimate) where the device's spec row is known.

Light path: numpy only (no pandas), like ``perfscope.workflows.estimate``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from perfscope.carbon import grid_intensity, operational_gco2e
from perfscope.devices.registry import find_device_spec
from perfscope.errors import InvalidInputError
from perfscope.models.param_space import PROBLEM_SIZE, row_configurations, space_configurations
from perfscope.workflows.best_config import best_config, predict_configs
from perfscope.workflows.config_space import TILE_NAMES, given_config, problem_of, shown, varied_names
from perfscope.workflows.estimate_columns import DEFAULT_REGION, loaded_bundle

PREDICTOR = "param_forest"


def family_space(kernel: str, *, model: Any = None, rows: Any = None) -> dict[str, Any]:
    """The fields of an imported family: ``{"source": "model" | "data" | None, "parameters":
    {name: sorted values}, "problem_sizes": [[...], ...], "implementations": [...],
    "defaults": {name: value}}``. The varied tunable parameters are the fields (constants
    and the launch geometry follow from them); the defaults are the first observed
    configuration's (a valid one: Kernel Tuner spaces have constraints). The model's
    saved space is used first, else the family's ``rows`` (a DataFrame or columns)."""
    configs: list[dict[str, Any]] = []
    source = None
    stored = ((loaded_bundle(model).metadata.get("parameter_spaces") or {}).get(kernel) if model is not None else None)
    if stored:
        configs, source = space_configurations(stored), "model"
    elif rows is not None and len(rows):
        mine = rows[np.asarray(rows["kernel"].astype(str) == kernel)]
        if len(mine):
            configs, source = row_configurations(mine), "data"
    names = [n for n in varied_names(configs) if n != "implementation" and n not in TILE_NAMES]
    values: dict[str, set[Any]] = {n: set() for n in names}
    for config in configs:
        for name in names:
            value = config["params"].get(name)
            if value is not None:
                values[name].add(value)
    sizes = list(dict.fromkeys(json.dumps(c["params"].get(PROBLEM_SIZE)) for c in configs
                               if c["params"].get(PROBLEM_SIZE) is not None))
    first = configs[0]["params"] if configs else {}
    return {"source": source, "parameters": {n: sorted(v, key=_order) for n, v in values.items()},
            "problem_sizes": [json.loads(s) for s in sizes],
            "implementations": sorted({str(c["implementation"]) for c in configs if c.get("implementation")}),
            "defaults": {n: first[n] for n in names if n in first}, "n_configurations": len(configs)}


def _order(value: Any) -> tuple[int, Any]:
    """Numbers before text, each in their own order."""
    return (0, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, str(value))


def estimate_params(kernel: str, device: str, dtype: str = "fp32", *, model: Any, params: Mapping[str, Any],
                    problem_size: Sequence[int] | None = None, implementation: str | None = None,
                    region: str = DEFAULT_REGION, intensity_gco2e_per_kwh: float | None = None, pue: float = 1.0,
                    best: bool = False) -> dict[str, Any]:
    """The parameter forest's estimate of one configuration (``params``: the tunable
    parameters by name) of an imported ``kernel``: latency with its interval, energy,
    power and carbon, and, with ``best``, ``best_config``'s answer under ``"best_config"``
    (``perfscope estimate --best-config``). ``InvalidInputError`` when there is no model,
    no parameter forest, or the model never saw ``kernel``."""
    if model is None:
        raise InvalidInputError(f"{kernel} has no sizes to bound with the roofline: its estimates need a model "
                                f"trained on it (perfscope train, then --model)", parameter="model")
    bundle = loaded_bundle(model)
    spaces = bundle.metadata.get("parameter_spaces") or {}
    if PREDICTOR not in bundle.models or kernel not in spaces:
        known = ", ".join(sorted(spaces)) or "none"
        raise InvalidInputError(f"the model has no parameter forest trained on {kernel} (its parameter spaces: "
                                f"{known}): train it on the {kernel} rows", parameter="model")
    observed = space_configurations(spaces[kernel])
    if implementation:
        observed = [c for c in observed if c.get("implementation") in (None, implementation)]
    problem = problem_of(observed, problem_size)
    observed = [c for c in observed if c["params"].get(PROBLEM_SIZE) in (None, problem)]
    given = given_config(dict(params), {}, {}, observed, problem, implementation, "model")
    if given is None:
        raise InvalidInputError(f"give the tunable parameters of the {kernel} configuration", parameter="params")
    latency, low, high, device_key = predict_configs(bundle, PREDICTOR, kernel, device, dtype, {}, [given], None)
    if not np.isfinite(latency[0]):
        raise InvalidInputError(f"the model has no latency estimate for {kernel} on {device}")
    spec = find_device_spec(device_key) or find_device_spec(device)  # the device the model answered for
    tdp_w = getattr(spec, "tdp_w", None)
    energy_j = float(latency[0]) * tdp_w if tdp_w else float("nan")
    if intensity_gco2e_per_kwh is None:
        grid = grid_intensity(region)
        intensity, intensity_source = grid.intensity_gco2e_per_kwh, grid.citation
    else:
        intensity, intensity_source = float(intensity_gco2e_per_kwh), "given"
    wrapper = bundle[PREDICTOR]
    trained = set(bundle.metadata.get("device_names") or {}) | set(getattr(wrapper.estimator_, "scales_", {}))
    result: dict[str, Any] = {
        "kernel": kernel, "dtype": dtype, "device": device, "device_key": device_key,
        "device_source": ("a device the model was trained on" if device_key in trained
                          else "not seen in training: its spec-sheet figures stand in"),
        "config": shown(given), "problem_size": problem, "observed": not given.get("unobserved"),
        "latency_s": float(latency[0]), "latency_low_s": float(low[0]), "latency_high_s": float(high[0]),
        "interval_level": 1 - getattr(wrapper, "alpha", 0.1),
        "method": f"model:{PREDICTOR} (conformal {1 - getattr(wrapper, 'alpha', 0.1):.0%} interval)",
        "energy_j": energy_j, "power_w": float(tdp_w) if tdp_w else float("nan"),
        "energy_method": ("estimate-tdp (TDP x latency: an upper-end estimate)" if tdp_w
                          else "none (no TDP known for this device)"),
        "carbon_intensity_gco2e_per_kwh": intensity, "carbon_intensity_source": intensity_source,
        "pue": float(pue), "carbon_gco2e": float(operational_gco2e(energy_j, intensity, pue)),
    }
    if best:
        result["best_config"] = best_config(kernel, device, dtype, model=bundle, params=params,
                                            problem_size=problem, implementation=implementation)
    return result
