"""Small Dash building blocks shared by the pages: figure panels, tables, notes, guards."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import dash_ag_grid as dag  # at import time: Dash refuses component libraries first imported inside a callback
import pandas as pd
from dash import Output, ctx, dcc, html, no_update
from dash.exceptions import MissingCallbackContextException, PreventUpdate

from perfscope.dashboards.figures.common import message_figure, placeholder_figure
from perfscope.dashboards.units import format_cell, grid_value_formatter
from perfscope.errors import PerfscopeError

log = logging.getLogger(__name__)

# No "share chart / edit in Chart Studio" button: it offers to upload profiling data to Plotly's cloud.
NO_CLOUD_CONFIG = {"displaylogo": False, "showSendToCloud": False, "showEditInChartStudio": False,
                   "showLink": False, "modeBarButtonsToRemove": ["sendDataToCloud", "editInChartStudio"]}
GRAPH_CONFIG_BASE = {**NO_CLOUD_CONFIG, "responsive": True}
DEFAULT_HEIGHT_PX = 480


def figure_id(name: str) -> dict[str, str]:
    """The id of a figure panel's graph (pattern-matched by the HTML export)."""
    return {"type": "figure", "name": name}


def export_id(name: str) -> dict[str, str]:
    """The id of a figure panel's "HTML" export button."""
    return {"type": "export-html", "name": name}


def figure_panel(name: str, *, height: int | None = None) -> html.Div:
    """A graph with PNG export in its modebar and an HTML export button under it."""
    config = dict(GRAPH_CONFIG_BASE, toImageButtonOptions={"format": "png", "filename": f"perfscope-{name}",
                                                           "scale": 2})
    style = {"height": f"{height or DEFAULT_HEIGHT_PX}px"}
    return html.Div([
        dcc.Loading(dcc.Graph(id=figure_id(name), config=config, style=style, figure=placeholder_figure())),
        html.Div([html.Button("Download figure (HTML)", id=export_id(name), n_clicks=0, className="export-button"),
                  " ",
                  html.Button("SVG", id={"type": "export-svg", "name": name}, n_clicks=0, className="export-button",
                              title="the figure as a vector image"),
                  " ",
                  html.Button("CSV of what is plotted", id={"type": "export-plotted", "name": name}, n_clicks=0,
                              className="export-button",
                              title="every trace's points as drawn (binned points as drawn, with their row counts)"),
                  html.Span(" PNG: camera icon in the figure's toolbar", className="hint")],
                 className="export-row"),
    ], className="figure-panel")


MAX_TABLE_ROWS = 5_000  # rows sent to a table (sortable and filterable in the browser)


def data_table(frame: pd.DataFrame | None, *, max_rows: int = MAX_TABLE_ROWS, empty: str = "nothing to show") -> Any:
    """A sortable, filterable table (dash-ag-grid) of ``frame``: numbers written with their
    units by column name (``units.format_cell``), at most ``max_rows`` rows sent."""
    if frame is None or frame.empty:
        return html.Div(empty, className="muted")
    records, columns, height, note = _grid_content(frame, max_rows)
    extra = [html.Div(note, className="muted")] if note else []
    return html.Div([dag.AgGrid(rowData=records, columnDefs=columns, dashGridOptions=GRID_OPTIONS,
                                style={"height": f"{height}px"}, className="ag-theme-alpine"), *extra])


GRID_OPTIONS = {"rowHeight": 28, "headerHeight": 34, "enableCellTextSelection": True}


def kept_table(grid_id: str) -> html.Div:
    """A table that a callback refills through ``kept_table_update`` (its rows, columns and
    height): the browser keeps the grid and updates it, where new ``children`` would build a
    new grid on every update (100-200 ms each in a browser without a GPU)."""
    return html.Div([dag.AgGrid(id=grid_id, rowData=[], columnDefs=[], dashGridOptions=GRID_OPTIONS,
                                style={"display": "none"}, className="ag-theme-alpine"),
                     html.Div(id=f"{grid_id}-note", className="muted")])


def kept_table_outputs(grid_id: str) -> list[Any]:
    """The callback outputs of a ``kept_table``, in ``kept_table_update``'s order."""
    return [Output(grid_id, "rowData"), Output(grid_id, "columnDefs"), Output(grid_id, "style"),
            Output(f"{grid_id}-note", "children")]


def kept_table_update(frame: pd.DataFrame | None, *, max_rows: int = MAX_TABLE_ROWS,
                      empty: str = "nothing to show") -> tuple[list, list, dict, str]:
    """(rows, column definitions, style, note) of ``frame`` for a ``kept_table``; an empty
    frame hides the grid and says ``empty``."""
    if frame is None or frame.empty:
        return [], [], {"display": "none"}, empty
    records, columns, height, note = _grid_content(frame, max_rows)
    return records, columns, {"height": f"{height}px"}, note


