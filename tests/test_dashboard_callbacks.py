"""The dashboard app in-process: the factory, page registration, and every callback
called directly (the functions the app registered), plus Dash's HTTP endpoints."""

from __future__ import annotations

import csv
import io
import sys

import dash
import pandas as pd
import pytest
from dash._callback_context import context_value
from dash._utils import AttributeDict
from dash.exceptions import PreventUpdate
from test_dashboard_figures import H100_KEY, SIZES, TILES, dashboard_rows  # noqa: E402 (tests/ is on sys.path)

from perfscope.dashboards import app as app_module
from perfscope.dashboards.adapters import parse_params, parse_shape, run_estimate
from perfscope.dashboards.components import guard
from perfscope.dashboards.data import find_sample_datasets
from perfscope.dashboards.figures.common import is_message, message_text
from perfscope.dashboards.filters import FILTER_NAMES, empty_filters
from perfscope.dashboards.pages import PAGES
from perfscope.dashboards.pages.estimate import URL_CONTROLS
from perfscope.errors import InvalidInputError
from perfscope.store import ProfileStore

ALL = empty_filters()


@pytest.fixture(scope="module", autouse=True)
def no_calibrated_profiles(tmp_path_factory):
    """Device resolution must not see profiles calibrated on this machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFSCOPE_HOME", str(tmp_path_factory.mktemp("perfscope-home")))
        yield


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "profile"
    ProfileStore(path, create=True).append(dashboard_rows())
    return path


@pytest.fixture(scope="module")
def app(dataset):
    return app_module.create_app([dataset])


@pytest.fixture(scope="module")
def cb(app):
    return app.perfscope_callbacks


def triggered(prop_id: str, value=None):
    """Run a callback as if ``prop_id`` ("id.prop" or a JSON id ".prop") had changed."""
    return context_value.set(AttributeDict(triggered_inputs=[{"prop_id": prop_id, "value": value}]))


def figures(output) -> list:
    return [o for o in (output if isinstance(output, tuple) else (output,)) if hasattr(o, "to_plotly_json")
            and hasattr(o, "layout")]


def test_factory_registers_every_page_from_code(app):
    paths = {page["path"] for page in dash.page_registry.values()}
    assert {"/", "/roofline", "/efficiency", "/scaling", "/carbon", "/tiles", "/estimate"} <= paths
    assert app.use_pages and not app.pages_folder  # no folder scan
    names = set(app.perfscope_callbacks)
    assert {"sync_filters", "export_html", "update_overview", "update_roofline", "update_gap",
            "update_waterline", "update_scaling", "update_carbon", "update_tiles", "update_estimate"} <= names


def test_page_layouts_need_no_app_and_accept_query_arguments():
    for page in PAGES:
        assert page.layout() is not None
        assert page.layout(dtype="fp32") is not None


def test_http_endpoints_serve_the_shell(app):
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200 and b"filter-dtype" in layout.data
    assert client.get("/_dash-dependencies").status_code == 200
    assert client.get("/roofline?dtype=bf16").status_code == 200


def test_the_page_requests_the_local_plotly_js_from_its_start(app):
    import re

    client = app.server.test_client()
    head = client.get("/").data.decode().split("</head>")[0]
    urls = re.findall(r"script\.src = '([^']+)'", head)
    assert urls == ["/_dash-component-suites/plotly/package_data/plotly.min.js"]  # local, no CDN
    script = client.get(urls[0])
    assert script.status_code == 200 and len(script.data) > 1_000_000


def test_serve_defaults_to_localhost():
    import inspect

    from perfscope import dashboards

    assert inspect.signature(app_module.serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(dashboards.serve).parameters["host"].default == "127.0.0.1"


# ---- shared filters and the URL -----------------------------------------------------------

def test_url_sets_the_filters_and_links(app, cb):
    token = triggered("url.search", "?dtype=bf16&device=" + H100_KEY)
    try:
        out = cb["sync_filters"]("?dtype=bf16&device=" + H100_KEY, *([[]] * len(FILTER_NAMES)), ALL)
    finally:
        context_value.reset(token)
    store, search, *rest = out
    dropdowns = dict(zip(FILTER_NAMES, rest[:len(FILTER_NAMES)], strict=True))
    hrefs = rest[len(FILTER_NAMES):len(FILTER_NAMES) + len(PAGES)]
    assert store["dtype"] == ["bf16"] and store["device"] == [H100_KEY]
    assert search is dash.no_update  # the URL already says it
    assert dropdowns["dtype"] == ["bf16"]
    assert all(href.endswith("?device=" + H100_KEY + "&dtype=bf16") for href in hrefs)
    assert "dtype=bf16" in rest[-1]


def test_dropdowns_set_the_url_and_unchanged_filters_do_nothing(cb):
    values = [[] for _ in FILTER_NAMES]
    values[FILTER_NAMES.index("dtype")] = ["fp32"]
    token = triggered("filter-dtype.value", ["fp32"])
    try:
        store, search, *_ = cb["sync_filters"]("", *values, ALL)
        again = cb["sync_filters"]("", *values, store)
    finally:
        context_value.reset(token)
    assert store["dtype"] == ["fp32"] and search == "?dtype=fp32"
    assert again[0] is dash.no_update and again[1] is dash.no_update


def test_filter_sync_on_first_load_without_query_changes_nothing(app):
    out = app_module.filter_sync(None, "", [[]] * len(FILTER_NAMES), ALL, app.perfscope_context.data)
    assert out[0] is dash.no_update and out[1] is dash.no_update


# ---- pages ---------------------------------------------------------------------------------

def test_overview_counts_follow_the_filters(cb, app):
    total = len(app.perfscope_context.data.rows)
    summary, coverage, quality, status, provenance, unmeasured = cb["update_overview"](ALL)
    assert f"{total} of {total} rows" in str(summary)
    assert not is_message(coverage) and not is_message(quality)
    assert "unsupported" in str(status) and "unsupported" in str(unmeasured)
    bf16 = cb["update_overview"]({"dtype": ["bf16"]})
    n_bf16 = int((app.perfscope_context.data.rows["dtype"] == "bf16").sum())
    assert f"{n_bf16} of {total} rows" in str(bf16[0])


def test_roofline_ceilings_follow_the_source_choice(cb):
    fig, notes = cb["update_roofline"]({"device": [H100_KEY]}, ["spec", "calibrated"])
    assert any("(spec sheet)" in (t.name or "") for t in fig.data)
    assert "spec-sheet peaks of h100-sxm" in str(notes)
    bare, _ = cb["update_roofline"]({"device": [H100_KEY]}, [])
    assert not any("(spec sheet)" in (t.name or "") for t in bare.data)


def test_filter_with_no_rows_gives_messages_everywhere(cb):
    none = {"device": ["no-such-device"]}
    for fig in figures(cb["update_roofline"](none, ["spec"])) + figures(cb["update_gap"](none)) \
            + figures(cb["update_overview"](none)):
        assert is_message(fig)
        assert "no rows" in message_text(fig)


def test_gap_page(cb):
    latency, gap, table, summary = cb["update_gap"]({"device": [H100_KEY]})
    assert not is_message(latency) and not is_message(gap)
    # the tables are grids the page keeps: their rows, columns, style and note are sent
    rows, columns, style, note = table
    assert any("triton.matmul" in str(row.values()) for row in rows) and "display" not in style and note == ""
    assert "fraction_median" in [c["headerName"] for c in summary[1]]
    _, _, nothing, _ = cb["update_gap"]({"device": ["no-such-device"]})
    assert nothing == ([], [], {"display": "none"}, "no bound")


def test_waterline_preset_and_custom_sequences(cb, app):
    options = cb["update_waterline_options"](ALL, None, None)
    dtypes, dtype, devices, device = options
    assert set(dtypes) == {"fp32", "bf16", "fp16"} and H100_KEY in devices
    every = cb["update_config_search"](None, ALL, [])
    found = cb["update_config_search"]("BF16 2048x2048", ALL, [])
    assert found and all("bf16" in o["label"] and "2048x2048" in o["label"] for o in found)
    assert len({o["label"] for o in every}) == len(every)  # labels tell configurations apart
    kept = cb["update_config_search"]("no-such-thing", ALL, [every[0]["value"]])
    assert [o["value"] for o in kept] == [every[0]["value"]]  # the chosen ones stay listed
    fig, totals = cb["update_waterline"]("Transformer MLP (d_model 1024, 4x, 2048 tokens)", "bf16", H100_KEY, [], ALL)
    assert not is_message(fig) and "fused bound" in str(totals)
    rows = app.perfscope_context.data.rows
    picked = rows[(rows["device_key"] == H100_KEY) & (rows["m"] == 512) & rows["tile_m"].isna()
                  & (rows["dtype"] == "fp32")]["config_id"].astype(str).tolist()
    fig, totals = cb["update_waterline"]("__custom__", "fp32", H100_KEY, picked * 2, ALL)
    assert not is_message(fig)
    assert "2 layer(s) measured" in str(totals)
    empty, _ = cb["update_waterline"]("__custom__", "fp32", H100_KEY, [], ALL)
    assert "pick configurations" in message_text(empty)


def test_scaling_groups_tiles_apart_and_fixes_pooled_sizes(cb, app):
    from perfscope.dashboards.pages.scaling import PAGE_DEFAULT_GROUP_BY, fix_other_sizes

    assert "tile" in PAGE_DEFAULT_GROUP_BY and "params" in PAGE_DEFAULT_GROUP_BY
    fig, table = cb["update_scaling"]({"device": [H100_KEY]}, "flops", list(PAGE_DEFAULT_GROUP_BY))
    groups = {t.legendgroup for t in fig.data if t.legendgroup}
    assert any("128x128x32" in g for g in groups) and any("untiled" in g for g in groups)
    rows = pd.DataFrame({"m": [1, 2, 4, 1, 2], "n": [8, 8, 8, 16, 16], "k": [8, 8, 8, 8, 8],
                         "batch_size": 1.0, "time_s": 1.0})
    fixed, note = fix_other_sizes(rows, "m", ["batch_size", "n", "k"])
    assert fixed["n"].tolist() == [8, 8, 8] and "n = 8" in note and "pool" in note
    same, none = fix_other_sizes(rows[rows["n"] == 8], "m", ["batch_size", "n", "k"])
    assert len(same) == 3 and none == ""


def test_scaling_page(cb):
    fig, table = cb["update_scaling"]({"device": [H100_KEY]}, "flops", ["implementation", "dtype"])
    assert not is_message(fig)
    assert "±" in str(table)
    batch_fig, _ = cb["update_scaling"](ALL, "batch_size", ["dtype"])
    assert is_message(batch_fig) or batch_fig.data  # one batch size per group: drawn, not fitted


def carbon_args(**overrides):
    args = dict(filters=ALL, region="World", custom=None, pue=1.0, energy="gross", by="dtype", workload="million",
                calls_per_step=100, steps=1000, embodied_on=[], embodied_kg=None, lifetime=4, utilisation=1.0)
    args.update(overrides)
    return list(args.values())


def test_carbon_page_regions_custom_intensity_and_workload(cb):
    fig, notes, table = cb["update_carbon"](*carbon_args())
    assert not is_message(fig)
    assert "World 2024, lifecycle" in str(notes) and "source" in str(notes)
    assert "estimated (TDP)" in str(table) and "measured" in str(table)
    custom, notes, _ = cb["update_carbon"](*carbon_args(region="__custom__", custom=250.0, workload="workload"))
    assert "250 gCO2e/kWh (typed in)" in str(notes)
    assert "per workload (100,000 calls)" in custom.layout.title.text


def test_carbon_page_regions_come_from_the_table_and_old_names_resolve():
    from perfscope.carbon import load_intensity_table
    from perfscope.dashboards.pages import carbon

    def walk(component):
        yield component
        children = getattr(component, "children", None)
        for child in children if isinstance(children, list) else [children] if children is not None else []:
            if hasattr(child, "to_plotly_json"):
                yield from walk(child)

    dropdown = next(c for c in walk(carbon.layout()) if getattr(c, "id", None) == "carbon-region")
    values = [o["value"] for o in dropdown.options]
    assert values[:-1] == [row.region for row in load_intensity_table()] and values[-1] == carbon.CUSTOM
    assert all("lifecycle" in o["label"] for o in dropdown.options[:-1])
    assert carbon.region_from_query({"region": "UK"}) == "United Kingdom"
    assert carbon.region_from_query({"region": "EU-27"}) == "European Union (27)"
    assert carbon.region_from_query({"region": "Atlantis"}) == carbon.DEFAULT_REGION


def test_carbon_page_net_of_idle_notes_say_what_was_derived_and_what_was_left_out():
    from perfscope.dashboards.pages.carbon import net_energy_notes

    assert net_energy_notes({"rows_net_derived": 5, "rows_without_energy": 0}, "gross") == []
    notes = net_energy_notes({"rows_net_derived": 5, "rows_without_energy": 3, "rows_with_gross_energy": 8}, "net")
    assert "5 rows derived as gross - idle power x time" in notes[0]
    assert "3 rows left out" in notes[1] and "idle power is not known" in notes[1]


def test_carbon_page_bad_input_shows_a_message_not_a_traceback(cb):
    fig, notes, table = cb["update_carbon"](*carbon_args(region="__custom__", custom=None))
    assert is_message(fig) and "type a grid intensity" in message_text(fig)
    fig, _, _ = cb["update_carbon"](*carbon_args(pue=0.5))
    assert is_message(fig) and "PUE" in message_text(fig)
    fig, _, _ = cb["update_carbon"](*carbon_args(embodied_on=["on"], embodied_kg=None))
    assert "embodied" in message_text(fig)


def test_tile_explorer_options_and_heatmap(cb):
    options = cb["update_tile_options"]({"device": [H100_KEY]}, None, None, None, None)
    implementations, implementation, shapes, shape, dtypes, dtype, devices, device = options
    assert implementations == ["triton.matmul"] and implementation == "triton.matmul"
    assert len(shapes) == len(SIZES) and device == H100_KEY
    fig, notes = cb["update_tiles"]({"device": [H100_KEY]}, implementation, shape, dtype, device, "time")
    heat = fig.data[0]
    assert heat.type == "heatmap"
    assert sum(str(c).startswith("★") for row in heat.text for c in row) == 1
    assert len([c for row in heat.text for c in row if c]) == len(TILES) - 1  # tiled variants only
    energy, _ = cb["update_tiles"]({"device": [H100_KEY]}, implementation, shape, dtype, device, "energy")
    assert not is_message(energy)
    nothing = cb["update_tile_options"]({"device": ["cpu-test"]}, None, None, None, None)
    assert nothing[0] == [] and nothing[1] is None
    xs, x, ys, y, heat, parallel = cb["update_parameter_space"]({"device": [H100_KEY]}, implementation, shape,
                                                                 dtype, device, None, None)
    assert {x, y} == {"tile_m", "tile_n"} and not is_message(heat) and parallel.data[0].type == "scatter"
    # a box dragged over the first axis (tile_m) brushes it: the text the URL keeps, then the views
    picked = (implementation, shape, dtype, device)
    box = {"selections": [{"type": "rect", "x0": -0.2, "x1": 0.2, "y0": -0.05, "y1": 0.01}]}
    brush = cb["update_brush"](box, 0, {"device": [H100_KEY]}, *picked, "")
    assert brush.startswith(f"{xs[0]}=")
    *_, brushed_heat, brushed = cb["update_parameter_space"]({"device": [H100_KEY]}, *picked, None, None, brush)
    assert any(t.name == "outside the brushed ranges" for t in brushed.data)
    assert "in the brushed ranges" in brushed_heat.layout.title.text
    assert cb["update_brush"]({"selections": []}, 0, {"device": [H100_KEY]}, *picked, brush) == ""
    with pytest.raises(PreventUpdate):  # a zoom or a redraw is not a brush
        cb["update_brush"]({"autosize": True}, 0, {"device": [H100_KEY]}, *picked, brush)


def estimate_form(**overrides):
    """The estimate callback's arguments after a press of Estimate (the URL_CONTROLS order)."""
    form = {"est_kernel": "gemm", "est_device": "h100-sxm", "est_dtype": "bf16", "shape": "m=64 n=64 k=64",
            "impl": "default", "tile_m": None, "tile_n": None, "tile_k": None, "params": "", "problem": None,
            "region": "World", "pue": 1.0}
    form.update(overrides)
    return [form[key] for key in URL_CONTROLS]


