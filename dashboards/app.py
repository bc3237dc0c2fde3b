"""The Dash app: ``create_app`` builds it, ``serve`` runs it on 127.0.0.1.

Pages are registered from code (``dash.register_page(..., layout=...)`` with
``pages_folder=""``), so nothing depends on scanning a folder, which breaks in an
installed package. The shell around the pages holds the shared filters (kept in the URL
query string, so a view can be shared), the navigation and the exports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dash
import plotly.graph_objects as go
import plotly.io as pio
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from perfscope.dashboards.adapters import load_model
from perfscope.dashboards.components import NO_CLOUD_CONFIG, notes_list
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.data import DashboardData
from perfscope.dashboards.exports import EXPORT_ROUTE, escape_formula_cells, plotted_frame, register_export_routes
from perfscope.dashboards.figures import carbon, efficiency, overview, roofline, scaling, tiles
from perfscope.dashboards.figures.common import warm_up
from perfscope.dashboards.filters import (
    FILTER_NAMES,
    FILTERS,
    describe_filters,
    empty_filters,
    filters_from_query,
    normalise_filters,
    query_from_filters,
)
from perfscope.dashboards.pages import PAGES
from perfscope.dashboards.pages.efficiency import url_defaults
from perfscope.dashboards.pages.scaling import PAGE_DEFAULT_GROUP_BY
from perfscope.dashboards.url_state import with_page_params

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
WARM_VIEWS_MIN_ROWS = 50_000  # from this size on, the default views are computed at startup
RENDERED_PATH = "rendered-path"  # the store holding the path of the page last rendered
RENDERED_KWARG = "rendered_path"  # its name among the router's layout arguments
EXPORT_COLUMNS = (
    "device_key", "kernel", "implementation", "dtype", "cache_mode", "batch", "m", "n", "k", "conv_n", "conv_c",
    "conv_h", "conv_w", "conv_k", "conv_r", "conv_s", "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w",
    "groups", "heads", "kv_heads", "seq_q", "seq_k", "head_dim", "causal", "tile_m", "tile_n", "tile_k",
    "tile_num_warps", "tile_num_stages", "status", "reason", "time_median_ms", "time_p10_ms", "time_p90_ms",
    "time_ci_rel", "noisy", "flops", "min_bytes", "achieved_flops_per_s", "intensity_flops_per_byte",
    "bound_time_s", "bound", "gap", "energy_method", "energy_is_estimate", "energy_gross_j", "energy_net_j",
    "power_avg_w", "energy_quality", "throttled", "device_name", "host", "run_id", "config_id", "measured_at",
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1a202c; }
header { background: #1a365d; color: white; padding: 10px 24px; }
header h1 { margin: 0; font-size: 22px; display: inline-block; }
header .summary { margin-left: 16px; opacity: 0.85; font-size: 14px; }
nav { padding: 6px 24px; background: #edf2f7; border-bottom: 1px solid #cbd5e0; }
nav a { margin-right: 18px; color: #2b6cb0; text-decoration: none; font-weight: 600; }
nav a:hover { text-decoration: underline; }
.filters, .controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-end; margin: 8px 0; }
.filters { padding: 8px 24px; background: #f7fafc; border-bottom: 1px solid #e2e8f0; }
.control label { display: block; font-size: 12px; color: #4a5568; margin-bottom: 2px; }
main { padding: 8px 24px 40px 24px; }
.row { display: flex; flex-wrap: wrap; gap: 16px; }
.half { flex: 1 1 520px; min-width: 0; }
.figure-panel { margin: 8px 0 16px 0; }
.export-row { font-size: 12px; color: #4a5568; }
.export-button, .primary { font-size: 12px; padding: 4px 10px; border: 1px solid #a0aec0; border-radius: 4px;
  background: white; cursor: pointer; }
.primary { background: #2b6cb0; color: white; border-color: #2b6cb0; font-size: 14px; padding: 6px 16px; }
.table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
.table th, .table td { border: 1px solid #e2e8f0; padding: 3px 8px; text-align: left; vertical-align: top; }
.table th { background: #edf2f7; }
.notes { font-size: 13px; color: #2d3748; }
.notes.warning { color: #9c4221; }
.muted, .hint { color: #718096; font-size: 12px; }
"""

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>""" + _CSS + """</style>EARLY</head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body>
</html>"""
# plotly.js (4.8 MB, the page's largest script) requested as the page starts, not when the first
# graph is rendered (after Dash's layout, dependencies and routing round trips): its download and
# compilation overlap those. window.Plotly is a promise until it has run; dcc.Graph awaits a
# promise there (Promise.resolve(window.Plotly || load it)) and plotly.js then sets the real one.
_PLOTLY_EARLY = """<script>(function () {
  var script = document.createElement('script');
  script.src = 'PLOTLY_URL';
  script.async = true;
  window.Plotly = new Promise(function (resolve, reject) {
    script.onload = function () { resolve(window.Plotly); };
    script.onerror = function (error) { window.Plotly = undefined; reject(error); };
  });
  document.head.appendChild(script);
})();</script>"""


def _index(app: dash.Dash) -> str:
    """The page template: plotly.js loaded from the start when Dash serves it locally."""
    if not app.config.serve_locally:
        return _INDEX.replace("EARLY", "")
    url = f"{app.config.requests_pathname_prefix}_dash-component-suites/plotly/package_data/plotly.min.js"
    return _INDEX.replace("EARLY", _PLOTLY_EARLY.replace("PLOTLY_URL", url))


def create_app(datasets: Sequence[Path | str] | None = None, model_path: Path | str | None = None, *,
               data: DashboardData | None = None) -> dash.Dash:
    """The perfscope dashboard over ``datasets`` (the sample profile when None).

    ``model_path``: a model bundle from ``perfscope train`` whose predictions the tile
    explorer shows next to the measurements. ``data``: already loaded rows (tests,
    benchmarks), instead of ``datasets``. The app serves nothing until run
    (``serve``, or ``app.run(host="127.0.0.1")``).
    """
    data = data if data is not None else DashboardData.load(datasets)
    model, model_note = load_model(model_path) if model_path is not None else (None, "")
    context = DashboardContext(data=data, model=model, model_note=model_note,
                               model_path=str(model_path) if model is not None else "")
    app = dash.Dash(__name__, use_pages=True, pages_folder="", title="perfscope dashboard", update_title=None,
                    index_string=_INDEX.replace("EARLY", ""),
                    routing_callback_inputs={RENDERED_KWARG: State(RENDERED_PATH, "data")})
    app.index_string = _index(app)
    for page in PAGES:
        dash.register_page(f"perfscope.dashboards.pages.{page.KEY}", path=page.PATH, name=page.NAME,
                           title=f"perfscope: {page.NAME}", order=page.ORDER, layout=_routed_layout(page))
    app.layout = _shell(data)
    callbacks: dict[str, Any] = {}
    callbacks.update(_register_shell(app, data))
    # after each page render (the router sets the title store), remember which path is shown
    app.clientside_callback("function(_title) { return window.location.pathname; }",
                            Output(RENDERED_PATH, "data"), Input("_pages_store", "data"))
    for page in PAGES:
        callbacks.update(page.register(app, context))
    app.perfscope_callbacks = callbacks  # the registered functions, by name (tests call them)
    _warm_up(data)
    if len(data.rows) >= WARM_VIEWS_MIN_ROWS:
        _warm_default_views(callbacks)
    app.perfscope_context = context
    return app


def _routed_layout(page: Any) -> Any:
    """``page.layout`` for Dash's router, except when only the query string changed on the
    page already shown: then nothing is re-rendered (filters and page controls update the
    page through their callbacks, instead of rebuilding it and re-running every callback)."""

    def layout(**query: Any) -> Any:
        rendered = query.pop(RENDERED_KWARG, None)
        if rendered == page.PATH:
            return no_update
        return page.layout(**query)

    return layout


def _warm_default_views(callbacks: dict[str, Any]) -> None:
    """Compute each page's unfiltered default view once at startup (the results are cached
    per selection), so a large dataset's first page view does not wait for them."""
    everything = empty_filters()
    calls = [("update_overview", (everything,)), ("update_roofline", (everything, ["spec", "calibrated"])),
             ("update_gap", (everything,)),
             ("update_scaling", (everything, "flops", list(PAGE_DEFAULT_GROUP_BY))),
             ("update_tile_options", (everything, None, None, None, None))]
    for name, args in calls:
        if name in callbacks:
            callbacks[name](*args)
    # the waterline as the page first asks for it: the default sequence on the device and dtype its
    # options callback picks, no custom configurations
    if "update_waterline" in callbacks:
        picked = callbacks["update_waterline_options"](everything, url_defaults()["wl_dtype"], None)
        if isinstance(picked, tuple) and len(picked) == 4 and picked[3] is not None:
            callbacks["update_waterline"](url_defaults()["sequence"], picked[1], picked[3], [], everything)
    # the tile explorer's first choices, as its option callback picks them
    options = callbacks["update_tile_options"](everything, None, None, None, None)
    if isinstance(options, tuple) and len(options) == 8 and options[1] is not None:
        _, implementation, _, shape, _, dtype, _, device = options
        callbacks["update_tiles"](everything, implementation, shape, dtype, device, "time")
        callbacks["update_parameter_space"](everything, implementation, shape, dtype, device, None, None)


