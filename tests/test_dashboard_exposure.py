"""What the dashboard exposes and survives: host/port checks, no cloud upload button,
formula-safe CSV, and perfscope's own failed rows (a 10^8 GEMM stored as ``error``)."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
from test_dashboard_figures import dashboard_rows, measurement  # noqa: E402 (tests/ is on sys.path)

from perfscope.dashboards.components import GRAPH_CONFIG_BASE, figure_panel
from perfscope.dashboards.data import DashboardData
from perfscope.dashboards.exports import csv_chunks, escape_formula_cells
from perfscope.dashboards.figures.overview import unmeasured_rows
from perfscope.schema import rows_to_table


def perfscope(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfscope", *args], capture_output=True, text=True, timeout=120)


def test_port_out_of_range_is_one_line_exit_2():
    result = perfscope("dashboard", "--port", "70000")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_one_line_exit_2_and_other_hosts_warn():
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        local = perfscope("dashboard", "--port", str(port))
        exposed = perfscope("dashboard", "--host", "0.0.0.0", "--port", str(port))
    assert local.returncode == 2 and local.stderr.strip().count("\n") == 0
    assert "in use" in local.stderr and "warning" not in local.stderr
    assert exposed.returncode == 2 and "no authentication" in exposed.stderr


def test_no_cloud_button_in_any_graph():
    assert GRAPH_CONFIG_BASE["showSendToCloud"] is False
    assert GRAPH_CONFIG_BASE["showEditInChartStudio"] is False
    assert "sendDataToCloud" in GRAPH_CONFIG_BASE["modeBarButtonsToRemove"]
    graph = figure_panel("x").children[0].children
    assert graph.config["showSendToCloud"] is False


def test_formula_cells_are_escaped_and_numbers_are_not():
    frame = pd.DataFrame({"kernel": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "gemm", None],
                          "value": [-1.0, 2.0, -3.0, 4.0, 5.0, 6.0]})
    frame["cat"] = pd.Categorical(["-x", "ok", "ok", "=1", "ok", "ok"])
    out = escape_formula_cells(frame)
    assert out["kernel"].tolist()[:5] == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "gemm"]
    assert out["value"].tolist()[0] == -1.0
    assert out["cat"].tolist()[:4] == ["'-x", "ok", "ok", "'=1"]
    assert frame["kernel"][0].startswith("=")  # the loaded data is not changed


def rows_with_a_failed_huge_gemm() -> pd.DataFrame:
    failed = measurement(m=10**8, n=10**8, k=10**8, status="error", reason="=cmd|' /C calc'!A0",
                         time_median_ms=None, samples_ms=[])
    return rows_to_table([*dashboard_rows(), failed]).to_pandas()


def test_a_stored_error_row_of_a_huge_gemm_is_listed_not_featurised():
    data = DashboardData.from_rows(rows_with_a_failed_huge_gemm())
    failed = data.rows["status"] == "error"
    assert failed.sum() == 1
    assert np.isnan(data.rows.loc[failed, "flops"]).all() and np.isnan(data.rows.loc[failed, "bound_time_s"]).all()
    assert data.rows.loc[~failed, "bound_time_s"].notna().any()
    listed = unmeasured_rows(data.rows)
    assert set(listed["status"]) == {"error", "unsupported"}  # the fixture has one unsupported row
    assert "100000000" in listed.loc[listed["status"] == "error", "shape"].iloc[0]
    text = "".join(csv_chunks(data, "", ["status", "reason", "kernel"]))
    assert "'=cmd|" in text and "\n=cmd" not in text and ",=cmd" not in text


def test_the_app_serves_a_dataset_with_a_failed_huge_gemm(tmp_path):
    from perfscope.dashboards.app import create_app

    app = create_app(data=DashboardData.from_rows(rows_with_a_failed_huge_gemm()))
    out = app.perfscope_callbacks["update_overview"](None)
    assert "error" in str(out[-1])
    response = app.server.test_client().get("/_perfscope/export.csv")
    assert response.status_code == 200
    assert len(pd.read_csv(io.StringIO(response.get_data(as_text=True)))) == len(dashboard_rows()) + 1


def test_a_model_that_cannot_predict_leaves_the_page_drawn(monkeypatch):
    from perfscope.dashboards import adapters

    def broken(bundle, rows):
        raise AttributeError("'RooflineModel' object has no attribute 'estimator_'")

    monkeypatch.setattr("perfscope.dashboards.adapters.estimate_rows", broken)
    predicted, why = adapters.predict_latency_s(object(), pd.DataFrame({"m": [1]}))
    assert predicted is None and "no predictions from the model" in why


def test_csv_of_what_a_chart_plotted_has_every_point_with_its_row_count():
    import json

    from perfscope.dashboards.exports import plotted_frame
    from perfscope.dashboards.figures import roofline

    data = DashboardData.from_rows(rows_to_table(dashboard_rows()).to_pandas())
    fig = roofline.roofline_figure(data.rows, max_points=5)  # binned: each point stands for several rows
    frame = plotted_frame(json.loads(fig.to_json()))  # as the browser sends it back (typed arrays included)
    points = frame[frame["trace"].str.contains(" fp32|bf16") & (frame["type"] == "scatter")
                   & frame["customdata_0"].notna()]
    assert len(points) and np.isfinite(points["x"].astype(float)).all()
    assert points["customdata_0"].sum() >= 5  # the row counts of the binned points
    assert "rows binned" in " ".join(points["text"].astype(str))