def test_estimate_page_calls_the_estimate_with_the_form(cb, monkeypatch):
    calls = []

    def estimate(kernel, device, dtype, **config):
        calls.append((kernel, device, dtype, config))
        if config.get("m") == 13:
            raise InvalidInputError("13 is unlucky")
        return {"latency_s": 1e-3, "latency_low_s": 8e-4, "latency_high_s": 1.3e-3, "bound_time_s": 4e-4,
                "energy_j": 0.36, "method": "fake", "flops": 2e9, "min_bytes": 3e6}

    monkeypatch.setattr("perfscope.dashboards.adapters.workflow_estimate", estimate)
    fig, status, details = cb["update_estimate"](1, 0, *estimate_form(
        shape="batch=2 m=64 n=32 k=16", impl="triton.matmul", tile_m=128, tile_n=64, tile_k=32,
        params="block_size_x=128 unroll=yes", pue=1.5))
    kernel, device, dtype, config = calls[-1]
    assert (kernel, device, dtype) == ("gemm", "h100-sxm", "bf16")
    assert config == {"batch": 2, "m": 64, "n": 32, "k": 16, "tile_m": 128, "tile_n": 64, "tile_k": 32,
                      "param_block_size_x": 128, "param_unroll": "yes", "model": None,
                      "implementation": "triton.matmul", "best_tile": False}
    assert not is_message(fig)
    # 0.36 J x 1e6 calls = 0.1 kWh; x 1.5 PUE x the World's intensity
    assert "per million calls" in str(status) and "answered by: fake" in str(status)
    text = str(details)
    assert "1 ms" in text and "800 µs – 1.3 ms" in text and "0.0008" not in text  # units, interval as a range
    assert "2 GFLOP" in text and "3 MB" in text
    bad, status, _ = cb["update_estimate"](1, 0, *estimate_form(shape="m=13 n=1 k=1"))
    assert is_message(bad) and "unlucky" in str(status)
    typo, _, _ = cb["update_estimate"](1, 0, *estimate_form(shape="m=1 q=2"))
    assert is_message(typo) and "not a gemm size" in message_text(typo)