def _warm_up(data: DashboardData, sample_rows: int = 300) -> None:
    """Run every figure function once on a few rows, so plotly's lazily imported
    validators load at startup instead of on the first page served."""
    warm_up()
    rows = data.rows.head(sample_rows)
    steps = [lambda: overview.coverage_figure(rows), lambda: overview.quality_figure(rows),
             lambda: roofline.roofline_figure(rows), lambda: efficiency.latency_flops_figure(rows),
             lambda: efficiency.gap_figure(rows), lambda: scaling.scaling_view(rows),
             lambda: carbon.carbon_figure(carbon.carbon_frame(rows, intensity_gco2e_per_kwh=400.0)),
             lambda: tiles.tile_heatmap_figure(rows)]
    for step in steps:
        try:
            result = step()
            (result[0] if isinstance(result, tuple) else result).to_json()
        except Exception:  # noqa: BLE001 - a warm-up failure must not stop the dashboard; the page will say why
            log.debug("warm-up step failed", exc_info=True)


def serve(datasets: Sequence[Path | str] | None = None, model_path: Path | str | None = None,
          host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Build the app and serve it (blocking) on ``host``:``port``, without Dash's debug mode."""
    app = create_app(datasets, model_path)
    app.run(host=host, port=port, debug=False)


def _shell(data: DashboardData) -> html.Div:
    """Header, navigation, shared filters, exports and the page container."""
    filters = []
    for name, label, _column in FILTERS:
        options = [{"label": v, "value": v} for v in data.options.get(name, [])]
        filters.append(html.Div([html.Label(label), dcc.Dropdown(id=f"filter-{name}", options=options, value=[],
                                                                 multi=True, placeholder="all")],
                                className="control", style={"width": "190px"}))
    warnings = list(data.notes) + [f"skipped file: {p}" for p in data.problems]
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="filters", data=empty_filters()),
        dcc.Store(id=RENDERED_PATH),
        dcc.Download(id="download-html"),
        dcc.Download(id="download-plotted"),
        dcc.Store(id="svg-exported"),
        html.Header([html.H1("perfscope"), html.Span(data.summary_line(), className="summary")]),
        html.Nav([dcc.Link(page.NAME, href=page.PATH, id=f"nav-{page.KEY}") for page in PAGES]),
        html.Div([*filters,
                  html.Div([html.Span("Download rows: ", className="muted"),
                            html.A("CSV", id="export-csv", href=EXPORT_ROUTE + ".csv", className="export-button",
                                   download="perfscope-rows.csv"), " ",
                            html.A("Parquet", id="export-parquet", href=EXPORT_ROUTE + ".parquet",
                                   className="export-button", download="perfscope-rows.parquet"),
                            html.Div(id="selection-count", className="muted")], className="control")],
                 className="filters"),
        html.Main([notes_list(warnings, kind="warning"), dash.page_container]),
    ])


