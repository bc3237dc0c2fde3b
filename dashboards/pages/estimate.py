"""Estimate: a configuration in, perfscope's estimate out (interval, bound, energy, carbon).

The page calls ``perfscope.workflows.estimate.estimate`` with the model the dashboard was
started with (``--model``), so it answers what ``perfscope estimate ... --model`` answers,
and says which model or fallback did. Every control lives in the URL.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from dash import ALL, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from perfscope.carbon import canonical_region, grid_intensity, load_intensity_table, operational_gco2e
from perfscope.dashboards.adapters import SHAPE_EXAMPLES, parse_params, parse_shape, run_estimate, run_estimate_params
from perfscope.dashboards.components import (
    control,
    data_table,
    figure_id,
    figure_panel,
    guard,
    notes_list,
    triggered_id,
)
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.estimate_family import (
    PARAM_FIELD,
    best_config_row,
    family_table,
    imported_families,
    known_parameter_names,
    merged_params_text,
    parameter_fields,
    problem_size_text,
    read_problem_size,
)
from perfscope.dashboards.figures.common import message_figure
from perfscope.dashboards.figures.estimate import estimate_figure, normalise_estimate
from perfscope.dashboards.units import duration, flops_rate, interval, percent, quantity
from perfscope.dashboards.url_state import from_query, placeholder_options, register_url_state
from perfscope.devicespecs import load_device_specs
from perfscope.dtypes import DTYPES
from perfscope.workflows.config_space import parse_params as parse_family_params
from perfscope.workflows.estimate_params import family_space

KEY = "estimate"
PATH = "/estimate"
NAME = "Estimate"
ORDER = 7
KERNELS = ("gemm", "conv", "attention")
DEFAULT_IMPLEMENTATION = "default"
# URL key -> (component id, property): the page's controls
URL_CONTROLS = {
    "est_kernel": ("estimate-kernel", "value"), "est_device": ("estimate-device", "value"),
    "est_dtype": ("estimate-dtype", "value"), "shape": ("estimate-shape", "value"),
    "impl": ("estimate-implementation", "value"), "tile_m": ("estimate-tile-m", "value"),
    "tile_n": ("estimate-tile-n", "value"), "tile_k": ("estimate-tile-k", "value"),
    "params": ("estimate-params", "value"), "problem": ("estimate-problem-size", "value"),
    "region": ("estimate-region", "value"), "pue": ("estimate-pue", "value"),
}
SHOWN, HIDDEN = {}, {"display": "none"}


def layout(**query: Any) -> html.Div:
    """The estimate page; its controls start from the URL's values. Imported families
    (any other kernel name) get their fields from the register's callbacks."""
    devices = sorted(load_device_specs())
    regions = [{"label": r.label, "value": r.region} for r in load_intensity_table()]
    kernel = from_query(query, "est_kernel", "gemm")
    built_in = kernel in KERNELS
    device = from_query(query, "est_device", None)
    problem = from_query(query, "problem", None)

    def tile(name: str) -> int | None:
        return from_query(query, name, None, kind=int)

    return html.Div([
        html.H2("Estimate"),
        html.P("Latency with its interval, the roofline bound, energy and carbon for a configuration never "
               "measured: perfscope estimate, with the model the dashboard was started with (--model). "
               "Imported kernel families (Kernel Tuner caches, ...) are estimated by the model's parameter forest "
               "from their tunable parameters."),
        html.Div(id="estimate-model"),
        html.Div([
            control("Kernel family", dcc.RadioItems(id="estimate-kernel", options=[*KERNELS, *([] if built_in else
                                                                                              [kernel])],
                                                    value=kernel, inline=True), width="auto"),
            control("Device", dcc.Dropdown(id="estimate-device", options=[*devices, "cpu"],
                                           value=device or ("h100-sxm" if built_in and "h100-sxm" in devices
                                                            else None)),
                    width="280px"),
            control("Dtype", dcc.Dropdown(id="estimate-dtype", options=list(DTYPES),
                                          value=from_query(query, "est_dtype", "bf16", choices=list(DTYPES)),
                                          clearable=False), width="140px"),
            control("Implementation", dcc.Dropdown(id="estimate-implementation", options=[DEFAULT_IMPLEMENTATION],
                                                   value=from_query(query, "impl", DEFAULT_IMPLEMENTATION),
                                                   clearable=False), width="220px"),
        ], className="controls"),
        html.Div([
            control("Shape (key=value)", dcc.Input(id="estimate-shape", type="text",
                                                   value=from_query(query, "shape", SHAPE_EXAMPLES.get(kernel, "")),
                                                   style={"width": "100%"}, debounce=True), width="100%"),
            html.Div([
                control("Tile m", dcc.Input(id="estimate-tile-m", type="number", min=1, step=1,
                                            value=tile("tile_m"), debounce=True), width="90px"),
                control("Tile n", dcc.Input(id="estimate-tile-n", type="number", min=1, step=1,
                                            value=tile("tile_n"), debounce=True), width="90px"),
                control("Tile k", dcc.Input(id="estimate-tile-k", type="number", min=1, step=1,
                                            value=tile("tile_k"), debounce=True), width="90px"),
            ], className="controls"),
        ], id="estimate-sizes-box", style=SHOWN if built_in else HIDDEN),
        html.Div([
            control("Problem size", dcc.Dropdown(id="estimate-problem-size", options=placeholder_options(problem),
                                                 value=problem, placeholder="the space's only one"), width="220px"),
            html.Div(id="estimate-param-fields", className="controls"),
        ], id="estimate-family-box", className="controls", style=HIDDEN if built_in else SHOWN),
        control("Tunable parameters (name=value)",
                dcc.Input(id="estimate-params", type="text", value=from_query(query, "params", ""),
                          placeholder="block_size_x=128 tile_size_y=4", debounce=True, style={"width": "100%"}),
                width="100%"),
        html.Div([
            control("Grid intensity", dcc.Dropdown(id="estimate-region", options=regions,
                                                   value=canonical_region(from_query(query, "region", "World")),
                                                   clearable=False),
                    width="340px"),
            control("PUE", dcc.Input(id="estimate-pue", type="number", min=1, step=0.01,
                                     value=from_query(query, "pue", 1.0, kind=float)), width="90px"),
            html.Button("Estimate", id="estimate-run", n_clicks=0, className="primary"),
            html.Button("Best configuration", id="estimate-best", n_clicks=0, className="export-button",
                        title="the configuration the model predicts fastest for this shape: perfscope estimate "
                              "--best-config (needs --model)"),
        ], className="controls"),
        html.Div(id="estimate-status"),
        figure_panel("estimate", height=260),
        html.Div(id="estimate-details"),
    ])


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the estimate callbacks to ``app``."""
    data = context.data
    model_line = (f"answered by the model {context.model_path}" if context.model is not None else
                  context.model_note or "no model loaded: estimates use the roofline fallback "
                  "(start the dashboard with --model to use a trained model)")
    families = imported_families(data.rows, context.model)
    spaces: dict[str, dict[str, Any]] = {}

    def space_of(kernel: str) -> dict[str, Any]:
        """The family's fields: the model's saved space first, else the dataset's rows (kept)."""
        if kernel not in spaces:
            spaces[kernel] = family_space(kernel, model=context.model, rows=data.rows)
        return spaces[kernel]

    measured: dict[str, dict[str, list[str]]] = {}

    def measured_of(kernel: str) -> dict[str, list[str]]:
        """The dataset's devices and dtypes with rows of ``kernel`` (one pass over the rows, kept)."""
        if kernel not in measured:
            found: dict[str, list[str]] = {"device_key": [], "dtype": []}
            if len(data.rows) and "kernel" in data.rows:
                mine = (data.rows["kernel"].astype(str) == kernel).to_numpy()
                for column in found:
                    if column in data.rows:
                        found[column] = sorted(str(v) for v in data.rows.loc[mine, column].dropna().unique())
            measured[kernel] = found
        return measured[kernel]

    def family_devices(kernel: str) -> list[str]:
        """The devices the model was trained on, then the dataset's devices with rows of ``kernel``."""
        trained = list((getattr(context.model, "metadata", {}) or {}).get("device_names") or {}) \
            if context.model is not None else []
        return list(dict.fromkeys(trained + measured_of(kernel)["device_key"]))

    def family_dtype(kernel: str, dtype: str | None) -> Any:
        """The dtype the family was measured in, when the page shows another and it has one."""
        dtypes = measured_of(kernel)["dtype"]
        return dtypes[0] if len(dtypes) == 1 and dtype not in dtypes else no_update

    @app.callback(Output("estimate-shape", "placeholder"), Output("estimate-device", "options"),
                  Output("estimate-implementation", "options"), Output("estimate-model", "children"),
                  Output("estimate-kernel", "options"), Output("estimate-param-fields", "children"),
                  Output("estimate-problem-size", "options"), Output("estimate-problem-size", "value"),
                  Output("estimate-sizes-box", "style"), Output("estimate-family-box", "style"),
                  Output("estimate-device", "value"), Output("estimate-dtype", "value"),
                  Input("estimate-kernel", "value"), State("estimate-device", "options"),
                  State("estimate-params", "value"), State("estimate-problem-size", "value"),
                  State("estimate-device", "value"), State("estimate-dtype", "value"))
    def update_estimate_choices(kernel: str | None, spec_devices: list | None, params_text: str | None = None,
                                problem: str | None = None, device: str | None = None,
                                dtype: str | None = None) -> tuple:
        """The dataset's own devices first (their profile wins), then the spec table; the
        implementations measured for this kernel family. An imported family: the model's
        devices first, its problem sizes and one field per tunable parameter."""
        kernel = kernel or "gemm"
        kernels = [*KERNELS, *families]
        note = notes_list([model_line], kind="note" if context.model is not None else "warning")
        if kernel not in KERNELS:
            space = space_of(kernel)
            own = family_devices(kernel)
            devices = own + [d for d in (spec_devices or []) if d not in own]
            sizes = [problem_size_text(p) for p in space["problem_sizes"]]
            chosen = problem if problem in sizes else (sizes[0] if sizes else None)
            fields = parameter_fields(space, params_text) if space["parameters"] else [
                html.Div(f"no parameter space for {kernel}: the model kept none and the dataset has no rows of it",
                         className="notes warning")]
            return ("", devices, [DEFAULT_IMPLEMENTATION, *space["implementations"]], note, kernels, fields,
                    sizes, chosen, HIDDEN, SHOWN, no_update if device else (own[0] if own else no_update),
                    family_dtype(kernel, dtype))
        own = sorted(data.devices)
        devices = own + [d for d in (spec_devices or []) if d not in own]
        implementations = [DEFAULT_IMPLEMENTATION]
        if len(data.rows) and "implementation" in data.rows:
            of_kernel = data.rows.loc[(data.rows["kernel"] == kernel).to_numpy(), "implementation"]
            implementations += sorted(str(v) for v in of_kernel.dropna().unique())
        return (SHAPE_EXAMPLES.get(kernel, ""), devices, implementations, note, kernels, [], [], None, SHOWN, HIDDEN,
                no_update, no_update)

    @app.callback(Output("estimate-params", "value"), Input({"type": PARAM_FIELD, "name": ALL}, "value"),
                  State({"type": PARAM_FIELD, "name": ALL}, "id"), State("estimate-params", "value"),
                  State("estimate-kernel", "value"), prevent_initial_call=True)
    def write_params(values: list, ids: list, text: str | None, kernel: str | None) -> Any:
        """A parameter dropdown changed: the text (and so the URL) follows."""
        if not ids or not kernel or kernel in KERNELS:
            raise PreventUpdate
        merged = merged_params_text(ids, values, text, known_parameter_names(space_of(kernel)))
        return no_update if merged == (text or "") else merged

    @app.callback(Output(figure_id("estimate"), "figure"), Output("estimate-status", "children"),
                  Output("estimate-details", "children"),
                  Input("estimate-run", "n_clicks"), Input("estimate-best", "n_clicks"),
                  *[State(cid, prop) for cid, prop in URL_CONTROLS.values()])
    @guard("figure", "children", "children")
    def update_estimate(n_clicks: int | None, best_clicks: int | None, kernel: str | None, device: str | None,
                        dtype: str | None, shape_text: str | None, implementation: str | None,
                        tile_m: Any, tile_n: Any, tile_k: Any, params_text: str | None, problem: str | None,
                        region: str | None, pue: float | None) -> tuple:
        if not n_clicks and not best_clicks:
            return estimate_figure(None), notes_list(["fill the form and press Estimate"]), html.Div()
        if not device:
            return message_figure("Estimate: pick a device"), notes_list(["pick a device"], kind="warning"), html.Div()
        kernel = kernel or "gemm"
        impl = None if implementation in (None, "", DEFAULT_IMPLEMENTATION) else implementation
        best = bool(best_clicks) and (not n_clicks or triggered_id() == "estimate-best")
        pue_value = float(pue) if pue is not None else 1.0
        if kernel in KERNELS:
            config: dict[str, Any] = dict(parse_shape(kernel, shape_text))
            for name, value in (("tile_m", tile_m), ("tile_n", tile_n), ("tile_k", tile_k)):
                if value not in (None, ""):
                    config[name] = int(value)
            config.update(parse_params(params_text))
            outcome = run_estimate(kernel, device, dtype or "fp32", config, model=context.model, implementation=impl,
                                   best_config=best)
        else:
            outcome = run_estimate_params(kernel, device, dtype or "fp32", parse_family_params(params_text or ""),
                                          model=context.model, problem_size=read_problem_size(problem),
                                          implementation=impl, region=region or "World", pue=pue_value,
                                          best_config=best)
        if not outcome.ok:
            return (message_figure(f"Estimate: {outcome.message}"), notes_list([outcome.message], kind="warning"),
                    html.Div())
        result = outcome.result or {}
        notes = [f"answered by: {result.get('method', '?')}"
                 + (f" ({context.model_path})" if context.model is not None else ""),
                 f"device figures: {result.get('device', device)} ({result.get('device_source', '?')})"]
        if result.get("given_note"):
            notes.append(result["given_note"])
        values = normalise_estimate(result)
        if math.isfinite(values["energy_j"]):
            row = grid_intensity(region or "World")
            per_million = operational_gco2e(values["energy_j"] * 1e6, row.intensity_gco2e_per_kwh, pue_value)
            notes.append(f"{quantity(per_million, 'gCO2e')} per million calls ({row.region} {row.year}, "
                         f"{row.intensity_gco2e_per_kwh:g} gCO2e/kWh lifecycle, PUE {pue_value:g}; "
                         f"source: {row.source})")
        else:
            notes.append("no energy in the estimate: no carbon figure")
        table = estimate_table(result) if kernel in KERNELS else family_table(result)
        return estimate_figure(result), notes_list(notes), data_table(table)

    url_state = register_url_state(app, KEY, URL_CONTROLS)
    return {"update_estimate": update_estimate, "update_estimate_choices": update_estimate_choices,
            "write_estimate_params": write_params, "url_state_estimate": url_state}


