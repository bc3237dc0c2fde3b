"""Every page control lives in the URL: each page's controls, written into a query string the
way the page writes them, come back as the same values when the page is built from that query
(no browser: the encode/decode of every page; tests/test_dashboard_browser.py does the
round trip in Chromium)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from perfscope.dashboards.filters import FILTER_NAMES
from perfscope.dashboards.pages import carbon, efficiency, energy, estimate, overview, roofline, scaling, tiles
from perfscope.dashboards.url_state import merge_query
from perfscope.dashboards.waterline import load_sequences

CONTROL_TYPES = ("Dropdown", "Input", "Checklist", "RadioItems", "Slider", "RangeSlider", "Textarea", "Store")

# one non-default value per control of each page
SAMPLES = {
    overview: {},
    roofline: {"ceilings": ["spec"]},
    efficiency: {"sequence": efficiency.CUSTOM, "wl_dtype": "bf16", "wl_device": "nvidia-h100-x",
                 "wl_configs": ["3f2a9c", "77b0e1", "3f2a9c0"]},
    scaling: {"x": "m", "group": ["dtype", "tile"]},
    carbon: {"region": "Japan", "intensity": 250.5, "pue": 1.3, "energy": "net", "by": "device_key",
             "workload": "workload", "calls": 64, "steps": 2000, "embodied": ["on"], "embodied_kg": 150.0,
             "lifetime": 5, "utilisation": 0.6},
    energy: {"energy": "net"},
    tiles: {"tile_impl": "cutlass", "tile_shape": '{"kernel": "gemm", "k": 1024, "m": 1024, "n": 512}',
            "tile_dtype": "bf16", "tile_device": "nvidia-h100-x", "tile_show": "energy", "param_x": "tile_m",
            "param_y": "param_block_size_x", "brush": "tile_m=32..64;time_s=0.001..0.002"},
    estimate: {"est_kernel": "conv", "est_device": "h100-sxm", "est_dtype": "fp16", "shape": "conv_n=8 conv_c=64",
               "impl": "cudnn", "tile_m": 64, "tile_n": 128, "tile_k": 32, "params": "block_size_x=128",
               "problem": "25000,2048,1", "region": "United Kingdom", "pue": 1.2},
}


def components(node):
    """Every component of a layout tree."""
    yield node
    children = getattr(node, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from components(child)


def controls_by_id(layout):
    return {c.id: c for c in components(layout) if type(c).__name__ in CONTROL_TYPES and getattr(c, "id", None)}


def defaults_of(page):
    return page.url_defaults() if hasattr(page, "url_defaults") else getattr(page, "URL_DEFAULTS", {})


@pytest.mark.parametrize("page", list(SAMPLES), ids=lambda p: p.KEY)
def test_every_control_of_the_page_is_in_the_url(page):
    listed = {cid for cid, _ in page.URL_CONTROLS.values()}
    assert set(controls_by_id(page.layout())) == listed
    assert not set(page.URL_CONTROLS) & set(FILTER_NAMES), "a page key would be read as a shared filter"
    assert set(SAMPLES[page]) == set(page.URL_CONTROLS)


@pytest.mark.parametrize("page", list(SAMPLES), ids=lambda p: p.KEY)
def test_controls_written_to_the_url_come_back_when_the_page_is_built(page):
    values = SAMPLES[page]
    keys = list(page.URL_CONTROLS)
    search = merge_query("?device=nvidia-h100-x&dtype=bf16", values, keys, defaults_of(page))
    query = dict(parse_qsl(search.lstrip("?")))
    assert query["device"] == "nvidia-h100-x" and query["dtype"] == "bf16"  # the filters are kept
    built = controls_by_id(page.layout(**query))
    for key, (cid, prop) in page.URL_CONTROLS.items():
        assert getattr(built[cid], prop) == values[key], key


@pytest.mark.parametrize("page", [p for p in SAMPLES if p.URL_CONTROLS], ids=lambda p: p.KEY)
def test_a_page_at_its_defaults_keeps_a_clean_url_and_bad_values_fall_back(page):
    defaults = defaults_of(page)
    assert merge_query("", defaults, list(page.URL_CONTROLS), defaults) == ""
    built = controls_by_id(page.layout(**{key: "\x00bogus" for key in defaults}))
    plain = controls_by_id(page.layout())
    for key in defaults:
        cid, prop = page.URL_CONTROLS[key]
        if key in ("sequence", "region", "ceilings", "x", "group", "energy", "by", "workload", "tile_show",
                   "wl_dtype"):  # controls with a fixed set of choices: an unknown value is the default
            assert getattr(built[cid], prop) == getattr(plain[cid], prop), key


def test_old_region_names_in_a_link_resolve_on_both_pages():
    assert controls_by_id(carbon.layout(region="UK"))["carbon-region"].value == "United Kingdom"
    assert controls_by_id(estimate.layout(region="EU-27"))["estimate-region"].value == "European Union (27)"
    assert controls_by_id(efficiency.layout(sequence=load_sequences()[1].name))["waterline-sequence"].value \
        == load_sequences()[1].name
