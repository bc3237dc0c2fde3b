"""Waterline / efficiency gap: latency vs FLOPs with iso-efficiency lines, the gap per
configuration, and waterlines of kernel sequences (sum of bounds, measured, fused)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from perfscope.dashboards.aggregate import group_codes, group_quantiles
from perfscope.dashboards.components import (
    cached,
    control,
    figure_id,
    figure_panel,
    guard,
    kept_table,
    kept_table_outputs,
    kept_table_update,
    notes_list,
)
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.data import distinct
from perfscope.dashboards.figures.common import config_labels, message_figure, numeric, seconds, si
from perfscope.dashboards.figures.efficiency import gap_figure, gap_table, latency_flops_figure, waterline_figure
from perfscope.dashboards.url_state import from_query, placeholder_options, register_url_state
from perfscope.dashboards.waterline import (
    describe_totals,
    layers_from_rows,
    load_sequences,
    matched_columns,
    sequence_by_name,
    waterline,
)
from perfscope.dtypes import DTYPES

KEY = "efficiency"
PATH = "/efficiency"
NAME = "Waterline / gap"
ORDER = 2
CUSTOM = "__custom__"
MAX_CONFIG_OPTIONS = 60  # options listed per search (the search covers every configuration)
DEFAULT_DTYPE = "fp32"
# URL key -> (component id, property): the waterline's sequence, dtype, device and the custom
# sequence's configurations (config ids, in order) live in the URL
URL_CONTROLS = {"sequence": ("waterline-sequence", "value"), "wl_dtype": ("waterline-dtype", "value"),
                "wl_device": ("waterline-device", "value"), "wl_configs": ("waterline-configs", "value")}

_SHAPE = ("batch", "m", "n", "k", "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s",
          "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups", "heads", "kv_heads", "seq_q",
          "seq_k", "head_dim", "causal")
_GAP_COLUMNS = ("device_key", "config_id", "kernel", "implementation", "dtype", "tile", "shape", "flops", "time_s",
                "bound_time_s", "bound", "gap", "achieved_fraction", "peak_flops_per_s")
_MEASURED_COLUMNS = ("kernel", "time_s", *_SHAPE)  # what a layer is matched on (waterline.match_measured)
_COLUMNS = ("device_key", "config_id", "kernel", "implementation", "dtype", "tile", "shape", "status", *_SHAPE, "flops",
            "time_s", "bound_time_s", "bound", "gap", "achieved_fraction", "peak_flops_per_s")


def url_defaults() -> dict[str, Any]:
    """The controls' values when the URL names none (left out of the URL)."""
    return {"sequence": load_sequences()[0].name, "wl_dtype": DEFAULT_DTYPE}


