"""Time vs energy: each configuration's median time against its energy per call, with the
Pareto front (no configuration on it is beaten on both), by dtype and power limit."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, dcc, html

from perfscope.dashboards.components import cached, control, data_table, figure_id, figure_panel, guard
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.figures.pareto import pareto_figure
from perfscope.dashboards.url_state import from_query, register_url_state

KEY = "energy"
PATH = "/energy"
NAME = "Time vs energy"
ORDER = 5
ENERGY_KINDS = [{"label": "gross (with idle power)", "value": "gross"}, {"label": "net of idle", "value": "net"}]
_COLUMNS = ("device_key", "config_id", "kernel", "implementation", "dtype", "tile", "shape", "time_s",
            "energy_gross_j", "energy_net_j", "energy_is_estimate", "energy_quality", "power_limit_w")


URL_CONTROLS = {"energy": ("energy-kind", "value")}
URL_DEFAULTS = {"energy": "gross"}


def layout(**query: Any) -> html.Div:
    """The time-energy page; the energy kind starts from the URL."""
    return html.Div([
        html.H2("Time vs energy"),
        html.P("One point per configuration (the medians of its rows). The Pareto front joins the configurations "
               "that no other one beats on both time and energy: the choices worth making. Hollow points: energy "
               "estimated from TDP x time or read after the run (doubtful), not measured during it."),
        html.Div([control("Energy", dcc.RadioItems(id="energy-kind", options=ENERGY_KINDS, inline=True,
                                                   value=from_query(query, "energy", "gross",
                                                                    choices=("gross", "net"))), width="360px")],
                 className="controls"),
        figure_panel("pareto", height=560),
        html.H3("On the Pareto front"),
        html.Div(id="pareto-table"),
    ])


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the time-energy callbacks to ``app``."""
    data = context.data

    @app.callback(Output(figure_id("pareto"), "figure"), Output("pareto-table", "children"),
                  Input("filters", "data"), Input("energy-kind", "value"))
    @guard("figure", "children")
    @cached(data, "update_pareto")
    def update_pareto(filters: dict | None, energy: str | None) -> tuple:
        figure, table = pareto_figure(data.select(filters, _COLUMNS), energy or "gross")
        return figure, data_table(table, empty="no configuration with both a time and an energy")

    url_state = register_url_state(app, KEY, URL_CONTROLS, defaults=URL_DEFAULTS)
    return {"update_pareto": update_pareto, "url_state_energy": url_state}