def test_estimate_page_without_a_model_says_the_fallback_answered(cb):
    fig, status, details = cb["update_estimate"](1, 0, *estimate_form())
    assert not is_message(fig)
    assert "roofline fallback (no model)" in str(status)
    axis = fig.layout.xaxis
    assert axis.type in (None, "linear") and axis.range[1] < 1e-3  # no annotation stretching the axis to 1 s


def test_best_configuration_from_an_incomplete_configuration_ranks_without_comparing(monkeypatch):
    searches, adapter_calls = [], []

    def best(kernel, device, dtype, *, model, shape, params=None, **options):
        searches.append((dict(shape), params))
        if params or any(k.startswith("tile_") for k in shape):
            raise InvalidInputError("--params leaves alpha unset: give every varied parameter", parameter="params")
        return {"best": {"config": {"alpha": 1}, "latency_s": 5e-4}}

    import perfscope.dashboards.adapters as adapters
    import perfscope.workflows.estimate as workflow

    monkeypatch.setattr(workflow, "loaded_bundle", lambda model: model)
    monkeypatch.setattr(workflow, "best_config", best)
    monkeypatch.setattr(workflow, "estimate", lambda *a, **config: {"latency_s": 1e-3, "given": config})
    real = adapters.estimate_with_best_config
    monkeypatch.setattr(adapters, "estimate_with_best_config",
                        lambda *a, **k: adapter_calls.append(k) or real(*a, **k))
    outcome = run_estimate("gemm", "h100-sxm", "fp32", {"m": 64, "n": 64, "k": 64, "tile_m": 128, "param_beta": 0},
                           model="a model", best_config=True)
    assert outcome.ok and outcome.result["best_config"]["best"]["config"] == {"alpha": 1}
    assert outcome.result["given"]["tile_m"] == 128  # the estimate is of the configuration as given
    assert "incomplete (leaves alpha unset" in outcome.result["given_note"]
    assert "best_tile" not in outcome.result
    assert searches[-1] == ({"m": 64, "n": 64, "k": 64}, None)
    assert len(adapter_calls) == 1  # the workflow ranks the space itself


