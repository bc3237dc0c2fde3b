"""Estimates for configurations that were never measured: latency with an interval,
energy, power, carbon, the roofline bound, and the best tile.

With a trained model bundle (``perfscope train``) the forest predicts latency (and
energy, when it learnt it) with its conformal interval. Without one, the roofline
fallback says so: the bound comes from the calibrated profile when the device has one
(``perfscope calibrate``) and from the spec sheet otherwise, and latency is the bound
over an *assumed* efficiency. Every result names its method and device source.

Light path: numpy only. The estimates are computed on columns
(``perfscope.workflows.estimate_columns``); ``estimate`` (one configuration) never builds
a DataFrame; ``estimate_many`` frames the columns at the end. pandas, scikit-learn,
torch, triton and dash are not imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from perfscope.dtypes import check_fp32_math
from perfscope.errors import InvalidInputError
from perfscope.workflows.best_config import NEEDS_A_MODEL, best_config, legacy_best_tile
from perfscope.workflows.estimate_columns import (
    CPU_TILE_CANDIDATES,
    DEFAULT_REGION,
    GPU_TILE_CANDIDATES,
    SHAPE_COLUMNS,
    config_columns,
    estimate_columns,
    has_sizes,
    loaded_bundle,
)


def estimate_many(kernel: str, configs: list[Mapping[str, Any]] | Any, device: str, *, dtype: str | None = None,
                  model: Any = None, region: str = DEFAULT_REGION, intensity_gco2e_per_kwh: float | None = None,
                  pue: float = 1.0, fp32_math: str | None = None) -> Any:
    """Vectorised estimates: one output row per configuration (a pandas DataFrame).

    ``configs``: a list of dicts, a mapping of column -> values, or a DataFrame;
    ``model`` a bundle path or a loaded bundle; ``fp32_math`` (``ieee`` or ``tf32``) how fp32
    is multiplied: ``tf32`` bounds fp32 rows by the device's TF32 tensor peak (the output's
    ``peak_used`` and ``peak_flops_per_s`` say which peak each row used); ``device`` a device id, name or
    dataset device key (``h100-sxm``, ``NVIDIA H100 80GB HBM3``, ``cpu-amd-epyc``).
    The estimates are computed on numpy arrays (``estimate_columns``); pandas only frames them.
    """
    import pandas as pd  # only here: estimate and the columns stay pandas-free

    out = estimate_columns(kernel, configs, device, dtype=dtype, model=model, region=region,
                           intensity_gco2e_per_kwh=intensity_gco2e_per_kwh, pue=pue, fp32_math=fp32_math)

    return pd.DataFrame({name: _frame_column(pd, values) for name, values in out.items()})


def _frame_column(pd: Any, values: Any) -> Any:
    """A column for the output frame. Text columns with a few distinct values (method,
    device, carbon source...) become categoricals: turning 100,000 copies of a long source
    string into pandas' Arrow strings costs ~0.2 s per column, the codes almost nothing."""
    if not isinstance(values, np.ndarray) or values.dtype.kind != "O" or len(values) < 1024:
        return values
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) > 64 or not all(isinstance(u, str) for u in uniques):
        return values
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype=object))


def estimate(kernel: str, device: str, dtype: str = "fp32", *, model: Any = None, best_tile: bool = False,
             region: str = DEFAULT_REGION, intensity_gco2e_per_kwh: float | None = None, pue: float = 1.0,
             implementation: str | None = None, fp32_math: str | None = None, **shape: Any) -> dict[str, Any]:
    """One estimate as a dict (see ``estimate_many``; no pandas); ``best_tile`` adds the
    predicted best tile among ``GPU_TILE_CANDIDATES`` (or ``CPU_TILE_CANDIDATES`` on a
    CPU) and its gain over the given (or default) configuration."""
    for name, value in shape.items():  # numpy would turn 2**63 into a float and estimate NaN
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise InvalidInputError(f"{name} = {value} does not fit a 64-bit integer")
    config = dict(shape)
    if implementation is not None:
        config["implementation"] = implementation
    if model is not None and best_tile:
        model = loaded_bundle(model)  # loaded once for both
    if fp32_math is not None:  # a column of the configuration, so the best-tile search keeps it
        config["fp32_math"] = check_fp32_math(fp32_math)
    out = estimate_columns(kernel, [config], device, dtype=dtype, model=model, region=region,
                           intensity_gco2e_per_kwh=intensity_gco2e_per_kwh, pue=pue)
    result = {name: _plain(values[0]) for name, values in out.items()}
    if best_tile:
        result["best_tile"] = _best_tile(kernel, device, dtype, config, model, result["latency_s"])
    return result