def filter_sync(trigger: Any, search: str | None, values: Sequence[Any], current: dict | None,
                data: DashboardData) -> tuple:
    """The URL sets the dropdowns (on load, a shared link, navigation); the dropdowns set
    the URL (without reloading). Returns (filters store, url search, one value per filter
    dropdown, one href per navigation link, the CSV and Parquet export links, selection
    count); ``no_update`` where nothing
    changed, so the pages do not recompute for nothing.
    """
    from_url = trigger in (None, "url")
    if from_url:
        filters = filters_from_query(search)
    else:
        filters = normalise_filters(dict(zip(FILTER_NAMES, values, strict=True)))
    unchanged = normalise_filters(current) == filters
    query = query_from_filters(filters)
    hrefs = [page.PATH + query for page in PAGES]
    hrefs += [EXPORT_ROUTE + ".csv" + query, EXPORT_ROUTE + ".parquet" + query]
    count = f"{data.count(filters):,} of {len(data.rows):,} rows selected ({describe_filters(filters)})"
    if from_url:
        # only dropdowns that differ are set (each one set re-renders in the browser)
        shown = normalise_filters(dict(zip(FILTER_NAMES, values, strict=True)))
        dropdowns = [no_update if shown.get(name) == filters[name] else filters[name] for name in FILTER_NAMES]
        return (no_update if unchanged else filters, no_update, *dropdowns, *hrefs, count)
    if unchanged:
        return (no_update, no_update, *[no_update] * len(FILTER_NAMES), *hrefs, count)
    return (filters, with_page_params(query, search), *[no_update] * len(FILTER_NAMES), *hrefs, count)