def _grid_content(frame: pd.DataFrame, max_rows: int) -> tuple[list[dict], list[dict], int, str]:
    """(records, column definitions, height in px, a note when rows were left out)."""
    shown = frame.head(max_rows)
    fields = [f"c{i}" for i in range(len(shown.columns))]  # grid fields: no dots or spaces from headers
    names = [str(c) for c in shown.columns]
    numeric_columns = {name for name, dtype in zip(names, shown.dtypes, strict=True) if dtype.kind in "iuf"}
    records = []
    for row in shown.itertuples(index=False):
        record = {}
        for field, name, value in zip(fields, names, row, strict=True):
            if name in numeric_columns:  # numbers stay numbers (they sort as numbers), written with units
                record[field] = None if value is None or value != value else value
            else:
                record[field] = format_cell(name, value)
        records.append(record)
    # widths from the text, server-side: ag-grid's autoSize measures every rendered cell in
    # the DOM (forced layouts: a few hundred ms per table in a browser without a GPU)
    widths = [_column_width_px(name, [record[field] for record in records[:WIDTH_SAMPLE_ROWS]],
                               numeric=name in numeric_columns) for field, name in zip(fields, names, strict=True)]
    columns = [{"field": field, "headerName": name, "sortable": True, "resizable": True, "width": width,
                "filter": "agNumberColumnFilter" if name in numeric_columns else True,
                **({"valueFormatter": grid_value_formatter(name)} if name in numeric_columns else {})}
               for field, name, width in zip(fields, names, widths, strict=True)]
    note = f"the first {max_rows:,} of {len(frame):,} rows" if len(frame) > max_rows else ""
    return records, columns, min(36 + 28 * len(shown) + 4, 420), note


WIDTH_SAMPLE_ROWS = 200  # rows whose text sets a column's width
CHAR_PX, PAD_PX, MAX_COLUMN_PX = 8, 34, 420  # about 8 px per character at the grid's 14 px font


def _column_width_px(name: str, cells: Sequence[Any], *, numeric: bool) -> int:
    """A column wide enough for its header and its longest cell (numbers are written with
    units in the browser: about 10 characters)."""
    longest = 10 if numeric else max((len(str(c)) for c in cells if c is not None), default=0)
    return min(MAX_COLUMN_PX, PAD_PX + CHAR_PX * max(len(name), longest))


def notes_list(notes: Sequence[str], *, kind: str = "note") -> html.Div:
    """Notes (or warnings with ``kind="warning"``) as a list; nothing when empty."""
    notes = [n for n in notes if n]
    if not notes:
        return html.Div()
    return html.Div(html.Ul([html.Li(n) for n in notes]), className=f"notes {kind}")


def control(label: str, component: Any, *, width: str = "220px") -> html.Div:
    """A labelled control."""
    return html.Div([html.Label(label), component], className="control", style={"width": width})


def cached(data: Any, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Keep a page callback's results per argument values (``DashboardData.cached``): going
    back to a selection, or the first view of a page already computed, costs nothing."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            key = json.dumps(args, sort_keys=True, default=str)
            return data.cached(name, None, lambda: fn(*args), key)

        return wrapper

    return decorate


def guard(*kinds: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn an exception inside a callback into messages for its outputs, never a traceback.

    ``kinds`` names each output: "figure" (a message figure), "children" (a text block),
    "data" (None), anything else (``dash.no_update``). perfscope's own errors show their
    message; any other exception is logged with its traceback server-side and shown as
    its type and message.
    """
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except PerfscopeError as exc:
                message = str(exc)
            except Exception as exc:  # noqa: BLE001 - a page shows a message, the log keeps the traceback
                if isinstance(exc, PreventUpdate):
                    raise
                log.exception("dashboard callback %s failed", fn.__name__)
                message = f"could not draw this view: {type(exc).__name__}: {exc}"
            out = []
            for kind in kinds:
                if kind == "figure":
                    out.append(message_figure(message))
                elif kind == "children":
                    out.append(html.Div(message, className="notes warning"))
                elif kind == "data":
                    out.append(None)
                else:
                    out.append(no_update)
            return out[0] if len(out) == 1 else tuple(out)

        return wrapper

    return decorate


def triggered_id() -> Any:
    """The id of the input that fired the running callback (None outside a callback: tests call them directly)."""
    try:
        return ctx.triggered_id
    except MissingCallbackContextException:
        return None