def estimate_with_best_config(kernel: str, device: str, dtype: str = "fp32", *, model: Any,
                              shape: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                              implementation: str | None = None, estimate_options: Mapping[str, Any] | None = None,
                              rank_when_incomplete: bool = False, **search: Any) -> dict[str, Any]:
    """``perfscope estimate --best-config``: the estimate of the given configuration (families
    with sizes: gemm, conv, attention, when sizes are given; others have none) with ``best_config``'s answer under
    ``"best_config"``, and, when the best is a tile, the ``"best_tile"``
    entry ``--best-tile`` has always given. ``search``: ``best_config``'s ``space``,
    ``data``, ``problem_size`` and ``tile_grid``; ``estimate_options``: ``estimate``'s
    ``region``, ``intensity_gco2e_per_kwh``, ``pue`` and ``fp32_math``.

    A given configuration that leaves a varied parameter unset is refused, unless
    ``rank_when_incomplete`` (the dashboard, whose fields may name part of one): then the
    space is ranked without comparing to it and ``"given_note"`` says so."""
    if model is None:
        raise InvalidInputError(NEEDS_A_MODEL, parameter="model")
    bundle = loaded_bundle(model)
    options = {"implementation": implementation, "fp32_math": (estimate_options or {}).get("fp32_math"), **search}
    note = None
    try:
        found = best_config(kernel, device, dtype, model=bundle, shape=shape, params=params, **options)
    except InvalidInputError as exc:
        if not rank_when_incomplete or exc.parameter != "params":
            raise
        sizes = {k: v for k, v in (shape or {}).items() if not k.startswith("tile_")}
        found = best_config(kernel, device, dtype, model=bundle, shape=sizes, **options)
        note = (f"the configuration given is incomplete ({str(exc).removeprefix('--params ')}): the best "
                "configuration is not compared with it")
    if not has_sizes(kernel, shape or {}):  # an imported family, or an import without sizes: no roofline
        return {"kernel": kernel, "dtype": dtype, "device": device, "best_config": found,
                **({"given_note": note} if note else {})}
    given = {**dict(shape or {}), **{f"param_{k}": v for k, v in (params or {}).items()}}
    result = estimate(kernel, device, dtype, model=bundle, implementation=implementation,
                      **dict(estimate_options or {}), **given)
    legacy = legacy_best_tile(found, result["latency_s"]) if note is None else None
    if legacy is not None:  # the best is a tile: what --best-tile has always printed too
        result["best_tile"] = legacy
    result["best_config"] = found
    if note:
        result["given_note"] = note
    return result


def _best_tile(kernel: str, device: str, dtype: str, config: dict[str, Any], model: Any,
               default_latency_s: float) -> dict[str, Any]:
    """The best tile of the tile grid (``perfscope.workflows.best_config``), as ``best_tile`` gives it."""
    if kernel != "gemm":
        raise InvalidInputError("the best-tile search is available for gemm", parameter="best_tile")
    shape = {k: v for k, v in config.items() if k != "implementation"}
    found = best_config(kernel, device, dtype, model=model, shape=shape, implementation=config.get("implementation"),
                        tile_grid=True)
    legacy = legacy_best_tile(found, default_latency_s)
    if legacy is None:  # the grid holds tiles only
        raise InvalidInputError(f"no tile has a latency estimate on {device} for {dtype}")
    return legacy


def _plain(value: Any) -> Any:
    """numpy scalars to Python (for JSON)."""
    if hasattr(value, "item"):
        return value.item()
    return value


__all__ = ["CPU_TILE_CANDIDATES", "GPU_TILE_CANDIDATES", "SHAPE_COLUMNS", "config_columns", "estimate",
           "estimate_columns", "estimate_many", "estimate_with_best_config"]
