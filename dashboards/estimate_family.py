"""The Estimate page's parts for imported kernel families (Kernel Tuner caches, ...): which
families there are, their problem-size and tunable-parameter fields, and the answer as
a table. A family without GEMM/conv/attention sizes is estimated by the model's
parameter forest (``perfscope.workflows.estimate_params``).

The tunable parameters travel as one ``name=value`` text (the page's ``params`` URL key);
the per-parameter dropdowns are built from it and write it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from dash import dcc

from perfscope.dashboards.components import control
from perfscope.dashboards.units import duration, interval, quantity
from perfscope.errors import InvalidInputError
from perfscope.workflows.config_space import parse_params

BUILT_IN_FAMILIES = ("gemm", "conv", "attention")
PARAM_FIELD = "estimate-param"  # the pattern-matched id type of a parameter dropdown


def imported_families(rows: pd.DataFrame, model: Any) -> list[str]:
    """Kernel families other than the built-in ones: those the model kept a parameter space
    for, then those of the dataset."""
    spaces = getattr(model, "metadata", {}).get("parameter_spaces") or {} if model is not None else {}
    families = [str(k) for k in spaces]
    if len(rows) and "kernel" in rows:
        kernels = rows["kernel"]
        seen = kernels.cat.categories if isinstance(kernels.dtype, pd.CategoricalDtype) else kernels.dropna().unique()
        families += sorted(str(k) for k in seen)
    return [k for k in dict.fromkeys(families) if k not in BUILT_IN_FAMILIES]


def params_text(values: Mapping[str, Any]) -> str:
    """{"block_size_x": 32} -> "block_size_x=32" (the URL's and the text field's form)."""
    return " ".join(f"{name}={value}" for name, value in values.items() if value is not None and value != "")


def merged_params_text(ids: Sequence[Mapping[str, Any]], values: Sequence[Any], text: str | None,
                       known: Sequence[str]) -> str:
    """The text after a dropdown changed: the dropdowns' values, then the text's other
    entries that are parameters of this family (``known``); a stale entry of another family
    is dropped."""
    chosen = {str(i["name"]): v for i, v in zip(ids, values, strict=True)}
    try:
        typed = parse_params(text or "")
    except InvalidInputError:
        typed = {}
    rest = {k: v for k, v in typed.items() if k not in chosen and k in known}
    return params_text({**chosen, **rest})


def parameter_fields(space: Mapping[str, Any], text: str | None) -> list[Any]:
    """One dropdown per varied tunable parameter of the family, holding the text's value
    where it names one of the parameter's values, else the first observed configuration's."""
    try:
        given = parse_params(text or "")
    except InvalidInputError:
        given = {}
    fields = []
    for name, values in space["parameters"].items():
        value = given.get(name, space["defaults"].get(name))
        if value not in values:
            value = space["defaults"].get(name)
        fields.append(control(name, dcc.Dropdown(id={"type": PARAM_FIELD, "name": name},
                                                 options=[{"label": str(v), "value": v} for v in values],
                                                 value=value, clearable=False), width="150px"))
    return fields


def problem_size_text(size: Sequence[Any] | None) -> str:
    """[25000, 2048, 1] -> "25000,2048,1" (the URL's form)."""
    return ",".join(str(v) for v in size) if size else ""


def read_problem_size(text: str | None) -> list[int] | None:
    """"25000,2048,1" -> [25000, 2048, 1]; None when empty (``InvalidInputError`` if not integers)."""
    if not text:
        return None
    try:
        return [int(part) for part in str(text).replace("x", ",").split(",") if part.strip()]
    except ValueError:
        raise InvalidInputError(f"problem size {text!r}: write integers separated by commas") from None


def family_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """An imported family's estimate as (quantity, value) rows, every number with its unit."""
    config = " ".join(f"{k}={v}" for k, v in (result.get("config") or {}).items() if k != "implementation")
    level = result.get("interval_level")
    rows = [
        ("configuration", config + ("" if result.get("observed") else
                                    " (not in the trained space: predicted without its launch geometry)")),
        ("problem size", "x".join(str(v) for v in result.get("problem_size") or []) or "n/a"),
        ("latency", duration(result.get("latency_s"))),
        ("interval" + (f" ({level:.0%})" if isinstance(level, float) else ""),
         interval(result.get("latency_low_s"), result.get("latency_high_s"), "s")),
        ("energy per call", f"{quantity(result.get('energy_j'), 'J')} ({result.get('energy_method', '?')})"),
        ("power", quantity(result.get("power_w"), "W")),
        ("carbon per call", f"{quantity(result.get('carbon_gco2e'), 'gCO2e')} at "
                            f"{result.get('carbon_intensity_gco2e_per_kwh', float('nan')):g} gCO2e/kWh, "
                            f"PUE {result.get('pue', 1.0):g} ({result.get('carbon_intensity_source', '?')})"),
        ("device", f"{result.get('device', '?')} (model key {result.get('device_key', '?')}; "
                   f"{result.get('device_source', '?')})"),
        ("roofline bound", "n/a: the import gave no FLOPs or bytes for this family"),
        ("method", str(result.get("method", "?"))),
    ]
    found = result.get("best_config")
    if isinstance(found, dict):
        rows.append(best_config_row(found))
    return pd.DataFrame(rows, columns=["quantity", "value"])


def best_config_row(found: Mapping[str, Any]) -> tuple[str, str]:
    """``best_config``'s answer as one (quantity, value) row."""
    best = found["best"]
    shown = " ".join(f"{k}={v}" for k, v in best["config"].items())
    gain = (f"x{found['gain_over_given']:.3g} over the configuration given" if found.get("gain_over_given")
            else f"x{found['gain_over_median']:.3g} over the median configuration")
    return ("best configuration", f"{shown}: {duration(best['latency_s'])} "
            f"({interval(best['latency_low_s'], best['latency_high_s'], 's')}), {gain}; "
            f"{found['space']['n_candidates']} configurations ({found['space']['source']} space) "
            f"ranked by {found['model']}")


def known_parameter_names(space: Mapping[str, Any]) -> list[str]:
    """The family's parameter names the text may carry (the fields')."""
    return list(space.get("parameters", {}))

