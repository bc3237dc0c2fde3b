"""Parameter spaces of tunable kernels: the distinct configurations rows hold, as JSON.

``perfscope train`` keeps each kernel family's observed space in the bundle, so that
``perfscope estimate --best-config`` can search it without the data. A configuration
is its implementation, its Triton-style tile columns, its own FLOPs and bytes when the
rows had them (an import with ``--flops``/``--bytes``), and every parameter of
``params_json`` / ``param_<name>``: the tunable ones and the launch geometry and
``problem_size`` an import recorded, which tell the model how that configuration
launches for that problem.

Stored form per family: ``{"columns": [...], "rows": [[...], ...]}`` with parameter
columns named ``param:<name>``; a missing value is ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from perfscope.columns import as_columns, group_codes, take
from perfscope.models.param_features import LAUNCH_PREFIX, PARAM_PREFIX, parameters

TILE_COLUMNS = ("tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages")
WORK_COLUMNS = ("flops", "min_bytes")
PARAM_COLUMN = "param:"
PROBLEM_SIZE = "problem_size"
MAX_STORED_CONFIGURATIONS = 250_000  # per family: beyond it the bundle keeps none (give --data or --space)


def row_configurations(rows: Any) -> list[dict[str, Any]]:
    """Each row's configuration (see the module docstring): ``{"implementation", tile and work
    columns..., "params": {...}}``, missing values left out. ``rows``: a DataFrame or columns."""
    size = len(rows["kernel"]) if "kernel" in rows else len(rows)
    plain = {name: [_plain(v) for v in rows[name]] for name in ("implementation", *TILE_COLUMNS, *WORK_COLUMNS)
             if name in rows}
    params = {name: [_plain(v) for v in values] for name, values in parameters(rows).items()}
    params[PROBLEM_SIZE] = _problem_sizes(rows, size)
    out = []
    for i in range(size):
        config: dict[str, Any] = {name: values[i] for name, values in plain.items() if values[i] is not None}
        config["params"] = {name: values[i] for name, values in params.items() if values[i] is not None}
        out.append(config)
    return out


def _problem_sizes(rows: Any, size: int) -> list[Any]:
    """Each row's ``problem_size`` from ``params_json`` (None where absent)."""
    texts = list(rows["params_json"]) if "params_json" in rows else [None] * size
    cache: dict[Any, Any] = {}
    for text in texts:
        if text not in cache:
            try:
                value = json.loads(text).get(PROBLEM_SIZE) if isinstance(text, str) else None
            except (ValueError, AttributeError):
                value = None
            cache[text] = value
    return [cache[text] for text in texts]


def observed_spaces(rows: Any) -> dict[str, dict[str, Any]]:
    """Per kernel family, its distinct configurations in the stored form; families without
    any tunable parameter or tile, or with more than ``MAX_STORED_CONFIGURATIONS``, are
    left out. ``rows``: a DataFrame or a mapping of columns."""
    if "kernel" not in rows or len(rows["kernel"]) == 0:
        return {}
    # one row of each distinct combination of the columns a configuration is made of, first
    columns = as_columns(rows)
    keys = [c for c in ("kernel", "implementation", *TILE_COLUMNS, *WORK_COLUMNS, "params_json") if c in columns]
    keys += [c for c in columns if c.startswith(PARAM_PREFIX)]
    first = np.unique(group_codes(columns, keys), return_index=True)[1]
    rows = take(columns, np.sort(first))
    kernels = [str(k) for k in rows["kernel"]]
    by_kernel: dict[str, dict[str, dict[str, Any]]] = {}
    for kernel, config in zip(kernels, row_configurations(rows), strict=True):
        by_kernel.setdefault(kernel, {}).setdefault(json.dumps(config, sort_keys=True), config)
    out: dict[str, dict[str, Any]] = {}
    for kernel, distinct in sorted(by_kernel.items()):
        configs = list(distinct.values())
        if len(configs) > MAX_STORED_CONFIGURATIONS or not any(
                any(c in config for c in TILE_COLUMNS) or any(map(_tunable, config["params"])) for config in configs):
            continue
        plain = list(dict.fromkeys(name for config in configs for name in config if name != "params"))
        names = sorted({name for config in configs for name in config["params"]})
        out[kernel] = {"columns": plain + [PARAM_COLUMN + n for n in names],
                       "rows": [[config.get(c) for c in plain] + [config["params"].get(n) for n in names]
                                for config in configs]}
    return out


def space_configurations(space: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A stored space as configurations: ``{"implementation", tile and work columns..., "params": {...}}``."""
    columns = list(space["columns"])
    out = []
    for row in space["rows"]:
        config: dict[str, Any] = {"params": {}}
        for name, value in zip(columns, row, strict=True):
            if value is None:
                continue
            if name.startswith(PARAM_COLUMN):
                config["params"][name[len(PARAM_COLUMN):]] = value
            else:
                config[name] = value
        out.append(config)
    return out


def tunable_items(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What identifies a configuration within a problem: implementation, tiles and tunable
    parameters (launch geometry, problem size and work left out), as sorted hashable pairs
    (lists become tuples)."""
    items = [(name, _hashable(config[name])) for name in ("implementation", *TILE_COLUMNS)
             if config.get(name) is not None]
    items += [(name, _hashable(value)) for name, value in config.get("params", {}).items()
              if _tunable(name) and value is not None]
    return tuple(sorted(items))


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _tunable(name: str) -> bool:
    return not name.startswith(LAUNCH_PREFIX) and name != PROBLEM_SIZE


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN and pandas' missing values to None, whole floats to ints."""
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, (bool, int, str, list, dict)):
        return value
    try:  # pandas' NA and NaT
        return None if value != value or str(value) in ("<NA>", "NaT") else str(value)
    except (TypeError, ValueError):
        return None
