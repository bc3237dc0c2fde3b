"""The Estimate page answers with the model the dashboard was started with: the same
latency, interval and method as ``perfscope.workflows.estimate.estimate(..., model=...)``
(what ``perfscope estimate --model`` prints)."""

from __future__ import annotations

import pytest
from test_dashboard_figures import H100_KEY, dashboard_rows  # noqa: E402 (tests/ is on sys.path)

from perfscope.dashboards.app import create_app
from perfscope.dashboards.data import DashboardData
from perfscope.dashboards.pages.estimate import URL_CONTROLS
from perfscope.dashboards.url_state import from_query, merge_query
from perfscope.models.forest import ForestModel
from perfscope.models.intervals import ConformalWrapper
from perfscope.models.persistence import save_bundle
from perfscope.models.roofline_model import RooflineModel
from perfscope.schema import rows_to_table
from perfscope.workflows.estimate import estimate


@pytest.fixture(scope="module")
def model_app(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFSCOPE_HOME", str(tmp_path_factory.mktemp("home")))
        rows = rows_to_table(dashboard_rows()).to_pandas()
        ok = rows[(rows["status"] == "ok") & (rows["device_key"] == H100_KEY)].reset_index(drop=True)
        models = {"forest": ConformalWrapper(ForestModel(n_estimators=8), n_splits=3).fit(ok),
                  "roofline": ConformalWrapper(RooflineModel(), n_splits=3).fit(ok)}
        path = save_bundle(tmp_path_factory.mktemp("model") / "bundle", models, rows=ok)
        app = create_app(data=DashboardData.from_rows(rows), model_path=path)
        yield app, path


def form(**overrides):
    values = {"est_kernel": "gemm", "est_device": "h100-sxm", "est_dtype": "bf16", "shape": "m=2048 n=2048 k=2048",
              "impl": "default", "tile_m": None, "tile_n": None, "tile_k": None, "params": "", "region": "World",
              "pue": 1.0}
    values.update(overrides)
    return [values[key] for key in URL_CONTROLS]


def test_estimate_page_gives_the_cli_answer_with_the_loaded_model(model_app):
    app, path = model_app
    fig, status, details = app.perfscope_callbacks["update_estimate"](1, 0, *form(impl="torch.matmul"))
    expected = estimate("gemm", "h100-sxm", "bf16", model=path, implementation="torch.matmul", m=2048, n=2048,
                        k=2048)
    assert expected["method"].startswith("model:forest")
    assert f"answered by: {expected['method']}" in str(status) and str(path) in str(status)
    assert fig.data[0].x[0] == pytest.approx(expected["latency_s"])
    assert fig.data[0].error_x.array[0] == pytest.approx(expected["latency_high_s"] - expected["latency_s"])
    assert "roofline fallback" not in str(status)


def test_the_tile_fields_reach_the_model(model_app):
    app, path = model_app
    call = app.perfscope_callbacks["update_estimate"]
    fig, _, details = call(1, 0, *form(tile_m=128, tile_n=128, tile_k=32, impl="triton.matmul"))
    expected = estimate("gemm", "h100-sxm", "bf16", model=path, implementation="triton.matmul", m=2048, n=2048,
                        k=2048, tile_m=128, tile_n=128, tile_k=32)
    assert fig.data[0].x[0] == pytest.approx(expected["latency_s"])
    assert "128x128x32" in str(details)
    _, status, best = call(0, 1, *form(impl="triton.matmul"))
    assert "best configuration" in str(best), status


def test_the_model_line_says_what_answers(model_app):
    app, path = model_app
    *_, model_line = app.perfscope_callbacks["update_estimate_choices"]("gemm", ["h100-sxm"])
    assert str(path) in str(model_line)
    shape_hint, devices, implementations, _ = app.perfscope_callbacks["update_estimate_choices"]("gemm", ["h100-sxm"])
    assert set(devices[:2]) == {H100_KEY, "cpu-test"} and "h100-sxm" in devices  # the dataset's own first
    assert "torch.matmul" in implementations


def test_estimate_controls_round_trip_through_the_url():
    search = merge_query("?dtype=bf16", {"est_kernel": "conv", "tile_m": 64, "params": "a=1", "pue": 1.2},
                         list(URL_CONTROLS))
    assert search.startswith("?dtype=bf16&")
    from urllib.parse import parse_qsl

    query = dict(parse_qsl(search.lstrip("?")))
    assert from_query(query, "est_kernel", "gemm", choices=("gemm", "conv")) == "conv"
    assert from_query(query, "tile_m", None, kind=int) == 64
    assert from_query(query, "pue", 1.0, kind=float) == 1.2
    assert from_query({"tile_m": "x"}, "tile_m", None, kind=int) is None  # a bad link falls back
    from perfscope.dashboards.pages import estimate as page

    layout = str(page.layout(**query))
    assert "'conv'" in layout and "a=1" in layout
