"""Overview: what the dataset holds, its provenance and its data-quality flags."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, html

from perfscope.dashboards.components import cached, data_table, figure_id, figure_panel, guard, notes_list
from perfscope.dashboards.context import DashboardContext
from perfscope.dashboards.figures import overview as figs
from perfscope.dashboards.filters import describe_filters

KEY = "overview"
PATH = "/"
NAME = "Overview"
ORDER = 0

_COLUMNS = ("dataset", "config_id", "run_id", "measured_at", "device_key", "kernel", "implementation", "dtype",
            "status", "reason", "noisy", "throttled", "energy_is_estimate", "energy_quality", "energy_method",
            "source", "host", "device_name", "cpu_model", "driver_version", "cuda_version", "torch_version",
            "triton_version", "perfscope_version", "timing_method", "cache_mode")


URL_CONTROLS: dict[str, tuple[str, str]] = {}  # no controls of its own: the shared filters only


def layout(**_query: Any) -> html.Div:
    """The overview page (the same for every app: data arrives through callbacks)."""
    return html.Div([
        html.H2("Overview"),
        html.Div(id="overview-summary"),
        html.Div([html.Div(figure_panel("overview-coverage"), className="half"),
                  html.Div(figure_panel("overview-quality"), className="half")], className="row"),
        html.H3("Statuses"),
        html.Div(id="overview-status"),
        html.H3("Rows that did not run"),
        html.P("Listed here, left out of every chart and feature (they have no time).", className="hint"),
        html.Div(id="overview-unmeasured"),
        html.H3("Provenance"),
        html.Div(id="overview-provenance"),
    ])


def register(app: Any, context: DashboardContext) -> dict[str, Any]:
    """Add the overview callbacks to ``app``."""
    data = context.data

    @app.callback(
        Output("overview-summary", "children"), Output(figure_id("overview-coverage"), "figure"),
        Output(figure_id("overview-quality"), "figure"), Output("overview-status", "children"),
        Output("overview-provenance", "children"), Output("overview-unmeasured", "children"),
        Input("filters", "data"),
    )
    @guard("children", "figure", "figure", "children", "children", "children")
    @cached(data, "update_overview")
    def update_overview(filters: dict | None) -> tuple:
        rows = data.select(filters, _COLUMNS)
        notes = [f"{len(rows):,} of {len(data.rows):,} rows selected ({describe_filters(filters)})"]
        notes += [f"dataset: {d}" for d in data.datasets]
        notes += [info.note for key, info in data.devices.items()]
        if context.model_note:
            notes.append(context.model_note)
        # the dataset's warnings (notes, skipped files) are in the shell above every page
        summary = html.Div([notes_list(notes),
                            data_table(figs.dataset_summary(rows)),
                            html.H3("Data-quality flags"), data_table(_percent(figs.quality_flags(rows), "share"))])
        return (summary, figs.coverage_figure(rows), figs.quality_figure(rows),
                data_table(figs.status_counts(rows), empty="no rows"),
                data_table(figs.provenance_table(rows), empty="no rows"),
                data_table(figs.unmeasured_rows(data.select(filters, figs.UNMEASURED_COLUMNS)),
                           empty="none: every selected row was measured"))

    return {"update_overview": update_overview}


def _percent(frame: Any, column: str) -> Any:
    frame = frame.copy()
    frame[column] = [f"{v:.1%}" if v == v else "" for v in frame[column]]
    return frame
