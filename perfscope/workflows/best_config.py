"""The best configuration of a tunable kernel by the model: ``perfscope estimate --best-config``.

For one problem (kernel family, device, dtype, sizes) the model ranks a parameter space:

* declared (``space``, ``--space 'block_size_x=16,32;block_size_y=1,2'``): every
  combination; parameters it leaves out come from the given configuration (``params``)
  or, where they never vary, from the observed space;
* observed in ``data`` (``--data DATASET``): the family's distinct configurations there;
* observed at train time: ``perfscope train`` keeps each family's space in the bundle;
* for GEMM without any of these: Triton-style tiles (``GPU_TILE_CANDIDATES``, or
  ``CPU_TILE_CANDIDATES`` on a CPU), what ``--best-tile`` always searched.

The spaces and the syntax of a declared one: ``perfscope.workflows.config_space``.
The ranking model is the bundle's parameter forest where it has one (it sees every
tunable parameter; ``forest`` for the tile grid, whose features are the tiles), else its
forest. The answer: the predicted best with its interval, the gain over the given
configuration and over the space's median, and, where ``data`` holds measurements of
this problem on this device, the measured time of the pick, the measured best and the
regret (time of the pick over the best time). ``suggest=K`` (``--suggest K``) adds the K
configurations to measure next on a GPU the model does not know yet (or knows from a few
measurements): ``perfscope.models.few_shot.choose_to_measure`` on the predictions, mostly
the predicted fastest and a quarter spread over the rest, leaving out those an adapted
model already measured there; measure them, ``train --adapt`` on them, and ask again.
A declared configuration that was never observed has no recorded launch geometry: the
model predicts it with less to go on (the answer counts them). The roofline fallback
cannot rank configurations: refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from perfscope.columns import as_columns, repeat
from perfscope.devices.registry import find_device_spec, normalise_device_name, resolve_device
from perfscope.errors import InvalidInputError
from perfscope.models.efficiency import measured_latency_s, ok_mask
from perfscope.models.few_shot import choose_to_measure, fastest_share
from perfscope.models.param_space import row_configurations, space_configurations, tunable_items
from perfscope.workflows.config_space import (
    TILE_NAMES,
    declared_configs,
    distinct_configs,
    family_rows,
    given_config,
    problem_of,
    shown,
    tile_grid_configs,
    varied_names,
)
from perfscope.workflows.estimate_columns import (
    SHAPE_COLUMNS,
    config_columns,
    estimate_columns,
    has_sizes,
    loaded_bundle,
)

TOP = 5
NEEDS_A_MODEL = ("the best-configuration search needs a model trained on a parameter sweep (--model): the "
                 "roofline fallback cannot rank configurations, it ignores on-chip reuse and would always favour "
                 "the smallest tile")


# ---- the search ---------------------------------------------------------------------------

def best_config(kernel: str, device: str, dtype: str = "fp32", *, model: Any, shape: Mapping[str, Any] | None = None,
                params: Mapping[str, Any] | None = None, space: Mapping[str, Sequence[Any]] | None = None,
                data: Any = None, problem_size: Sequence[int] | None = None, implementation: str | None = None,
                tile_grid: bool = False, fp32_math: str | None = None, suggest: int | None = None) -> dict[str, Any]:
    """The configuration the model predicts fastest (see the module docstring), as a JSON-ready dict.

    ``shape``: the family's sizes (gemm, conv, attention) and any tile columns of the
    given configuration; ``params``: the given configuration's tunable parameters;
    ``space``: a declared space (name -> values; tile names are tile columns); ``data``:
    profile rows (a DataFrame) to take the space and the measurements from;
    ``problem_size``: the problem of an imported kernel (Kernel Tuner's ``problem_size``),
    needed when the space holds several; ``tile_grid``: search the GEMM tile grid;
    ``fp32_math``: as ``estimate``'s (which peak the forest's features use); ``suggest``:
    how many configurations to propose for measuring (under ``"to_measure"``)."""
    if suggest is not None and suggest < 1:
        raise InvalidInputError(f"--suggest must be at least 1, got {suggest}", parameter="suggest")
    if model is None:
        raise InvalidInputError(NEEDS_A_MODEL, parameter="model")
    bundle = loaded_bundle(model)
    if "forest" not in bundle.models and "param_forest" not in bundle.models:
        raise InvalidInputError(f"the bundle holds no forest ({', '.join(bundle.models)}): {NEEDS_A_MODEL}",
                                parameter="model")
    shape = dict(shape or {})
    given_tiles = {n: shape.pop(n) for n in TILE_NAMES if shape.get(n) is not None}
    data_rows = family_rows(data, kernel) if data is not None else None
    stored = (bundle.metadata.get("parameter_spaces") or {}).get(kernel)
    observed = (row_configurations(data_rows) if data_rows is not None and len(data_rows)
                else space_configurations(stored) if stored else [])
    if implementation:
        observed = [c for c in observed if c.get("implementation") in (None, implementation)]
    problem = problem_of(observed, problem_size)
    observed = [c for c in observed if c["params"].get("problem_size") in (None, problem)]
    if space is not None:
        source, candidates = "declared", declared_configs(space, params or {}, given_tiles, observed, problem)
    elif observed:
        source, candidates = ("data" if data_rows is not None and len(data_rows) else "bundle"), observed
    elif tile_grid or kernel == "gemm":
        source, candidates = "tiles", tile_grid_configs(device, implementation)
    else:
        raise InvalidInputError(f"no parameter space for {kernel}: the bundle keeps none (train it again with this "
                                "perfscope) and no --data or --space was given", parameter="space")
    if tile_grid and source != "tiles":
        source, candidates = "tiles", tile_grid_configs(device, implementation)
    candidates = distinct_configs(candidates)
    if not candidates:
        raise InvalidInputError(f"the parameter space of {kernel} is empty for this problem", parameter="space")
    given = given_config(params or {}, given_tiles, shape, observed, problem, implementation, source)
    # candidates that differ only in tiles go to the forest, whose features are the sizes and
    # tiles; the parameter forest does not see tiles and would tie them all
    only_tiles = all(name.startswith("tile_") for name in varied_names(candidates))
    tiles_for_forest = "forest" in bundle.models and kernel in SHAPE_COLUMNS and (source == "tiles" or only_tiles)
    if "param_forest" in bundle.models and not tiles_for_forest:
        predictor = "param_forest"  # it sees every tunable parameter
    elif "forest" in bundle.models and kernel in SHAPE_COLUMNS:
        predictor = "forest"  # its features are the sizes and tiles
    else:
        raise InvalidInputError(f"the bundle has no parameter forest to rank {kernel} configurations: train it on "
                                "rows with tunable parameters", parameter="model")
    configs = candidates + ([given] if given is not None else [])
    latency, low, high, device_key, rows = _predicted(bundle, predictor, kernel, device, dtype, shape, configs,
                                                      fp32_math)
    if not np.isfinite(latency[:len(candidates)]).any():
        raise InvalidInputError(f"no configuration has a latency estimate on {device} for {dtype}")
    ranked = [int(i) for i in np.argsort(np.where(np.isfinite(latency), latency, np.inf)[:len(candidates)],
                                         kind="stable")]
    best = ranked[0]
    median_s = float(np.nanmedian(latency[:len(candidates)]))
    wrapper = bundle[predictor]
    result: dict[str, Any] = {
        "kernel": kernel, "device": device, "device_key": device_key, "dtype": dtype,
        "problem": {**shape, **({"problem_size": problem} if problem is not None else {})},
        "model": predictor,
        "method": f"model:{predictor} (conformal {1 - getattr(wrapper, 'alpha', 0.1):.0%} interval)",
        "space": {"source": source, "n_candidates": len(candidates),
                  "n_unobserved": sum(1 for c in candidates if c.get("unobserved")),
                  "parameters": varied_names(candidates)},
        "best": {"config": shown(candidates[best]), "latency_s": float(latency[best]),
                 "latency_low_s": float(low[best]), "latency_high_s": float(high[best]),
                 "n_tied": int(np.sum(latency[:len(candidates)] == latency[best]))},
        "median_latency_s": median_s, "gain_over_median": median_s / float(latency[best]),
        "given": None, "gain_over_given": None, "measured": None,
        "top": [{"config": shown(candidates[i]), "latency_s": float(latency[i])} for i in ranked[:TOP]],
    }
    if given is not None:
        result["given"] = {"config": shown(given), "latency_s": float(latency[-1])}
        result["gain_over_given"] = float(latency[-1] / latency[best])
    if suggest is not None:
        result["to_measure"] = _to_measure(bundle, predictor, rows, candidates, latency[:len(candidates)], suggest)
    if data_rows is not None:
        result["measured"] = _measured(data_rows, kernel, device_key, dtype, shape, problem, candidates, ranked)
        for entry, i in zip(result["top"], ranked[:TOP], strict=False):
            entry["measured_s"] = (result["measured"] or {}).get("times", {}).get(i)
        if result["measured"] is not None:
            result["measured"].pop("times")
    return result


def legacy_best_tile(result: Mapping[str, Any], given_latency_s: float) -> dict[str, Any] | None:
    """The ``best_tile`` dict ``estimate(..., best_tile=True)`` has always returned, from a
    ``best_config`` answer whose best is a tile (None otherwise)."""
    config = result["best"]["config"]
    if any(n not in config for n in ("tile_m", "tile_n", "tile_k")):
        return None
    return {"tile_m": int(config["tile_m"]), "tile_n": int(config["tile_n"]), "tile_k": int(config["tile_k"]),
            "implementation": config.get("implementation"), "latency_s": result["best"]["latency_s"],
            "gain_over_default": float(given_latency_s / result["best"]["latency_s"]), "method": result["method"]}


# ---- predictions and measurements ---------------------------------------------------------

def predict_configs(bundle: Any, predictor: str, kernel: str, device: str, dtype: str, shape: Mapping[str, Any],
                    configs: list[dict[str, Any]], fp32_math: str | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(latency, low, high) in seconds per configuration by ``bundle[predictor]`` (``forest``
    or ``param_forest``), and the device key used."""
    return _predicted(bundle, predictor, kernel, device, dtype, shape, configs, fp32_math)[:4]


