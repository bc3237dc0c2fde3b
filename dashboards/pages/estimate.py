"""Estimate: a configuration in, perfscope's estimate out (interval, bound, energy, carbon)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from dash import Input, Output, State, dcc, html

from perfscope.carbon import grid_intensity, load_intensity_table, operational_gco2e
from perfscope.dashboards.adapters import ESTIMATE_MISSING, SHAPE_EXAMPLES, estimate_function, parse_shape, run_estimate
from perfscope.dashboards.components import control, data_table, figure_id, figure_panel, guard, notes_list
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.figures.common import message_figure
from perfscope.dashboards.figures.estimate import estimate_figure, normalise_estimate
from perfscope.dtypes import DTYPES

KEY = "estimate"
PATH = "/estimate"
NAME = "Estimate"
ORDER = 6


def layout(**_query: Any) -> html.Div:
    """The estimate page."""
    from perfscope.devicespecs import load_device_specs

    devices = sorted(load_device_specs())
    regions = [{"label": r.label, "value": r.region} for r in load_intensity_table()]
    return html.Div([
        html.H2("Estimate"),
        html.P("Latency with its interval, the roofline bound, energy and carbon for a configuration, from "
               "perfscope.workflows.estimate (the models trained with perfscope train)."),
        html.Div([
            control("Kernel", dcc.RadioItems(id="estimate-kernel", options=["gemm", "conv", "attention"],
                                             value="gemm", inline=True), width="240px"),
            control("Device", dcc.Dropdown(id="estimate-device", options=devices + ["cpu"],
                                           value="h100-sxm" if "h100-sxm" in devices else None), width="220px"),
            control("Dtype", dcc.Dropdown(id="estimate-dtype", options=list(DTYPES), value="bf16",
                                          clearable=False), width="140px"),
        ], className="controls"),
        control("Shape (key=value)", dcc.Input(id="estimate-shape", type="text", value=SHAPE_EXAMPLES["gemm"],
                                               style={"width": "100%"}, debounce=True), width="100%"),
        html.Div([
            control("Grid intensity", dcc.Dropdown(id="estimate-region", options=regions, value="World",
                                                   clearable=False), width="340px"),
            control("PUE", dcc.Input(id="estimate-pue", type="number", min=1, step=0.01, value=1.0), width="90px"),
            html.Button("Estimate", id="estimate-run", n_clicks=0, className="primary"),
        ], className="controls"),
        html.Div(id="estimate-status"),
        figure_panel("estimate", height=280),
        html.Div(id="estimate-details"),
    ])


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the estimate callbacks to ``app``."""

    @app.callback(Output("estimate-shape", "placeholder"), Input("estimate-kernel", "value"))
    def update_estimate_placeholder(kernel: str | None) -> str:
        return SHAPE_EXAMPLES.get(kernel or "gemm", "")

    @app.callback(Output(figure_id("estimate"), "figure"), Output("estimate-status", "children"),
                  Output("estimate-details", "children"),
                  Input("estimate-run", "n_clicks"),
                  State("estimate-kernel", "value"), State("estimate-device", "value"),
                  State("estimate-dtype", "value"), State("estimate-shape", "value"),
                  State("estimate-region", "value"), State("estimate-pue", "value"))
    @guard("figure", "children", "children")
    def update_estimate(n_clicks: int | None, kernel: str | None, device: str | None, dtype: str | None,
                        shape_text: str | None, region: str | None, pue: float | None) -> tuple:
        if estimate_function() is None:
            return (message_figure(ESTIMATE_MISSING, "Estimate"),
                    notes_list([ESTIMATE_MISSING], kind="warning"), html.Div())
        if not n_clicks:
            return estimate_figure(None), notes_list(["fill the form and press Estimate"]), html.Div()
        if not device:
            return message_figure("Estimate: pick a device"), notes_list(["pick a device"], kind="warning"), html.Div()
        shape = parse_shape(kernel or "gemm", shape_text)
        outcome = run_estimate(kernel or "gemm", device, dtype or "fp32", shape)
        if not outcome.ok:
            return message_figure(f"Estimate: {outcome.message}"), notes_list([outcome.message], kind="warning"), \
                html.Div()
        result = outcome.result or {}
        values = normalise_estimate(result)
        notes = []
        if math.isfinite(values["energy_j"]):
            row = grid_intensity(region or "World")
            pue_value = float(pue) if pue is not None else 1.0
            per_million = operational_gco2e(values["energy_j"] * 1e6, row.intensity_gco2e_per_kwh, pue_value)
            notes.append(f"{per_million:.4g} gCO2e per million calls ({row.region} {row.year}, "
                         f"{row.intensity_gco2e_per_kwh:g} gCO2e/kWh, PUE {pue_value:g}; source: {row.source})")
        else:
            notes.append("no energy in the estimate: no carbon figure")
        table = pd.DataFrame({"key": list(result), "value": [str(v) for v in result.values()]})
        return estimate_figure(result), notes_list(notes), data_table(table)

    return {"update_estimate": update_estimate, "update_estimate_placeholder": update_estimate_placeholder}