def layout(**query: Any) -> html.Div:
    """The waterline / efficiency-gap page; its controls start from the URL's values (the
    device and dtype are kept by the options callback when the selection has them)."""
    sequences = load_sequences()
    options = [{"label": s.name, "value": s.name} for s in sequences]
    options.append({"label": "Custom: the configurations picked below, in order", "value": CUSTOM})
    sequence = from_query(query, "sequence", sequences[0].name, choices=[o["value"] for o in options])
    configs = from_query(query, "wl_configs", [], kind=list)
    device = from_query(query, "wl_device", None)
    return html.Div([
        html.H2("Waterline and efficiency gap"),
        html.P("latency = FLOPs / (efficiency x peak): on log-log axes each efficiency is a diagonal, the peak "
               "line the lowest. The gap of a configuration is its measured time over its roofline bound "
               "(compute, memory traffic and launch floor)."),
        html.Div([html.Div(figure_panel("latency-flops"), className="half"),
                  html.Div(figure_panel("gap"), className="half")], className="row"),
        html.H3("Furthest from the bound"),
        kept_table("gap-table"),
        html.H3("Achieved fraction of the bound by group"),
        kept_table("gap-summary"),
        html.H3("Waterline of a kernel sequence"),
        html.P("Per layer: the roofline bound and the measured median (same family, dtype and shape on the "
               "device). Totals: the sum of the bounds, the measured sum, and the bound if the layers were fused "
               "into one kernel (intermediate tensors neither written nor read back, one launch)."),
        html.Div([
            control("Sequence", dcc.Dropdown(id="waterline-sequence", options=options, value=sequence,
                                             clearable=False), width="440px"),
            control("Dtype", dcc.Dropdown(id="waterline-dtype", options=list(DTYPES),
                                          value=from_query(query, "wl_dtype", DEFAULT_DTYPE, choices=list(DTYPES)),
                                          clearable=False), width="140px"),
            control("Device", dcc.Dropdown(id="waterline-device", options=placeholder_options(device),
                                           value=device, clearable=False),
                    width="260px"),
        ], className="controls"),
        control("Custom sequence: configurations in order (type to search every measured configuration)",
                dcc.Dropdown(id="waterline-configs", options=placeholder_options(configs), value=configs, multi=True,
                             placeholder="search: bf16 4096 triton"),
                width="100%"),
        figure_panel("waterline"),
        html.Div(id="waterline-totals"),
        kept_table("waterline-table"),
    ])


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the efficiency page's callbacks to ``app``."""
    data = context.data

    # Figures and tables in two callbacks (two requests): the browser draws the figures
    # while the server still ranks the tables.
    @app.callback(Output(figure_id("latency-flops"), "figure"), Output(figure_id("gap"), "figure"),
                  Input("filters", "data"))
    @guard("figure", "figure")
    @cached(data, "update_gap_figures")
    def update_gap_figures(filters: dict | None) -> tuple:
        rows = data.select(filters, _GAP_COLUMNS)
        return latency_flops_figure(rows), gap_figure(rows)

    # the two tables are grids the page keeps: only their rows and columns are sent
    @app.callback(*kept_table_outputs("gap-table"), *kept_table_outputs("gap-summary"), Input("filters", "data"))
    @guard("other", "other", "other", "children", "other", "other", "other", "children")
    @cached(data, "update_gap_tables")
    def update_gap_tables(filters: dict | None) -> tuple:
        rows = data.select(filters, _GAP_COLUMNS)
        return (*kept_table_update(gap_table(rows), empty="no bound"),
                *kept_table_update(_summary(rows), empty="no rows with a roofline bound (the device has no peak "
                                                         "for their dtype: calibrate it)"))

    def update_gap(filters: dict | None) -> tuple:
        """Both parts: (latency figure, gap figure, gap table's update, summary table's update)."""
        tables = update_gap_tables(filters)
        return (*update_gap_figures(filters), tables[:4], tables[4:])

    @guard("other", "other", "other", "other")
    @cached(data, "update_waterline_options")
    def update_waterline_options(filters: dict | None, dtype: str | None, device: str | None) -> tuple:
        rows = data.select(filters, ("device_key", "dtype"))
        dtypes = distinct(rows["dtype"]) or list(DTYPES)
        dtypes = [d for d in dtypes if d in DTYPES] or list(DTYPES)
        devices = distinct(rows["device_key"]) or sorted(data.devices)
        return (dtypes, dtype if dtype in dtypes else dtypes[0], devices,
                device if device in devices else (devices[0] if devices else None))

    search_columns = ("implementation", "dtype", "shape", "tile", "device_key", "kernel")

    def labelled(rows: pd.DataFrame) -> list[dict[str, str]]:
        """Dropdown options for configurations (one per config id), labels told apart by id when equal."""
        firsts = rows.drop_duplicates("config_id")
        labels = config_labels(firsts) + " · " + firsts["device_key"].astype(str).to_numpy()
        ids = firsts["config_id"].astype(str).to_numpy()
        repeated = pd.Series(labels).duplicated(keep=False).to_numpy()
        labels = np.where(repeated, labels + " #" + pd.Series(ids).str[:6].to_numpy(), labels)
        return [{"label": str(label), "value": cid} for label, cid in zip(labels, ids, strict=True)]

    @app.callback(Output("waterline-configs", "options"), Input("waterline-configs", "search_value"),
                  Input("filters", "data"), State("waterline-configs", "value"))
    @guard("other")
    def update_config_search(search: str | None, filters: dict | None, chosen: list[str] | None) -> list[dict]:
        """The configurations chosen, then up to ``MAX_CONFIG_OPTIONS`` measured ones matching every
        word typed: each word is looked up in the columns' categories (a few hundred strings),
        not in a label per row, so the search covers a million rows at once."""
        label_columns = ("config_id", "kernel", "implementation", "dtype", "tile", "shape", "device_key")
        index = data.index(filters)
        measured = index[data.is_value("status", "ok", index)]  # positions: no column copied yet
        ids = data.rows["config_id"]
        if isinstance(ids.dtype, pd.CategoricalDtype):
            wanted = ids.cat.categories.get_indexer(chosen or [])
            is_chosen = np.isin(ids.cat.codes.to_numpy()[measured], wanted[wanted >= 0])
        else:
            is_chosen = np.isin(ids.to_numpy()[measured], chosen or [])
        kept = data.take(measured[is_chosen], label_columns)
        words = (search or "").lower().split()
        if not words:
            found_positions = measured[~is_chosen][:MAX_CONFIG_OPTIONS * 4]
        else:
            match = ~is_chosen
            for word in words:
                hit = np.zeros(len(measured), dtype=bool)
                for column in search_columns:
                    series = data.rows[column]
                    if isinstance(series.dtype, pd.CategoricalDtype):
                        codes = series.cat.codes.to_numpy()[measured]
                    else:
                        codes, uniques = pd.factorize(series.iloc[measured])
                        series = pd.Series(pd.Categorical.from_codes(np.arange(len(uniques)), uniques))
                    table = np.append(series.cat.categories.astype(str).str.lower().str.contains(word, regex=False),
                                      False)  # the last slot: a missing value (code -1)
                    hit |= table[codes]
                match &= hit
            found_positions = measured[np.flatnonzero(match)[:MAX_CONFIG_OPTIONS * 4]]
        found = data.take(found_positions, label_columns)
        return labelled(kept) + labelled(found)[:MAX_CONFIG_OPTIONS]

    @guard("figure", "children")
    @cached(data, "update_waterline")
    def update_waterline(sequence_name: str | None, dtype: str | None, device_key: str | None,
                         config_ids: list[str] | None, filters: dict | None) -> tuple:
        title = "Waterline"
        if not device_key or device_key not in data.devices:
            return message_figure(f"{title}: no device in the selection"), html.Div()
        dtype = dtype or "fp32"
        index = data.index(filters)
        if sequence_name == CUSTOM:
            if not config_ids:
                return message_figure(f"{title}: pick configurations for the custom sequence"), html.Div()
            ids = data.rows["config_id"]
            wanted = ids.cat.categories.get_indexer(config_ids)
            picked = index[np.isin(ids.cat.codes.to_numpy()[index], wanted[wanted >= 0])]
            chosen = data.take(picked, _COLUMNS).drop_duplicates("config_id")
            chosen = chosen.set_index("config_id").loc[[c for c in config_ids if c in set(chosen["config_id"])]]
            chosen = chosen.reset_index()
            layers = layers_from_rows(chosen, [f"{i + 1}. {label}" for i, label in enumerate(config_labels(chosen))])
            name = "custom sequence"
        else:
            sequence = sequence_by_name(load_sequences(), sequence_name or "")
            layers, name = list(sequence.layers), sequence.name
        # the device's measured rows of this dtype, found on codes before any column is copied,
        # and only the sizes the layers are matched on (a GEMM sequence reads no conv sizes)
        on_device = data.take(index[data.is_value("device_key", device_key, index)
                                    & data.is_value("dtype", dtype, index) & data.is_value("status", "ok", index)],
                              matched_columns(layers) if layers else _MEASURED_COLUMNS)
        device = data.devices[device_key].used
        frame, totals = waterline(layers, dtype, device, on_device)
        figure = waterline_figure(frame, totals, title=f"Waterline: {name}, {dtype} on {device_key}")
        table = frame.assign(flops=[si(v, "FLOP") for v in frame["flops"]],
                             min_bytes=[si(v, "B") for v in frame["min_bytes"]],
                             bound_time_s=[seconds(v) for v in frame["bound_time_s"]],
                             time_s=[seconds(v) for v in frame["time_s"]])
        table = table[["layer", "kernel", "flops", "min_bytes", "bound", "bound_time_s", "time_s", "measured_rows"]]
        notes = [describe_totals(totals), data.devices[device_key].note]
        return figure, (notes_list(notes), *kept_table_update(table))

    # One callback sets the dtype and device choices and draws the waterline: chained, the
    # waterline was drawn twice per filter change (once per round trip), a second in the browser.
    @app.callback(Output("waterline-dtype", "options"), Output("waterline-dtype", "value"),
                  Output("waterline-device", "options"), Output("waterline-device", "value"),
                  Output(figure_id("waterline"), "figure"), Output("waterline-totals", "children"),
                  *kept_table_outputs("waterline-table"),
                  Input("waterline-sequence", "value"), Input("waterline-dtype", "value"),
                  Input("waterline-device", "value"), Input("waterline-configs", "value"),
                  Input("filters", "data"))
    def update_waterline_section(sequence_name: str | None, dtype: str | None, device_key: str | None,
                                 config_ids: list[str] | None, filters: dict | None) -> tuple:
        choices = update_waterline_options(filters, dtype, device_key)
        if any(choice is no_update for choice in choices):  # the options failed (a message is already logged)
            figure, totals = update_waterline(sequence_name, dtype, device_key, config_ids, filters)
        else:
            figure, totals = update_waterline(sequence_name, choices[1], choices[3], config_ids, filters)
        if not isinstance(totals, tuple):  # a message: no table
            totals = (totals, *kept_table_update(None, empty=""))
        return (*choices, figure, *totals)

    url_state = register_url_state(app, KEY, URL_CONTROLS, defaults=url_defaults())
    return {"update_gap": update_gap, "update_waterline_options": update_waterline_options,
            "update_config_search": update_config_search,
            "update_waterline": update_waterline, "url_state_efficiency": url_state}


