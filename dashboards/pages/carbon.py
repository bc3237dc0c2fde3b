"""Carbon cost: energy per call -> kWh and gCO2e per call, per million calls or per workload."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, dcc, html

from perfscope.carbon import canonical_region, grid_intensity, load_intensity_table
from perfscope.dashboards.components import cached, control, data_table, figure_id, figure_panel, guard, notes_list
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.figures.carbon import (
    COMPARE_BY,
    carbon_figure,
    carbon_frame,
    carbon_summary,
    energy_per_config,
)
from perfscope.dashboards.filters import filters_key
from perfscope.dashboards.url_state import from_query, register_url_state
from perfscope.errors import InvalidInputError

KEY = "carbon"
PATH = "/carbon"
NAME = "Carbon cost"
ORDER = 4
CUSTOM = "__custom__"
DEFAULT_REGION = "World"
WORKLOADS = {"call": "per call", "million": "per 1M calls", "workload": "per workload"}
# URL key -> (component id, property): every control of the page
URL_CONTROLS = {"region": ("carbon-region", "value"), "intensity": ("carbon-intensity", "value"),
                "pue": ("carbon-pue", "value"), "energy": ("carbon-energy", "value"), "by": ("carbon-by", "value"),
                "workload": ("carbon-workload", "value"), "calls": ("carbon-calls-per-step", "value"),
                "steps": ("carbon-steps", "value"), "embodied": ("carbon-embodied-on", "value"),
                "embodied_kg": ("carbon-embodied-kg", "value"), "lifetime": ("carbon-lifetime", "value"),
                "utilisation": ("carbon-utilisation", "value")}
URL_DEFAULTS = {"region": DEFAULT_REGION, "pue": 1.0, "energy": "gross", "by": "dtype", "workload": "million",
                "calls": 100, "steps": 100_000, "lifetime": 4, "utilisation": 1.0}
_COLUMNS = ("device_key", "config_id", "kernel", "implementation", "dtype", "tile", "shape", "time_s",
            "energy_gross_j", "energy_net_j", "power_idle_w", "energy_is_estimate", "energy_quality")


def layout(**query: Any) -> html.Div:
    """The carbon page."""
    regions = [{"label": r.label, "value": r.region} for r in load_intensity_table()]
    regions.append({"label": "Custom intensity (type it)", "value": CUSTOM})
    return html.Div([
        html.H2("Carbon cost"),
        html.P("kWh = J / 3.6e6; gCO2e = kWh x PUE x grid intensity (+ the device's embodied carbon over the busy "
               "time, when asked). Energy per call is the median of a configuration's rows. Estimated energy "
               "(TDP x utilisation, no meter) is hatched and labelled."),
        html.Div([
            control("Grid intensity", dcc.Dropdown(id="carbon-region", options=regions,
                                                   value=region_from_query(query),
                                                   clearable=False), width="340px"),
            control("Custom gCO2e/kWh", dcc.Input(id="carbon-intensity", type="number", min=0,
                                                  value=from_query(query, "intensity", None, kind=float),
                                                  placeholder="e.g. 250"), width="150px"),
            control("PUE", dcc.Input(id="carbon-pue", type="number", min=1, step=0.01,
                                     value=from_query(query, "pue", 1.0, kind=float)), width="90px"),
            control("Energy", dcc.RadioItems(id="carbon-energy", options=[
                {"label": "gross", "value": "gross"}, {"label": "net of idle", "value": "net"}],
                value=from_query(query, "energy", "gross", choices=("gross", "net")),
                inline=True), width="200px"),
            control("Compare", dcc.Dropdown(id="carbon-by", options=[{"label": v, "value": k}
                                                                     for k, v in COMPARE_BY.items()],
                                            value=from_query(query, "by", "dtype", choices=list(COMPARE_BY)),
                                            clearable=False), width="170px"),
        ], className="controls"),
        html.Div([
            control("Amount", dcc.RadioItems(id="carbon-workload", options=[{"label": v, "value": k}
                                                                            for k, v in WORKLOADS.items()],
                                             value=from_query(query, "workload", "million", choices=list(WORKLOADS)),
                                             inline=True), width="360px"),
            control("Workload: calls per step", dcc.Input(id="carbon-calls-per-step", type="number", min=1,
                                                          value=from_query(query, "calls", 100, kind=float)),
                    width="190px"),
            control("steps", dcc.Input(id="carbon-steps", type="number", min=1,
                                       value=from_query(query, "steps", 100_000, kind=float)), width="130px"),
        ], className="controls"),
        html.Div([
            control("Embodied carbon", dcc.Checklist(id="carbon-embodied-on", options=[
                {"label": "include", "value": "on"}], value=from_query(query, "embodied", [], kind=list,
                                                                       choices=["on"])), width="150px"),
            control("device kgCO2e", dcc.Input(id="carbon-embodied-kg", type="number", min=0,
                                               value=from_query(query, "embodied_kg", None, kind=float),
                                               placeholder="manufacturer figure"), width="170px"),
            control("lifetime (years)", dcc.Input(id="carbon-lifetime", type="number", min=0.1,
                                                  value=from_query(query, "lifetime", 4, kind=float)),
                    width="140px"),
            control("utilisation", dcc.Input(id="carbon-utilisation", type="number", min=0.01, max=1, step=0.01,
                                             value=from_query(query, "utilisation", 1.0, kind=float)),
                    width="110px"),
        ], className="controls"),
        figure_panel("carbon"),
        html.Div(id="carbon-notes"),
        html.H3("By device and dtype (median configuration)"),
        html.Div(id="carbon-table"),
    ])


def net_energy_notes(attrs: dict[str, Any], energy: str) -> list[str]:
    """What the net-of-idle view drew from and what it left out, and why."""
    if energy != "net":
        return []
    notes = []
    derived = attrs.get("rows_net_derived", 0)
    if derived:
        notes.append(f"net of idle for {derived:,} rows derived as gross - idle power x time per call "
                     "(their idle power is known, no net was stored)")
    without = attrs.get("rows_without_energy", 0)
    if without and attrs.get("rows_with_gross_energy", 0):
        notes.append(f"{without:,} rows left out of the net view: their device's idle power is not known "
                     "(the meter did not measure idle before the run); the gross view includes them")
    return notes


def region_from_query(query: dict[str, Any]) -> str:
    """The region named in the URL as the table names it (aliases such as ``UK`` or an older
    table's ``EU-27`` resolve), the typed-intensity choice, or the default when unknown."""
    wanted = from_query(query, "region", DEFAULT_REGION)
    return CUSTOM if wanted == CUSTOM else canonical_region(wanted, DEFAULT_REGION)


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the carbon callbacks to ``app``."""
    data = context.data
    cache: dict[tuple, Any] = {}  # (filters, energy) -> energy per configuration (the slow part)

    def per_config(filters: dict | None, energy: str) -> Any:
        key = (filters_key(filters), energy)
        if key not in cache:
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[key] = energy_per_config(data.select(filters, _COLUMNS), energy)
        return cache[key]

    @app.callback(Output(figure_id("carbon"), "figure"), Output("carbon-notes", "children"),
                  Output("carbon-table", "children"),
                  Input("filters", "data"), Input("carbon-region", "value"), Input("carbon-intensity", "value"),
                  Input("carbon-pue", "value"), Input("carbon-energy", "value"), Input("carbon-by", "value"),
                  Input("carbon-workload", "value"), Input("carbon-calls-per-step", "value"),
                  Input("carbon-steps", "value"), Input("carbon-embodied-on", "value"),
                  Input("carbon-embodied-kg", "value"), Input("carbon-lifetime", "value"),
                  Input("carbon-utilisation", "value"))
    @guard("figure", "children", "children")
    @cached(data, "update_carbon")
    def update_carbon(filters: dict | None, region: str | None, custom_intensity: float | None, pue: float | None,
                      energy: str | None, by: str | None, workload: str | None, calls_per_step: float | None,
                      steps: float | None, embodied_on: list[str] | None, embodied_kg: float | None,
                      lifetime_years: float | None, utilisation: float | None) -> tuple:
        notes = []
        if region == CUSTOM:
            if custom_intensity is None:
                raise InvalidInputError("type a grid intensity in gCO2e/kWh, or pick a region")
            intensity = float(custom_intensity)
            notes.append(f"grid intensity {intensity:g} gCO2e/kWh (typed in)")
        else:
            row = grid_intensity(region or DEFAULT_REGION)
            intensity = row.intensity_gco2e_per_kwh
            notes.append(f"grid intensity {intensity:g} gCO2e/kWh; source: {row.citation}"
                         + (f"; {row.notes}" if row.notes else ""))
        calls = {"call": 1.0, "million": 1e6}.get(workload or "million")
        label = WORKLOADS.get(workload or "million", "per 1M calls")
        if calls is None:
            calls = float(calls_per_step or 0) * float(steps or 0)
            if not calls > 0:
                raise InvalidInputError("the workload needs calls per step and steps (both > 0)")
            label = f"per workload ({calls:,.0f} calls)"
        embodied = None
        if embodied_on and "on" in embodied_on:
            if embodied_kg is None:
                raise InvalidInputError("embodied carbon needs the device's manufacturing footprint (kgCO2e)")
            embodied = float(embodied_kg)
            notes.append(f"embodied: {embodied:g} kgCO2e over {lifetime_years} years at "
                         f"{float(utilisation or 1):.0%} utilisation, charged for the busy time")
        pue_value = float(pue) if pue is not None else 1.0
        notes.append(f"PUE {pue_value:g}" + (" (device energy only)" if pue_value == 1.0 else ""))
        frame = carbon_frame(None, intensity_gco2e_per_kwh=intensity, pue=pue_value, calls=calls,
                             per_config=per_config(filters, energy or "gross"), embodied_kgco2e=embodied,
                             lifetime_years=float(lifetime_years) if embodied is not None and lifetime_years else None,
                             utilisation=float(utilisation or 1.0))
        notes.extend(net_energy_notes(frame.attrs, energy or "gross"))
        figure = carbon_figure(frame, by if by in COMPARE_BY else "dtype", workload=label)
        return figure, notes_list(notes), data_table(carbon_summary(frame), empty="no rows with energy")

    url_state = register_url_state(app, KEY, URL_CONTROLS, defaults=URL_DEFAULTS)
    return {"update_carbon": update_carbon, "url_state_carbon": url_state}