def _predicted(bundle: Any, predictor: str, kernel: str, device: str, dtype: str, shape: Mapping[str, Any],
               configs: list[dict[str, Any]], fp32_math: str | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, Any]:
    """``predict_configs``'s answer and the parameter forest's input rows (None for the forest)."""
    flat = _flat(kernel, shape, configs)
    if predictor == "forest":
        out = estimate_columns(kernel, flat, device, dtype=dtype, model=bundle, fp32_math=fp32_math)
        return (np.asarray(out["latency_s"], float), np.asarray(out["latency_low_s"], float),
                np.asarray(out["latency_high_s"], float), str(out["device"][0]), None)
    key, name = _device_key(device, bundle)
    rows = _parameter_rows(kernel, dtype, flat, key, name)
    latency, low, high = bundle[predictor].predict_with_intervals(rows)["latency"]
    return np.asarray(latency, float), np.asarray(low, float), np.asarray(high, float), key, rows


def _flat(kernel: str, shape: Mapping[str, Any], configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat record per configuration: the shape, its columns and its parameters as JSON."""
    # a family with sizes has its work computed from the sizes asked, not the observed row's
    left_out = ("params", "unobserved", "flops", "min_bytes") if has_sizes(kernel, shape) else ("params", "unobserved")
    return [{**shape, **{k: v for k, v in c.items() if k not in left_out},
             "params_json": json.dumps(c["params"], sort_keys=True)} for c in configs]


def _parameter_rows(kernel: str, dtype: str, flat: list[dict[str, Any]], key: str, name: str | None) -> Any:
    """The parameter forest's input columns for ``flat`` configurations on device ``key``."""
    rows = config_columns(kernel, flat, dtype) if flat and has_sizes(kernel, flat[0]) else {
        **as_columns(flat), "kernel": repeat(kernel, len(flat)), "dtype": repeat(dtype, len(flat))}
    rows["device_key"] = repeat(key, len(flat))
    rows["device_name"] = repeat(name or "", len(flat))
    return rows


def _to_measure(bundle: Any, predictor: str, rows: Any, candidates: list[dict[str, Any]], latency: np.ndarray,
                k: int) -> dict[str, Any]:
    """``suggest``: the k candidates to measure next (``choose_to_measure``), without those the
    adapted parameter forest already measured on this device (``rows``: its input rows, the
    candidates' first, as ``_predicted`` built them)."""
    measured = np.zeros(len(candidates), dtype=bool)
    inner: Any = getattr(bundle[predictor], "estimator_", None)
    if predictor == "param_forest" and hasattr(inner, "measured_mask"):
        mine = {name: values[:len(candidates)] for name, values in rows.items()}  # without the given one
        measured = np.asarray(inner.measured_mask(mine), dtype=bool)
    chosen = choose_to_measure(latency, k, exclude=measured)
    fastest = set(chosen[:fastest_share(len(chosen))])
    return {"k": k, "n_measured_already": int(measured.sum()),
            "configs": [{"config": shown(candidates[i]), "latency_s": float(latency[i]),
                         "why": "predicted fastest" if i in fastest else "spread"} for i in chosen]}


def _device_key(device: str, bundle: Any) -> tuple[str, str | None]:
    """The device key the model knows for ``device`` (by key, name or spec row), else the
    device's own key and name (a device the model never saw: its spec figures stand in)."""
    names: dict[str, Any] = dict(bundle.metadata.get("device_names") or {})
    model = bundle["param_forest"].estimator_
    for key in getattr(model, "scales_", {}):
        names.setdefault(key, None)
    wanted = normalise_device_name(device)
    for key, name in names.items():
        if wanted in (normalise_device_name(key), normalise_device_name(name or "")):
            return key, name
    spec = find_device_spec(device)
    if spec is not None:
        for key, name in names.items():
            other = find_device_spec(name or "") or find_device_spec(key)
            if other is not None and other.device_id == spec.device_id:
                return key, name
    # a unique known device whose name holds the given one ("A100" for "NVIDIA A100-PCIE-40GB")
    holding = [key for key, name in names.items()
               if wanted and (wanted in normalise_device_name(key) or wanted in normalise_device_name(name or ""))]
    if len(holding) == 1:
        return holding[0], names[holding[0]]
    try:
        resolved, _source = resolve_device(device)
    except InvalidInputError:
        raise InvalidInputError(f"unknown device {device!r}: the model knows {', '.join(names) or 'none'}; or name a "
                                "spec-table GPU", parameter="device") from None
    return device, resolved.name


def _measured(rows: Any, kernel: str, device_key: str, dtype: str, shape: Mapping[str, Any],
              problem: list[Any] | None, candidates: list[dict[str, Any]], ranked: list[int]) -> dict[str, Any] | None:
    """Measured times of this problem on this device in ``rows``, against the ranking."""
    wanted = normalise_device_name(device_key)
    columns = as_columns(rows)
    mine = ok_mask(columns) & (rows["dtype"].astype(str) == dtype).to_numpy()
    same_device = np.array(rows["device_key"].astype(str).map(normalise_device_name) == wanted)
    if "device_name" in rows:
        same_device |= (rows["device_name"].astype(str).map(normalise_device_name) == wanted).to_numpy()
    mine &= same_device
    for name, value in shape.items():
        if name in rows and not isinstance(value, bool):
            mine &= (rows[name].astype(float) == float(value)).to_numpy()
    here = rows[mine]
    time_s = measured_latency_s(as_columns(here))
    by_key: dict[Any, list[float]] = {}
    for config, t in zip(row_configurations(here), time_s, strict=True):
        if np.isfinite(t) and config["params"].get("problem_size") in (None, problem):
            by_key.setdefault(tunable_items(config), []).append(float(t))
    if not by_key:
        return None
    measured = {key: float(np.median(v)) for key, v in by_key.items()}
    best_key = min(measured, key=measured.__getitem__)
    times = {i: measured.get(tunable_items(c)) for i, c in enumerate(candidates)}
    chosen = times[ranked[0]]
    return {"n_configurations": len(measured), "chosen_time_s": chosen,
            "best_config": {name: list(value) if isinstance(value, tuple) else value for name, value in best_key},
            "best_time_s": measured[best_key],
            "regret": chosen / measured[best_key] if chosen is not None else None,
            "times": times}
