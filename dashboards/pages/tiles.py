"""Tile explorer: latency and energy across tile sizes for one shape, dtype and device."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from perfscope.dashboards.adapters import predict_latency_s
from perfscope.dashboards.components import (
    cached,
    control,
    figure_id,
    figure_panel,
    guard,
    notes_list,
    triggered_id,
)
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.data import distinct, param_columns
from perfscope.dashboards.figures.common import is_message, message_figure, numeric, shape_labels
from perfscope.dashboards.figures.params import (
    brush_mask,
    brush_ranges,
    brush_text,
    parameter_heatmap,
    parameter_parallel_coordinates,
    parse_brush,
    varying_parameters,
)
from perfscope.dashboards.figures.tiles import tile_heatmap_figure
from perfscope.dashboards.url_state import from_query, placeholder_options, register_url_state

KEY = "tiles"
PATH = "/tiles"
NAME = "Tile explorer"
ORDER = 6
MAX_SHAPES = 300
SHOW = ("time", "energy")
# URL key -> (component id, property). The implementation, shape, dtype, device and heatmap
# axes are kept by the options callbacks when the selection has them (else the first one).
URL_CONTROLS = {"tile_impl": ("tiles-implementation", "value"), "tile_shape": ("tiles-shape", "value"),
                "tile_dtype": ("tiles-dtype", "value"), "tile_device": ("tiles-device", "value"),
                "tile_show": ("tiles-value", "value"), "param_x": ("params-x", "value"),
                "param_y": ("params-y", "value"), "brush": ("params-brush", "data")}
URL_DEFAULTS = {"tile_show": "time"}

_SHAPE = ("batch", "m", "n", "k", "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s",
          "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups", "heads", "kv_heads", "seq_q",
          "seq_k", "head_dim", "causal")
_TILE = ("tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages")
_COLUMNS = ("device_key", "config_id", "kernel", "implementation", "dtype", "cache_mode", "status", "tile", "shape",
            *_SHAPE, *_TILE, "time_s", "time_median_ms", "energy_gross_j", "energy_is_estimate", "device_name",
            "sm_count", "flops", "min_bytes")


def layout(**query: Any) -> html.Div:
    """The tile-explorer page; its controls start from the URL's values."""

    def picker(component_id: str, key: str) -> dcc.Dropdown:
        """A dropdown whose options come from a callback, starting at the URL's value."""
        value = from_query(query, key, None)
        return dcc.Dropdown(id=component_id, options=placeholder_options(value), value=value, clearable=False)

    return html.Div([
        html.H2("Tile explorer"),
        html.P("For one shape, dtype and device: the median latency (or energy) of each tile size; each cell is the "
               "best over the other tile parameters. The star marks the best tile. With a model loaded "
               "(perfscope dashboard --model), its predicted grid sits next to the measured one."),
        html.Div([
            control("Implementation", picker("tiles-implementation", "tile_impl"), width="220px"),
            control("Shape", picker("tiles-shape", "tile_shape"), width="360px"),
            control("Dtype", picker("tiles-dtype", "tile_dtype"), width="140px"),
            control("Device", picker("tiles-device", "tile_device"), width="260px"),
            control("Show", dcc.RadioItems(id="tiles-value", options=[{"label": "latency", "value": "time"},
                                                                      {"label": "energy", "value": "energy"}],
                                           value=from_query(query, "tile_show", "time", choices=SHOW),
                                           inline=True), width="200px"),
        ], className="controls"),
        figure_panel("tiles", height=520),
        html.Div(id="tiles-notes"),
        html.H3("Parameter space"),
        html.P("Tile sizes and tunable parameters (imported parameter spaces: param_<name> columns) of the "
               "implementation, shape, dtype and device above: the best median time over two chosen parameters, "
               "and every configuration across all of them."),
        html.Div([control("x", picker("params-x", "param_x"), width="240px"),
                  control("y", picker("params-y", "param_y"), width="240px"),
                  html.Button("Clear the brushed ranges", id="params-brush-clear", n_clicks=0,
                              className="export-button"),
                  dcc.Store(id="params-brush", data=from_query(query, "brush", ""))],
                 className="controls"),
        html.P("Drag a box over one or more axes of the parallel coordinates to keep only the configurations in "
               "those ranges: the heatmap then shows the best among them.", className="hint"),
        html.Div([html.Div(figure_panel("params-heatmap"), className="half"),
                  html.Div(figure_panel("params-parcoords"), className="half")], className="row"),
    ])


def _shape_key(row: dict[str, Any]) -> str:
    config = {"kernel": str(row["kernel"])}
    for key in _SHAPE:
        value = row.get(key)
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            continue
        config[key] = bool(value) if key == "causal" else int(value)
    return json.dumps(config, sort_keys=True)