def test_adapter_parses_shapes_and_never_raises_for_perfscope_errors():
    assert parse_shape("attention", "batch=1 heads=8 kv_heads=8 seq_q=16 seq_k=16 head_dim=64 causal=true") == {
        "batch": 1, "heads": 8, "kv_heads": 8, "seq_q": 16, "seq_k": 16, "head_dim": 64, "causal": True}
    assert parse_shape("conv", "conv_n=1,pad_h=0")["pad_h"] == 0
    for bad in ("m=0", "m=x", "m", ""):
        with pytest.raises(InvalidInputError):
            parse_shape("gemm", bad)

    def refuses(*_args, **_kwargs):
        raise InvalidInputError("no")

    assert run_estimate("gemm", "x", "fp32", {"m": 1}, estimate=refuses).message == "no"
    assert not run_estimate("gemm", "x", "fp32", {"m": 1}, estimate=lambda *a, **k: [1]).ok
    assert parse_params("a=1, b=2.5 param_c=x") == {"param_a": 1, "param_b": 2.5, "param_c": "x"}
    with pytest.raises(InvalidInputError):
        parse_params("a")


# ---- exports -------------------------------------------------------------------------------

def test_csv_export_holds_the_selected_rows(app):
    response = app.server.test_client().get("/_perfscope/export.csv?dtype=bf16")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == int((app.perfscope_context.data.rows["dtype"] == "bf16").sum())
    assert {r["dtype"] for r in rows} == {"bf16"}
    assert "gap" in rows[0] and "bound_time_s" in rows[0]