def estimate_table(result: dict[str, Any]) -> pd.DataFrame:
    """The estimate as (quantity, value) rows, every number with its unit."""
    rows: list[tuple[str, str]] = [
        ("latency", duration(result.get("latency_s"))),
        ("interval", interval(result.get("latency_low_s"), result.get("latency_high_s"), "s")),
        ("roofline bound", f"{duration(result.get('bound_time_s'))} ({result.get('bound', '?')}-bound)"),
        ("share of the bound reached", percent(result.get("efficiency"))),
        ("work", f"{quantity(result.get('flops'), 'FLOP')}, {quantity(result.get('min_bytes'), 'B')} minimum traffic"),
    ]
    latency = result.get("latency_s")
    if isinstance(latency, (int, float)) and latency > 0 and isinstance(result.get("flops"), (int, float)):
        rows.append(("throughput", flops_rate(result["flops"] / latency)))
    rows += [
        ("energy per call", f"{quantity(result.get('energy_j'), 'J')} ({result.get('energy_method', '?')})"),
        ("power", quantity(result.get("power_w"), "W")),
        ("carbon per call", f"{quantity(result.get('carbon_gco2e'), 'gCO2e')} at "
                            f"{result.get('carbon_intensity_gco2e_per_kwh', float('nan')):g} gCO2e/kWh, "
                            f"PUE {result.get('pue', 1.0):g} ({result.get('carbon_intensity_source', '?')})"),
        ("device", f"{result.get('device', '?')} ({result.get('device_source', '?')} figures)"),
        ("method", str(result.get("method", "?"))),
    ]
    tiles = [result.get(c) for c in ("tile_m", "tile_n", "tile_k")]
    if any(t is not None and t == t for t in tiles):
        rows.insert(0, ("tile", "x".join("?" if t is None or t != t else str(int(t)) for t in tiles)))
    found = result.get("best_config")
    if isinstance(found, dict):
        rows.append(best_config_row(found))
    return pd.DataFrame(rows, columns=["quantity", "value"])