def _shape_mask(rows: pd.DataFrame, key: str) -> np.ndarray:
    config = json.loads(key)
    mask = np.array(rows["kernel"] == config.pop("kernel"), dtype=bool)
    for column in _SHAPE:
        if column not in rows:
            continue
        if column in config:
            if column == "causal":
                mask &= rows[column].fillna(False).astype(bool).to_numpy() == bool(config[column])
            else:
                mask &= numeric(rows, column) == float(config[column])
        elif column != "causal":
            mask &= np.isnan(numeric(rows, column))
    return mask


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the tile-explorer callbacks to ``app``."""
    data = context.data

    params = param_columns(data.rows)

    def tiled_positions(filters: dict | None) -> np.ndarray:
        """Positions of the measured rows with a tile or a tunable parameter, cached per
        selection: the page's three callbacks share them, and only their rows are copied."""
        def compute() -> np.ndarray:
            index = data.index(filters)
            tuned = np.isfinite(data.rows["tile_m"].to_numpy(dtype=float)[index])
            for column in params:
                tuned |= data.rows[column].notna().to_numpy()[index]
            return index[tuned & data.is_value("status", "ok", index)]

        return data.cached("tiled_positions", filters, compute)

    def tiled_rows(filters: dict | None, implementation: str | None = None) -> pd.DataFrame:
        """Measured rows with a tile or a tunable parameter (of one implementation when given)."""
        positions = tiled_positions(filters)
        if implementation:
            positions = positions[data.is_value("implementation", implementation, positions)]
        return data.take(positions, (*_COLUMNS, *params))

    @guard("other", "other", "other", "other", "other", "other", "other", "other")
    @cached(data, "update_tile_options")
    def update_tile_options(filters: dict | None, implementation: str | None, shape: str | None,
                            dtype: str | None, device: str | None) -> tuple:
        """Implementations with tiled or tuned rows; the shapes, dtypes and devices of the one chosen
        ("best" is only compared within one implementation and shape)."""
        positions = tiled_positions(filters)
        if not len(positions):
            return [], None, [], None, [], None, [], None
        implementations = distinct(data.take(positions, ["implementation"])["implementation"])
        implementation = implementation if implementation in implementations else implementations[0]
        positions = positions[data.is_value("implementation", implementation, positions)]
        rows = data.take(positions, ("kernel", "dtype", "device_key", *_SHAPE))
        # grouped on the sizes this selection has (a GEMM has no conv or attention sizes)
        sizes = [c for c in _SHAPE if c in rows and rows[c].notna().any()]
        counts = rows.groupby(["kernel", *sizes], dropna=False, observed=True, sort=False).size()
        counts = counts[counts > 0].sort_values(ascending=False).head(MAX_SHAPES)
        firsts = counts.reset_index(name="rows")
        labels = shape_labels(firsts)
        as_lists = {c: firsts[c].tolist() for c in firsts.columns}  # (to_dict("records") boxes each cell)
        keys = [_shape_key({c: values[i] for c, values in as_lists.items()}) for i in range(len(firsts))]
        kernels, row_counts = firsts["kernel"].astype(str).tolist(), firsts["rows"].tolist()
        labels = [label if label != "?" else "(no sizes: an imported problem)" for label in labels]
        options = [{"label": f"{kernels[i]} {labels[i]} ({row_counts[i]} rows)", "value": keys[i]}
                   for i in range(len(keys))]
        dtypes = distinct(rows["dtype"])
        devices = distinct(rows["device_key"])
        return (implementations, implementation, options, shape if shape in keys else keys[0], dtypes,
                dtype if dtype in dtypes else dtypes[0], devices, device if device in devices else devices[0])

    def chosen_rows(filters: dict | None, implementation: str | None, shape: str | None, dtype: str | None,
                    device: str | None) -> pd.DataFrame:
        """The rows of one implementation, shape, dtype and device (cached: two callbacks draw them)."""
        def compute() -> pd.DataFrame:
            positions = tiled_positions(filters)
            if not (shape and dtype and device and implementation) or not len(positions):
                return data.take(positions[:0], (*_COLUMNS, *params))
            positions = positions[data.is_value("implementation", implementation, positions)
                                  & data.is_value("dtype", dtype, positions)
                                  & data.is_value("device_key", device, positions)]
            rows = data.take(positions, (*_COLUMNS, *params))
            return rows[_shape_mask(rows, shape)]

        return data.cached("chosen_tile_rows", filters, compute, implementation, shape, dtype, device)

    @guard("other", "other", "other", "other", "figure", "figure")
    @cached(data, "update_parameter_space")
    def update_parameter_space(filters: dict | None, implementation: str | None, shape: str | None,
                               dtype: str | None, device: str | None, x: str | None, y: str | None,
                               brush: str | None = None) -> tuple:
        rows = chosen_rows(filters, implementation, shape, dtype, device)
        varying = varying_parameters(rows)
        ranges = parse_brush(brush)
        parcoords = parameter_parallel_coordinates(rows, varying, ranges)
        if len(varying) < 2:
            text = "fewer than two parameters vary for this implementation and shape"
            return varying, None, varying, None, message_figure(f"Parameter heatmap: {text}"), parcoords
        x = x if x in varying else varying[0]
        y = y if y in varying and y != x else next(v for v in varying if v != x)
        brushed = rows[brush_mask(rows, ranges)] if ranges else rows
        heatmap = parameter_heatmap(brushed, x, y)
        if ranges and not is_message(heatmap):
            heatmap.update_layout(title=heatmap.layout.title.text.replace("</sup>", " (in the brushed ranges)</sup>"))
        return varying, x, varying, y, heatmap, parcoords

    @guard("figure", "children")
    @cached(data, "update_tiles")
    def update_tiles(filters: dict | None, implementation: str | None, shape: str | None, dtype: str | None,
                     device: str | None, value: str | None) -> tuple:
        rows = chosen_rows(filters, implementation, shape, dtype, device)
        notes = []
        if context.model is not None and not rows.empty and value != "energy":
            predicted, why = predict_latency_s(context.model, rows)
            if predicted is not None:
                rows = rows.assign(predicted_time_s=predicted)
            notes.append(why or context.model_note)
        elif context.model_note:
            notes.append(context.model_note)
        return tile_heatmap_figure(rows, value or "time"), notes_list(notes)

    # One callback for the page: chained (choices first, then the heatmap and the parameter
    # space), a filter change took two round trips and drew the figures twice. A control that
    # only one part reads leaves the other part's figures as they are.
    @app.callback(Output("tiles-implementation", "options"), Output("tiles-implementation", "value"),
                  Output("tiles-shape", "options"), Output("tiles-shape", "value"),
                  Output("tiles-dtype", "options"), Output("tiles-dtype", "value"),
                  Output("tiles-device", "options"), Output("tiles-device", "value"),
                  Output(figure_id("tiles"), "figure"), Output("tiles-notes", "children"),
                  Output("params-x", "options"), Output("params-x", "value"), Output("params-y", "options"),
                  Output("params-y", "value"), Output(figure_id("params-heatmap"), "figure"),
                  Output(figure_id("params-parcoords"), "figure"),
                  Input("filters", "data"), Input("tiles-implementation", "value"), Input("tiles-shape", "value"),
                  Input("tiles-dtype", "value"), Input("tiles-device", "value"), Input("tiles-value", "value"),
                  Input("params-x", "value"), Input("params-y", "value"), Input("params-brush", "data"))
    def update_tile_page(filters: dict | None, implementation: str | None, shape: str | None, dtype: str | None,
                         device: str | None, value: str | None, x: str | None, y: str | None,
                         brush: str | None = None) -> tuple:
        trigger = triggered_id()
        choices = update_tile_options(filters, implementation, shape, dtype, device)
        if any(choice is no_update for choice in choices):  # the choices failed (a message is already logged)
            choices = (no_update, implementation, no_update, shape, no_update, dtype, no_update, device)
        chosen = choices[1], choices[3], choices[5], choices[7]
        tiles = (no_update, no_update) if trigger in ("params-x", "params-y", "params-brush") \
            else update_tiles(filters, *chosen, value)
        space = (no_update,) * 6 if trigger == "tiles-value" \
            else update_parameter_space(filters, *chosen, x, y, brush or "")
        return (*choices, *tiles, *space)

    @app.callback(Output("params-brush", "data"), Input(figure_id("params-parcoords"), "relayoutData"),
                  Input("params-brush-clear", "n_clicks"), State("filters", "data"),
                  State("tiles-implementation", "value"), State("tiles-shape", "value"),
                  State("tiles-dtype", "value"), State("tiles-device", "value"), State("params-brush", "data"),
                  prevent_initial_call=True)
    def update_brush(relayout: dict | None, _clear: int | None, filters: dict | None, implementation: str | None,
                     shape: str | None, dtype: str | None, device: str | None, brush: str | None) -> Any:
        """Boxes dragged over the parallel coordinates (plotly's ``selections``) as value
        ranges per axis; the clear button or a double-click (no selection left) clears them."""
        if triggered_id() == "params-brush-clear":
            return "" if brush else no_update
        if not isinstance(relayout, dict) or "selections" not in relayout:
            raise PreventUpdate  # a zoom, a resize, a redraw: not a brush
        if not relayout["selections"]:
            return "" if brush else no_update
        rows = chosen_rows(filters, implementation, shape, dtype, device)
        # the figure is redrawn after each brush (its boxes gone): a new box adds to the ranges
        # kept, replacing those of the axes it covers
        kept = parse_brush(brush)
        fresh = brush_ranges(rows, varying_parameters(rows), relayout["selections"], kept)
        text = brush_text({**kept, **fresh})
        return no_update if text == (brush or "") else text

    url_state = register_url_state(app, KEY, URL_CONTROLS, defaults=URL_DEFAULTS)
    return {"update_tile_options": update_tile_options, "update_tiles": update_tiles,
            "update_parameter_space": update_parameter_space, "update_brush": update_brush,
            "url_state_tiles": url_state}
