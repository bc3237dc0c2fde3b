"""Scaling laws: time vs problem size or batch per group, fitted t0 + c·x^b."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, dcc, html

from perfscope.dashboards.components import cached, control, data_table, figure_id, figure_panel, guard
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.figures.scaling import DEFAULT_GROUP_BY, X_CHOICES, scaling_view

KEY = "scaling"
PATH = "/scaling"
NAME = "Scaling laws"
ORDER = 3
GROUP_CHOICES = {"device_key": "device", "kernel": "kernel family", "implementation": "implementation",
                 "dtype": "dtype", "cache_mode": "cache mode", "tile": "tile", "batch_size": "batch",
                 "m": "m", "n": "n", "k": "k"}


def layout(**_query: Any) -> html.Div:
    """The scaling-laws page."""
    return html.Div([
        html.H2("Scaling laws"),
        html.P("Median time per size within each group, fitted with time = t0 + c x^b in log space "
               "(perfscope.scaling). The band is a 95% prediction band, carried past the largest measured size; "
               "residuals below show steps (tile and wave quantisation, cache edges) the smooth law misses."),
        html.Div([
            control("x", dcc.Dropdown(id="scaling-x", options=[{"label": v, "value": k} for k, v in X_CHOICES.items()],
                                      value="flops", clearable=False), width="220px"),
            control("Group by", dcc.Dropdown(id="scaling-group",
                                             options=[{"label": v, "value": k} for k, v in GROUP_CHOICES.items()],
                                             value=list(DEFAULT_GROUP_BY), multi=True), width="480px"),
        ], className="controls"),
        figure_panel("scaling", height=640),
        html.H3("Fitted parameters (± one standard error)"),
        html.Div(id="scaling-table"),
    ])


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the scaling callbacks to ``app``."""
    data = context.data

    @app.callback(Output(figure_id("scaling"), "figure"), Output("scaling-table", "children"),
                  Input("filters", "data"), Input("scaling-x", "value"), Input("scaling-group", "value"))
    @guard("figure", "children")
    @cached(data, "update_scaling")
    def update_scaling(filters: dict | None, x: str | None, group_by: list[str] | None) -> tuple:
        x = x if x in X_CHOICES else "flops"
        group_by = [g for g in (group_by or []) if g in GROUP_CHOICES and g != x]
        rows = data.select(filters, (x, "time_s", *group_by))
        figure, table = scaling_view(rows, x, group_by)
        return figure, data_table(table, empty="no fits")

    return {"update_scaling": update_scaling}