def _register_shell(app: dash.Dash, data: DashboardData) -> dict[str, Any]:
    """Filter <-> URL synchronisation, navigation links and exports."""
    filter_inputs = [Input(f"filter-{name}", "value") for name in FILTER_NAMES]
    filter_outputs = [Output(f"filter-{name}", "value") for name in FILTER_NAMES]
    nav_outputs = [Output(f"nav-{page.KEY}", "href") for page in PAGES]
    nav_outputs += [Output("export-csv", "href"), Output("export-parquet", "href")]
    register_export_routes(app.server, data, EXPORT_COLUMNS)

    @app.callback(Output("filters", "data"), Output("url", "search"), *filter_outputs, *nav_outputs,
                  Output("selection-count", "children"),
                  Input("url", "search"), *filter_inputs, State("filters", "data"))
    def sync_filters(search: str | None, *args: Any) -> tuple:
        """One callback owns the filters (see ``filter_sync``)."""
        *values, current = args
        return filter_sync(ctx.triggered_id, search, values, current, data)

    @app.callback(Output("download-html", "data"), Input({"type": "export-html", "name": ALL}, "n_clicks"),
                  State({"type": "figure", "name": ALL}, "figure"), State({"type": "figure", "name": ALL}, "id"),
                  prevent_initial_call=True)
    def export_html(clicks: list[int | None], figures: list[dict | None], ids: list[dict]) -> dict:
        """The clicked panel's figure as a self-contained HTML file (plotly.js inlined)."""
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(clicks or []):
            raise PreventUpdate
        name = trigger.get("name")
        for figure, fid in zip(figures, ids, strict=True):
            if fid.get("name") == name and figure:
                html_text = pio.to_html(go.Figure(figure), include_plotlyjs=True, full_html=True,
                                        config=NO_CLOUD_CONFIG)
                return {"content": html_text, "filename": f"perfscope-{name}.html", "type": "text/html"}
        raise PreventUpdate

    @app.callback(Output("download-plotted", "data"), Input({"type": "export-plotted", "name": ALL}, "n_clicks"),
                  State({"type": "figure", "name": ALL}, "figure"), State({"type": "figure", "name": ALL}, "id"),
                  prevent_initial_call=True)
    def export_plotted(clicks: list[int | None], figures: list[dict | None], ids: list[dict]) -> dict:
        """The clicked panel's plotted points as CSV: one row per point of every trace."""
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(clicks or []):
            raise PreventUpdate
        for figure, fid in zip(figures, ids, strict=True):
            if fid.get("name") == trigger.get("name") and figure:
                frame = escape_formula_cells(plotted_frame(figure))
                return {"content": frame.to_csv(index=False), "filename": f"perfscope-{fid['name']}-plotted.csv",
                        "type": "text/csv"}
        raise PreventUpdate

    # SVG: drawn by plotly.js in the browser (no server-side image engine needed)
    app.clientside_callback(
        """function(clicks) {
            const t = window.dash_clientside.callback_context.triggered;
            if (!t.length || !t[0].value) { return window.dash_clientside.no_update; }
            const name = JSON.parse(t[0].prop_id.split('.')[0]).name;
            const graph = document.getElementById(JSON.stringify({name: name, type: 'figure'}));
            const plot = graph && graph.querySelector('.js-plotly-plot');
            if (plot) { Plotly.downloadImage(plot, {format: 'svg', filename: 'perfscope-' + name}); }
            return name;
        }""",
        Output("svg-exported", "data"), Input({"type": "export-svg", "name": ALL}, "n_clicks"),
        prevent_initial_call=True)

    return {"sync_filters": sync_filters, "export_html": export_html, "export_plotted": export_plotted}

