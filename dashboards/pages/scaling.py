"""Scaling laws: time vs problem size or batch per group, fitted t0 + c·x^b."""

from __future__ import annotations

from typing import Any

import numpy as np
from dash import Input, Output, dcc, html

from perfscope.dashboards.components import cached, control, data_table, figure_id, figure_panel, guard, notes_list
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.data import param_columns
from perfscope.dashboards.figures.scaling import DEFAULT_GROUP_BY, X_CHOICES, scaling_view
from perfscope.dashboards.url_state import from_query, register_url_state

KEY = "scaling"
PATH = "/scaling"
NAME = "Scaling laws"
ORDER = 3
PARAMS = "params"
GROUP_CHOICES = {"device_key": "device", "kernel": "kernel family", "implementation": "implementation",
                 "dtype": "dtype", "cache_mode": "cache mode", "tile": "tile", "batch_size": "batch",
                 "m": "m", "n": "n", "k": "k", PARAMS: "tunable parameters (param_*)"}
# tile and parameters are grouped by default: fitting tiles 1-32 as one law mixes different kernels
PAGE_DEFAULT_GROUP_BY = (*DEFAULT_GROUP_BY, "tile", PARAMS)
# the sizes an x axis must not pool: x = m over rows of different n and k is not one law
OTHER_SIZES = {"m": ("batch_size", "n", "k"), "n": ("batch_size", "m", "k"), "k": ("batch_size", "m", "n"),
               "batch_size": ("m", "n", "k", "conv_c", "conv_h", "conv_w", "conv_k", "seq_q", "seq_k", "heads",
                              "head_dim"),
               "seq_q": ("batch_size", "heads", "head_dim", "seq_k"), "seq_k": ("batch_size", "heads", "head_dim",
                                                                               "seq_q")}


URL_CONTROLS = {"x": ("scaling-x", "value"), "group": ("scaling-group", "value")}
URL_DEFAULTS = {"x": "flops", "group": list(PAGE_DEFAULT_GROUP_BY)}


def layout(**query: Any) -> html.Div:
    """The scaling-laws page."""
    return html.Div([
        html.H2("Scaling laws"),
        html.P("Median time per size within each group, fitted with time = t0 + c x^b in log space "
               "(perfscope.scaling). The band is a 95% prediction band, carried past the largest measured size; "
               "residuals below show steps (tile and wave quantisation, cache edges) the smooth law misses."),
        html.Div([
            control("x", dcc.Dropdown(id="scaling-x", options=[{"label": v, "value": k} for k, v in X_CHOICES.items()],
                                      value=from_query(query, "x", "flops", choices=list(X_CHOICES)),
                                      clearable=False), width="220px"),
            control("Group by", dcc.Dropdown(id="scaling-group",
                                             options=[{"label": v, "value": k} for k, v in GROUP_CHOICES.items()],
                                             value=from_query(query, "group", list(PAGE_DEFAULT_GROUP_BY), kind=list,
                                                              choices=list(GROUP_CHOICES)),
                                             multi=True), width="520px"),
        ], className="controls"),
        figure_panel("scaling", height=640),
        html.H3("Fitted parameters (± one standard error)"),
        html.Div(id="scaling-table"),
    ])


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the scaling callbacks to ``app``."""
    data = context.data
    params = param_columns(data.rows)

    @app.callback(Output(figure_id("scaling"), "figure"), Output("scaling-table", "children"),
                  Input("filters", "data"), Input("scaling-x", "value"), Input("scaling-group", "value"))
    @guard("figure", "children")
    @cached(data, "update_scaling")
    def update_scaling(filters: dict | None, x: str | None, group_by: list[str] | None) -> tuple:
        x = x if x in X_CHOICES else "flops"
        wanted = [g for g in (group_by or []) if g in GROUP_CHOICES and g != x]
        group_by = [c for g in wanted for c in (params if g == PARAMS else [g])]
        others = [c for c in OTHER_SIZES.get(x, ()) if c in data.rows]
        rows = data.select(filters, (x, "time_s", *group_by, *others))
        rows, note = fix_other_sizes(rows, x, others)
        figure, table = scaling_view(rows, x, group_by)
        return figure, html.Div([notes_list([note], kind="warning"), data_table(table, empty="no fits")])

    url_state = register_url_state(app, KEY, URL_CONTROLS, defaults=URL_DEFAULTS)
    return {"update_scaling": update_scaling, "url_state_scaling": url_state}


def fix_other_sizes(rows: Any, x: str, others: list[str]) -> tuple[Any, str]:
    """Rows at the most common combination of the sizes ``x`` would otherwise pool, and a
    note saying so (empty when those sizes do not vary)."""
    varying = [c for c in others if rows[c].nunique(dropna=True) > 1]
    if not varying or rows.empty:
        return rows, ""
    key = rows[varying].astype(float).fillna(-1.0)
    top = key.value_counts().index[0]
    values = top if isinstance(top, tuple) else (top,)
    mask = np.ones(len(rows), dtype=bool)
    for column, value in zip(varying, values, strict=True):
        mask &= key[column].to_numpy() == value
    fixed = ", ".join(f"{c} = {v:g}" for c, v in zip(varying, values, strict=True))
    return rows[mask], (f"x = {x} would pool rows of different {', '.join(varying)} into one law: fixed at the "
                        f"most common {fixed} ({int(mask.sum()):,} of {len(rows):,} rows; use the filters to "
                        "choose others)")