def test_parquet_export_holds_the_selected_rows(app):
    import pyarrow.parquet as pq

    response = app.server.test_client().get(f"/_perfscope/export.parquet?device={H100_KEY}")
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.get_data()))
    assert table.num_rows == int((app.perfscope_context.data.rows["device_key"] == H100_KEY).sum())
    assert set(table.column("device_key").to_pylist()) == {H100_KEY}


def test_export_links_follow_the_filters(cb):
    token = triggered("url.search", "?dtype=bf16")
    try:
        out = cb["sync_filters"]("?dtype=bf16", *([[]] * len(FILTER_NAMES)), ALL)
    finally:
        context_value.reset(token)
    hrefs = out[2 + len(FILTER_NAMES) + len(PAGES):-1]
    assert list(hrefs) == ["/_perfscope/export.csv?dtype=bf16", "/_perfscope/export.parquet?dtype=bf16"]


def test_html_export_of_the_clicked_figure(cb):
    fig, _ = cb["update_roofline"](ALL, ["spec"])
    ids = [{"type": "figure", "name": "roofline"}, {"type": "figure", "name": "other"}]
    token = triggered('{"name":"roofline","type":"export-html"}.n_clicks', 1)
    try:
        out = cb["export_html"]([1, 0], [fig.to_plotly_json(), {"data": []}], ids)
    finally:
        context_value.reset(token)
    assert out["filename"] == "perfscope-roofline.html"
    assert out["content"].lower().startswith("<!doctype html>") and "plotly" in out["content"].lower()
    assert "Roofline" in out["content"]


