"""Parameter spaces for ``perfscope estimate --best-config``: the declared space's syntax,
and the candidate configurations for one problem (declared, observed or the GEMM tile grid).

A configuration is a dict: ``implementation``, tile columns, ``flops``/``min_bytes``
where known, and ``params`` (tunable parameters, the launch geometry and
``problem_size``), as ``perfscope.models.param_space`` stores them; ``"unobserved":
True`` marks a declared one never seen (no launch geometry recorded for it).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from perfscope.errors import InvalidInputError
from perfscope.models.param_space import PROBLEM_SIZE, tunable_items
from perfscope.workflows.estimate_columns import CPU_TILE_CANDIDATES, GPU_TILE_CANDIDATES

MAX_CANDIDATES = 1_000_000
TILE_NAMES = ("tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_SPACE_EXAMPLE = "'block_size_x=16,32,64;block_size_y=1,2,4,8'"


# ---- parsing ------------------------------------------------------------------------------

def parse_space(text: str) -> dict[str, list[Any]]:
    """``'a=1,2,4;b=x,y'`` -> ``{"a": [1, 2, 4], "b": ["x", "y"]}`` (``InvalidInputError`` otherwise)."""
    space: dict[str, list[Any]] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        name, sep, values = part.partition("=")
        name = name.strip().removeprefix("param_")
        items = [v.strip() for v in values.split(",")]
        if not sep or not _NAME.fullmatch(name) or not all(items):
            raise InvalidInputError(f"--space: {part.strip()!r} is not name=value,value,...: write for example "
                                    f"{_SPACE_EXAMPLE}", parameter="space")
        if name in space:
            raise InvalidInputError(f"--space names {name} twice", parameter="space")
        space[name] = list(dict.fromkeys(_value(v) for v in items))
    if not space:
        raise InvalidInputError(f"--space is empty: write for example {_SPACE_EXAMPLE}", parameter="space")
    return space


def parse_params(text: str) -> dict[str, Any]:
    """``'block_size_x=32,block_size_y=8'`` (commas, semicolons or spaces) -> a dict of values."""
    out: dict[str, Any] = {}
    for part in re.split(r"[,;\s]+", text or ""):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().removeprefix("param_")
        if not sep or not _NAME.fullmatch(name) or not value.strip():
            raise InvalidInputError(f"--params: {part!r} is not name=value: write for example "
                                    "'block_size_x=32,block_size_y=8'", parameter="params")
        out[name] = _value(value.strip())
    return out


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def family_rows(data: Any, kernel: str) -> Any:
    """The rows of ``data`` (a DataFrame) of one kernel family (``InvalidInputError`` when none)."""
    rows = data[data["kernel"].astype(str) == kernel]
    if len(rows) == 0:
        families = ", ".join(sorted(set(map(str, data["kernel"])))) or "none"
        raise InvalidInputError(f"--data has no {kernel} rows (it has {families})", parameter="data")
    return rows.reset_index(drop=True)


def problem_of(observed: list[dict[str, Any]], problem_size: Sequence[int] | None) -> list[Any] | None:
    """The problem size to search: the one given (checked against the space), else the
    space's only one; None for a space without problem sizes."""
    sizes = list(dict.fromkeys(json.dumps(c["params"].get("problem_size")) for c in observed
                               if c["params"].get("problem_size") is not None))
    if problem_size is not None:
        wanted = [int(v) for v in problem_size]
        if sizes and json.dumps(wanted) not in sizes:
            raise InvalidInputError(f"problem size {wanted} is not in the space (it has {', '.join(sizes)})",
                                    parameter="problem_size")
        return wanted
    if len(sizes) > 1:
        raise InvalidInputError(f"the space holds several problem sizes ({', '.join(sizes)}): give --problem-size",
                                parameter="problem_size")
    return json.loads(sizes[0]) if sizes else None


def declared_configs(space: Mapping[str, Sequence[Any]], params: Mapping[str, Any], tiles: Mapping[str, Any],
              observed: list[dict[str, Any]], problem: list[Any] | None) -> list[dict[str, Any]]:
    """Every combination of a declared space, completed by ``params`` and ``tiles`` (the given
    configuration) and the observed space's constants; an observed configuration where the
    combination was seen (its launch geometry with it), else one marked ``unobserved``."""
    count = math.prod(len(v) for v in space.values())
    if count > MAX_CANDIDATES:
        raise InvalidInputError(f"--space has {count:,} combinations; at most {MAX_CANDIDATES:,} are searched",
                                parameter="space")
    known = {n for c in observed for n in c["params"]} | {n for c in observed for n in c if n in TILE_NAMES}
    if known:
        unknown = [n for n in space if n not in known]
        if unknown:
            raise InvalidInputError(f"--space names {', '.join(unknown)}, which the observed configurations do not "
                                    f"have (they have: {', '.join(sorted(n for n in known if '.' not in n))})",
                                    parameter="space")
    derived = derived_tiles(observed) - set(space) - set(tiles)
    by_key = {identity(c, derived): c for c in observed}
    names = list(space)
    out = []
    for values in itertools.product(*space.values()):
        config: dict[str, Any] = {"params": dict(params), **dict(tiles)}
        for name, value in zip(names, values, strict=True):
            if name in TILE_NAMES:
                config[name] = value
            else:
                config["params"][name] = value
        config = fill_constants(config, observed)
        seen = by_key.get(identity(config, derived))
        if seen is not None:
            out.append(seen)
            continue
        if problem is not None:
            config["params"]["problem_size"] = problem
        out.append({**config, "unobserved": True})
    missing = sorted(n for n in varied_names(observed)
                     if n not in space and n not in params and n not in tiles and n not in derived)
    if missing and any(c.get("unobserved") for c in out):
        raise InvalidInputError(f"--space leaves {', '.join(missing)} unset: give them in --space or --params",
                                parameter="space")
    return out