SUMMARY_BY = ("device_key", "kernel", "dtype", "bound")


def _summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Achieved fraction of the bound per (device, kernel, dtype, regime): rows, median,
    p10, p90 and the median gap, as ``perfscope.models.efficiency.efficiency_summary``
    defines them (computed here on group codes: seconds faster on a million rows)."""
    if rows.empty or "achieved_fraction" not in rows:
        return pd.DataFrame()
    fraction = numeric(rows, "achieved_fraction")
    usable = np.isfinite(fraction)
    if not usable.any():
        return pd.DataFrame()
    part = rows.iloc[np.flatnonzero(usable)] if not usable.all() else rows
    groups, table = group_codes(part, SUMMARY_BY)
    values = fraction[usable]
    counts, quantiles = group_quantiles(groups, values, [0.5, 0.1, 0.9], n_groups=len(table))
    _, gaps = group_quantiles(groups, 1.0 / values, [0.5], n_groups=len(table))
    table["n_rows"] = counts
    for j, column in enumerate(("fraction_median", "fraction_p10", "fraction_p90")):
        table[column] = [f"{v:.1%}" for v in quantiles[:, j]]
    table["gap_median"] = [f"{v:.3g}x" for v in gaps[:, 0]]
    return table[table["n_rows"] > 0].reset_index(drop=True)
