"""Roofline: achieved FLOP/s against arithmetic intensity with the device's ceilings."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, dcc, html

from perfscope.dashboards.components import cached, control, figure_id, figure_panel, guard, notes_list
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.data import ceilings_frame, distinct
from perfscope.dashboards.figures.roofline import roofline_figure, style_map
from perfscope.dashboards.url_state import from_query, register_url_state

KEY = "roofline"
PATH = "/roofline"
NAME = "Roofline"
ORDER = 1

_COLUMNS = ("device_key", "implementation", "dtype", "tile", "shape", "intensity_flops_per_byte",
            "achieved_flops_per_s", "flops", "time_median_ms", "time_s", "bound_time_s", "roofline_attainment",
            "peak_flops_per_s", "mem_bandwidth_bytes_per_s", "device_source")
SOURCES = [{"label": "spec sheet", "value": "spec"},
           {"label": "calibrated profile (the dataset's own, else yours)", "value": "calibrated"}]


URL_CONTROLS = {"ceilings": ("roofline-sources", "value")}
URL_DEFAULTS = {"ceilings": ["spec", "calibrated"]}


def layout(**query: Any) -> html.Div:
    """The roofline page."""
    return html.Div([
        html.H2("Roofline"),
        html.P("Each point is a measured configuration: FLOPs over its median time, against FLOPs per byte of "
               "minimum traffic. Ceilings: min(peak of the dtype, intensity x memory bandwidth); dashed from the "
               "spec sheet, solid from a calibrated profile: the dataset's own when it carries one, else your "
               "calibration (perfscope calibrate); the legend names which, with its date and file."),
        html.Div([control("Ceilings", dcc.Checklist(id="roofline-sources", options=SOURCES,
                                                    value=from_query(query, "ceilings", ["spec", "calibrated"],
                                                                     kind=list, choices=["spec", "calibrated"]),
                                                    inline=True), width="520px")],
                 className="controls"),
        figure_panel("roofline", height=560),
        html.Div(id="roofline-notes"),
    ])


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the roofline callbacks to ``app``."""
    data = context.data
    # styles from every (device, dtype) in the dataset: a filter never recolours a series
    pairs = data.rows[["device_key", "dtype"]].drop_duplicates() if len(data.rows) else data.rows[[]]
    pair_list = [(str(k), str(d)) for k, d in pairs.itertuples(index=False)] if len(pairs) else []
    colours, symbols = style_map([k for k, _ in pair_list], pair_list)
    origins = ceiling_sources(data.devices)
    labels = ceiling_labels(data.devices)

    @app.callback(Output(figure_id("roofline"), "figure"), Output("roofline-notes", "children"),
                  Input("filters", "data"), Input("roofline-sources", "value"))
    @guard("figure", "children")
    @cached(data, "update_roofline")
    def update_roofline(filters: dict | None, sources: list[str] | None) -> tuple:
        rows = data.select(filters, _COLUMNS)
        devices = {k: v for k, v in data.devices.items() if k in set(data.options["device"])}
        if len(rows) < len(data.rows):
            present = set(distinct(rows["device_key"]))
            devices = {k: v for k, v in devices.items() if k in present}
        dtypes = set(distinct(rows["dtype"]))
        ceilings = ceilings_frame(devices, dtypes)
        ceilings = ceilings[ceilings["source"].isin(sources or [])]
        notes = [info.note for info in devices.values()]
        figure = roofline_figure(rows, ceilings, colours=colours, symbols=symbols,
                                 sources={k: v for k, v in origins.items() if k.split(":")[0] in devices},
                                 labels=labels)
        return figure, notes_list(notes)

    url_state = register_url_state(app, KEY, URL_CONTROLS, defaults=URL_DEFAULTS)
    return {"update_roofline": update_roofline, "url_state_roofline": url_state}


def ceiling_sources(devices: dict) -> dict[str, str]:
    """"device:source" -> where that ceiling's figures come from: the spec-sheet row, or the
    calibrated profile (the dataset's own or the viewer's), its file and date."""
    out = {}
    for key, info in devices.items():
        if info.spec is not None:
            out[f"{key}:spec"] = f"spec sheet row {getattr(info.spec, 'device_id', '?')}"
        if info.calibrated is not None:
            out[f"{key}:calibrated"] = info.calibrated_source
    return out


def ceiling_labels(devices: dict) -> dict[str, str]:
    """"device:source" -> the ceiling's legend label: "spec sheet", or whose calibrated
    profile (the dataset's own or yours), its date and file name."""
    out = {}
    for key, info in devices.items():
        if info.spec is not None:
            out[f"{key}:spec"] = "spec sheet"
        if info.calibrated is not None:
            out[f"{key}:calibrated"] = info.calibrated_label
    return out