def test_guard_turns_errors_into_messages():
    @guard("figure", "children")
    def broken():
        raise ZeroDivisionError("boom")

    fig, text = broken()
    assert is_message(fig) and "ZeroDivisionError: boom" in message_text(fig)
    assert "boom" in str(text)


def test_no_dataset_opens_the_sample_or_says_there_is_no_data():
    app = app_module.create_app(None)
    data = app.perfscope_context.data
    if find_sample_datasets():
        assert len(data.rows) > 0
    else:
        assert len(data.rows) == 0
        assert any("no data" in note for note in data.notes)
        summary, coverage, *_ = app.perfscope_callbacks["update_overview"](ALL)
        assert is_message(coverage) and "no data" in str(summary)


def test_tile_explorer_shows_model_predictions_next_to_measurements(dataset, monkeypatch):
    from perfscope.dashboards.pages import tiles as tiles_page

    app = app_module.create_app([dataset])
    app.perfscope_context.model = object()  # a loaded bundle; its predictions come from the adapter below
    monkeypatch.setattr(tiles_page, "predict_latency_s", lambda model, rows: (rows["time_s"].to_numpy() * 1.1, ""))
    cb = app.perfscope_callbacks
    _, impl, _, shape, _, dtype, _, device = cb["update_tile_options"]({"device": [H100_KEY]}, None, None, None,
                                                                         None)
    fig, _ = cb["update_tiles"]({"device": [H100_KEY]}, impl, shape, dtype, device, "time")
    assert [t.type for t in fig.data].count("heatmap") == 2
    assert "predicted (model)" in [a.text for a in fig.layout.annotations]