def derived_tiles(observed: list[dict[str, Any]]) -> frozenset[str]:
    """The tile columns the parameters decide over ``observed`` (an import that read the
    tiles off the parameters, e.g. Kernel Tuner's MWG/NWG/KWG): configurations with the same
    parameters have the same tile, so a configuration is named by its parameters alone."""
    if not observed or not all(c["params"] for c in observed):
        return frozenset()
    tiles_by_params: dict[Any, set[Any]] = {}
    for config in observed:
        key = identity(config, frozenset(TILE_NAMES))
        tiles_by_params.setdefault(key, set()).add(tuple(config.get(n) for n in TILE_NAMES))
    if any(len(tiles) > 1 for tiles in tiles_by_params.values()):
        return frozenset()
    return frozenset(n for n in TILE_NAMES if any(c.get(n) is not None for c in observed))


def identity(config: Mapping[str, Any], derived: frozenset[str] | set[str]) -> tuple[tuple[str, Any], ...]:
    """``tunable_items`` of ``config`` without the ``derived`` tile columns."""
    return tuple(item for item in tunable_items(config) if item[0] not in derived)


def fill_constants(config: dict[str, Any], observed: list[dict[str, Any]]) -> dict[str, Any]:
    """``config`` with what never varies over the observed space filled in where it has
    none: the implementation and the tunable parameters of one value."""
    implementations = {c.get("implementation") for c in observed}
    if config.get("implementation") is None and len(implementations) == 1 and None not in implementations:
        config["implementation"] = implementations.pop()
    values: dict[str, set[str]] = {}
    for seen in observed:
        for name, value in seen["params"].items():
            values.setdefault(name, set()).add(json.dumps(value))
    for name, v in values.items():
        if (len(v) == 1 and name not in config["params"] and not name.startswith("launch.") and name != PROBLEM_SIZE
                and all(name in c["params"] for c in observed)):
            config["params"][name] = json.loads(next(iter(v)))
    return config


def varied_names(configs: list[dict[str, Any]]) -> list[str]:
    """The tunable names (parameters and tiles) with more than one value over ``configs``."""
    values: dict[str, set[Any]] = {}
    for config in configs:
        for name, value in tunable_items(config):
            values.setdefault(name, set()).add(value)
    return sorted(name for name, v in values.items() if len(v) > 1)


def tile_grid_configs(device: str, implementation: str | None) -> list[dict[str, Any]]:
    """The Triton-style GEMM tiles (``GPU_TILE_CANDIDATES``; ``CPU_TILE_CANDIDATES`` on a CPU)."""
    on_cpu = device.lower().startswith("cpu")
    implementation = implementation or ("numba.tiled" if on_cpu else "triton.matmul")
    return [{"implementation": implementation, "tile_m": tm, "tile_n": tn, "tile_k": tk, "params": {}}
            for tm, tn, tk in (CPU_TILE_CANDIDATES if on_cpu else GPU_TILE_CANDIDATES)]


def distinct_configs(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``configs`` without repeats of one configuration (the first kept, order kept)."""
    return list({tunable_items(c): c for c in reversed(configs)}.values())[::-1]


def given_config(params: Mapping[str, Any], tiles: Mapping[str, Any], shape: Mapping[str, Any],
           observed: list[dict[str, Any]], problem: list[Any] | None, implementation: str | None,
           source: str) -> dict[str, Any] | None:
    """The given configuration (parameters and tiles), launch geometry from the observed
    space where it is there; for the tile grid, the configuration as estimated (tiles or not);
    None when none is given, or when the parameters only fix the rest of a declared space."""
    if not params and not tiles and source != "tiles":
        return None
    config: dict[str, Any] = {"params": dict(params), **dict(tiles)}
    if implementation:
        config["implementation"] = implementation
    config = fill_constants(config, observed)
    derived = derived_tiles(observed) - set(tiles)
    wanted = identity(config, derived)
    for seen in observed:
        if identity(seen, derived) == wanted:
            return seen
    missing = sorted(n for n in varied_names(observed)
                     if n not in params and n not in tiles and n != "implementation" and n not in derived)
    if missing and source == "declared":
        return None  # the parameters fix the rest of a declared space: no whole configuration given
    if missing and source != "tiles":
        raise InvalidInputError(f"--params leaves {', '.join(missing)} unset: give every varied parameter",
                                parameter="params")
    if problem is not None:
        config["params"]["problem_size"] = problem
    return {**config, "unobserved": True}


def shown(config: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a configuration, for people: implementation, tiles, tunable parameters."""
    return {name: list(value) if isinstance(value, tuple) else value for name, value in tunable_items(config)}
