"""The Estimate page answers with the model the dashboard was started with: the same
latency, interval and method as ``perfscope.workflows.estimate.estimate(..., model=...)``
(what ``perfscope estimate --model`` prints)."""

from __future__ import annotations

import pytest
from imported_family import DEVICE, FAMILY, PROBLEM, imported_family  # noqa: E402 (tests/ is on sys.path)
from test_dashboard_figures import H100_KEY, dashboard_rows  # noqa: E402

from perfscope.dashboards.app import create_app
from perfscope.dashboards.data import DashboardData
from perfscope.dashboards.pages.estimate import URL_CONTROLS
from perfscope.dashboards.url_state import from_query, merge_query
from perfscope.models.forest import ForestModel
from perfscope.models.intervals import ConformalWrapper
from perfscope.models.persistence import save_bundle
from perfscope.models.roofline_model import RooflineModel
from perfscope.schema import rows_to_table
from perfscope.workflows.best_config import best_config
from perfscope.workflows.estimate import estimate
from perfscope.workflows.estimate_params import estimate_params


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
              "impl": "default", "tile_m": None, "tile_n": None, "tile_k": None, "params": "", "problem": None,
              "region": "World", "pue": 1.0}
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
    model_line = app.perfscope_callbacks["update_estimate_choices"]("gemm", ["h100-sxm"])[3]
    assert str(path) in str(model_line)
    shape_hint, devices, implementations, *_ = app.perfscope_callbacks["update_estimate_choices"]("gemm", ["h100-sxm"])
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


@pytest.fixture(scope="module")
def imported_app(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFSCOPE_HOME", str(tmp_path_factory.mktemp("home")))
        dataset, model = imported_family(tmp_path_factory.mktemp("imported"))
        yield create_app([dataset], model_path=model), model


def test_an_imported_family_offers_its_devices_problem_sizes_and_parameter_fields(imported_app):
    app, _ = imported_app
    out = app.perfscope_callbacks["update_estimate_choices"](FAMILY, ["h100-sxm"], "", None, None, "bf16")
    _, devices, implementations, _, kernels, fields, sizes, size, sizes_box, family_box, device, dtype = out
    assert dtype == "fp32"  # the family was measured in fp32
    assert FAMILY in kernels and kernels[:3] == ["gemm", "conv", "attention"]
    assert devices[0] == "cuda-nvidia-rtx-a4000" and "h100-sxm" in devices and device == devices[0]
    assert sizes == [PROBLEM] and size == PROBLEM
    assert sizes_box == {"display": "none"} and family_box == {}
    assert "kernel_tuner.dedisp" in implementations
    names = [f.children[1].id["name"] for f in fields]
    assert names == ["block_size_x", "block_size_y", "tile_size_x"]
    chosen = app.perfscope_callbacks["update_estimate_choices"](FAMILY, [], "block_size_x=4", None, "x")[5]
    assert chosen[0].children[1].value == 4 and chosen[0].children[1].options[2]["value"] == 4


def test_a_parameter_field_writes_the_text_the_url_keeps(imported_app):
    app, _ = imported_app
    write = app.perfscope_callbacks["write_estimate_params"]
    ids = [{"type": "estimate-param", "name": n} for n in ("block_size_x", "block_size_y", "tile_size_x")]
    text = write([2, 64, 1], ids, "block_size_x=1 m=3", FAMILY)  # a stale entry of another family is dropped
    assert text == "block_size_x=2 block_size_y=64 tile_size_x=1"


def test_an_imported_family_is_answered_by_the_parameter_forest_with_units(imported_app):
    app, model = imported_app
    params = "block_size_x=2 block_size_y=64 tile_size_x=1"
    fig, status, details = app.perfscope_callbacks["update_estimate"](
        1, 0, *form(est_kernel=FAMILY, est_device=DEVICE, est_dtype="fp32", params=params, problem=PROBLEM))
    expected = estimate_params(FAMILY, DEVICE, model=model, params={"block_size_x": 2, "block_size_y": 64,
                                                                   "tile_size_x": 1})
    assert f"answered by: {expected['method']}" in str(status) and str(model) in str(status)
    assert fig.data[0].x[0] == pytest.approx(expected["latency_s"])
    assert fig.data[0].error_x.array[0] == pytest.approx(expected["latency_high_s"] - expected["latency_s"])
    cells = str(details)
    assert "ms –" in cells and "interval (90%)" in cells and "model:param_forest" in cells


def test_the_best_configuration_button_works_for_an_imported_family(imported_app):
    app, model = imported_app
    params = "block_size_x=4 block_size_y=64 tile_size_x=2"
    _, status, details = app.perfscope_callbacks["update_estimate"](
        0, 1, *form(est_kernel=FAMILY, est_device=DEVICE, est_dtype="fp32", params=params, problem=PROBLEM))
    best = best_config(FAMILY, DEVICE, model=model, params={"block_size_x": 4, "block_size_y": 64, "tile_size_x": 2})
    shown = " ".join(f"{k}={v}" for k, v in best["best"]["config"].items())
    assert "best configuration" in str(details) and shown in str(details), status


def test_an_imported_family_without_a_model_says_it_needs_one(tmp_path):
    dataset, _ = imported_family(tmp_path, trees=2)
    app = create_app([dataset])
    _, status, _ = app.perfscope_callbacks["update_estimate"](
        1, 0, *form(est_kernel=FAMILY, est_device=DEVICE, params="block_size_x=1"))
    assert "need a model" in str(status)
    fields = app.perfscope_callbacks["update_estimate_choices"](FAMILY, [], "", None, None)[5]
    assert len(fields) == 3  # the dataset's parameter columns give the fields