@pytest.mark.slow  # trains a bundle first
def test_a_directory_that_is_not_a_model_is_reported(tmp_path, dataset):
    from perfscope.dashboards.adapters import load_model

    bundle, note = load_model(tmp_path)
    assert bundle is None and note.startswith("model not loaded")
    app = app_module.create_app([dataset], model_path=tmp_path)
    assert "model not loaded" in str(app.perfscope_callbacks["update_overview"](ALL)[0])


def test_importing_the_package_does_not_import_dash():
    import subprocess

    code = "import sys, perfscope.dashboards, perfscope.carbon, perfscope.scaling; print('dash' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_dataset_path_is_reported_not_raised(tmp_path):
    app = app_module.create_app([tmp_path / "missing"])
    assert any("missing" in p for p in app.perfscope_context.data.problems)
    assert isinstance(app.perfscope_context.data.rows, pd.DataFrame)


def test_time_energy_page_follows_the_filters(cb):
    fig, table = cb["update_pareto"]({"device": [H100_KEY]}, "gross")
    assert not is_message(fig) and "front" in fig.layout.title.text
    assert "cpu-test" not in str(table)


def test_page_controls_start_from_the_url_and_bad_values_fall_back():
    from perfscope.dashboards.pages import carbon, roofline, scaling

    assert "'x': 'm'" not in str(scaling.layout())
    text = str(scaling.layout(x="m", group="dtype,tile"))
    assert "value='m'" in text and "value=['dtype', 'tile']" in text
    assert "value=['spec']" in str(roofline.layout(ceilings="spec"))
    assert "value=['spec', 'calibrated']" in str(roofline.layout(ceilings="bogus"))  # unknown: the default
    assert "value=1.3" in str(carbon.layout(pue="1.3")) and "value='World'" in str(carbon.layout())
