"""Every dashboard page in a real headless Chromium (Debian's chromium and chromium-driver,
driven by selenium): no SEVERE console errors, figures drawn, filters kept in the URL.

Screenshots land in test-artifacts/screenshots/ (git-ignored). Needs, once per machine:
``apt-get install -y chromium chromium-driver`` and ``pip install selenium``.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from test_dashboard_figures import H100_KEY, dashboard_rows  # noqa: E402 (tests/ is on sys.path)

from perfscope.store import ProfileStore

pytestmark = pytest.mark.slow

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1700")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
PAGES = {"overview": "/", "roofline": "/roofline", "efficiency": "/efficiency", "scaling": "/scaling",
         "carbon": "/carbon", "energy": "/energy", "tiles": "/tiles", "estimate": "/estimate"}
SETTLE_TIMEOUT_S = 20


def _need_browser():
    missing = [p for p in (CHROMEDRIVER, CHROMIUM) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        pytest.fail("browser tests need Debian's chromium and chromium-driver and selenium: "
                    "apt-get update && apt-get install -y chromium chromium-driver; pip install selenium "
                    f"(missing: {', '.join(missing)})")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # no profiles calibrated on this machine
        patch.setenv("PERFSCOPE_HOME", str(tmp_path_factory.mktemp("perfscope-home")))
        yield from _serve(tmp_path_factory)


def _small_model(dataset, out):
    """A forest bundle fitted on the dataset's H100 rows (small: the browser tests need a model, not a good one)."""
    from perfscope.models.forest import ForestModel
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.persistence import save_bundle
    from perfscope.models.roofline_model import RooflineModel

    rows = ProfileStore(dataset).read().table.to_pandas()
    ok = rows[(rows["status"] == "ok") & (rows["device_key"] == H100_KEY)].reset_index(drop=True)
    models = {"forest": ConformalWrapper(ForestModel(n_estimators=8), n_splits=3).fit(ok),
              "roofline": ConformalWrapper(RooflineModel(), n_splits=3).fit(ok)}
    return save_bundle(out, models, rows=ok)


def _serve(tmp_path_factory):
    from perfscope.dashboards.app import create_app

    path = tmp_path_factory.mktemp("browser") / "profile"
    ProfileStore(path, create=True).append(dashboard_rows())
    model = _small_model(path, tmp_path_factory.mktemp("model") / "bundle")
    yield from _serve_app(create_app([path], model_path=model))


@pytest.fixture(scope="module")
def imported_server(tmp_path_factory):
    """The dashboard on a small imported Kernel Tuner family with a parameter-forest model."""
    from imported_family import imported_family  # noqa: E402 (tests/ is on sys.path)

    from perfscope.dashboards.app import create_app

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFSCOPE_HOME", str(tmp_path_factory.mktemp("perfscope-home")))
        dataset, model = imported_family(tmp_path_factory.mktemp("imported"))
        yield from _serve_app(create_app([dataset], model_path=model))


def _serve_app(app):
    from werkzeug.serving import make_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    http.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def settle(driver) -> None:
    """Wait until Dash has no callback in flight and every graph has drawn (not "loading...")."""
    from selenium.webdriver.support.ui import WebDriverWait

    script = """
        const busy = document.querySelectorAll('[data-dash-is-loading="true"]').length;
        const graphs = document.querySelectorAll('.dash-graph');
        const drawn = document.querySelectorAll('.dash-graph .main-svg').length;
        const text = document.body.innerText;
        return document.readyState === 'complete' && busy === 0 && graphs.length > 0
            && drawn >= graphs.length && !text.includes('loading...');
    """
    WebDriverWait(driver, SETTLE_TIMEOUT_S, poll_frequency=0.25).until(lambda d: d.execute_script(script))
    time.sleep(0.3)  # let late console messages arrive


def severe(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders_without_console_errors(name, server, browser):
    browser.get_log("browser")  # drop what earlier pages left
    browser.get(server + PAGES[name])
    settle(browser)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    assert severe(browser) == []
    text = browser.find_element("tag name", "main").text
    assert "Traceback" not in text and "could not draw" not in text
    assert browser.title.startswith("perfscope")


def test_filters_live_in_the_url_and_follow_navigation(server, browser):
    browser.get_log("browser")
    browser.get(f"{server}/roofline?dtype=bf16&device={H100_KEY}")
    settle(browser)
    count = browser.find_element("id", "selection-count").text
    assert "dtype=bf16" in count and f"device={H100_KEY}" in count
    dropdown = browser.find_element("id", "filter-dtype").text
    assert "bf16" in dropdown
    browser.find_element("id", "nav-carbon").click()
    settle(browser)
    assert browser.current_url.split("?", 1)[1] == f"device={H100_KEY}&dtype=bf16"
    assert "Carbon cost" in browser.find_element("tag name", "h2").text
    assert "dtype=bf16" in browser.find_element("id", "selection-count").text
    assert severe(browser) == []


def test_no_cloud_upload_button_on_any_toolbar(server, browser):
    browser.get(server + "/roofline")
    settle(browser)
    titles = browser.execute_script(
        "return Array.from(document.querySelectorAll('.modebar-btn')).map(b => b.getAttribute('data-title'));")
    assert titles, "the roofline graph has a toolbar"
    assert not [t for t in titles if t and ("Chart Studio" in t or "Cloud" in t or "share" in t.lower())]


def test_estimate_page_answers_with_the_loaded_model(server, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/estimate?est_kernel=gemm&est_device=h100-sxm&est_dtype=bf16&shape=m%3D2048+n%3D2048+k%3D2048")
    settle(browser)
    assert "answered by the model" in browser.find_element("id", "estimate-model").text
    browser.find_element("id", "estimate-run").click()
    WebDriverWait(browser, SETTLE_TIMEOUT_S).until(
        lambda d: "answered by:" in d.find_element("id", "estimate-status").text)
    status = browser.find_element("id", "estimate-status").text
    assert "model:forest" in status and "roofline fallback" not in status
    details = browser.find_element("id", "estimate-details").text
    assert "interval" in details and " – " in details
    assert severe(browser) == []


def test_page_controls_live_in_the_url_and_come_back_from_it(server, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/estimate?dtype=bf16")
    settle(browser)
    browser.execute_script("window.__perfscope_marker = 1;")  # survives only if the page is not reloaded
    browser.find_element("css selector", "#estimate-kernel input[value='conv']").click()
    WebDriverWait(browser, SETTLE_TIMEOUT_S).until(lambda d: "kernel=conv" in d.current_url)
    assert "dtype=bf16" in browser.current_url  # the shared filters are kept beside the page's controls
    assert browser.execute_script("return window.__perfscope_marker;") == 1
    shared = browser.current_url
    browser.get("about:blank")
    browser.get(shared)
    settle(browser)
    checked = browser.find_element("css selector", "#estimate-kernel input[value='conv']")
    assert checked.is_selected()
    assert severe(browser) == []


def _roofline_colours(driver) -> dict:
    return driver.execute_script("""
        const plot = document.querySelector('.js-plotly-plot');
        const out = {};
        for (const t of plot.data) {
            if (t.mode === 'markers' && t.showlegend !== false && t.marker && typeof t.marker.color === 'string')
                out[t.name] = t.marker.color;
            if (t.mode === 'lines') out[t.name] = t.line.color;  // ceilings: "<series> (source)"
        }
        return out;""")


def test_roofline_colours_stay_with_their_series_across_a_filter(server, browser):
    browser.get(f"{server}/roofline")
    settle(browser)
    before = _roofline_colours(browser)
    series = {name: colour for name, colour in before.items() if "(" not in name}
    assert len(series) >= 3 and len(set(series.values())) == len(series)  # one colour per (device, dtype)
    ceilings = {name: colour for name, colour in before.items() if name.endswith("(spec sheet)")}
    assert ceilings and all(colour == series[name.rsplit(" (", 1)[0]] for name, colour in ceilings.items())
    browser.get(f"{server}/roofline?device={H100_KEY}")
    settle(browser)
    after = _roofline_colours(browser)
    assert after and set(after) < set(before)  # the filter removed a series
    assert all(after[name] == before[name] for name in after)


def test_svg_export_runs_in_the_browser(server, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/roofline")
    settle(browser)
    browser.get_log("browser")
    browser.execute_script("""window.__svg = null; const original = Plotly.downloadImage;
        Plotly.downloadImage = (gd, opts) => { window.__svg = opts.format; return Promise.resolve(); };""")
    browser.execute_script("""document.getElementById('{"name":"roofline","type":"export-svg"}').click();""")
    WebDriverWait(browser, SETTLE_TIMEOUT_S).until(lambda d: d.execute_script("return window.__svg;") == "svg")
    assert severe(browser) == []


def _choose(driver, dropdown_id: str, text: str) -> None:
    """Pick the first option containing ``text`` in a dcc.Dropdown as a user does: open it,
    type into its search box, click the option (options from a server search included)."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    # a pattern-matched id is a JSON text: CSS would need it escaped, XPath takes it as it is
    driver.find_element("xpath", f"//*[@id='{dropdown_id}']").click()
    box = WebDriverWait(driver, SETTLE_TIMEOUT_S).until(
        lambda d: d.find_element("css selector", ".dash-dropdown-content input.dash-dropdown-search"))
    box.send_keys(text)
    option = WebDriverWait(driver, SETTLE_TIMEOUT_S).until(
        lambda d: next((o for o in d.find_elements("css selector", ".dash-dropdown-content [role=option]")
                        if text.lower() in o.text.lower()), None))
    option.click()
    if driver.find_elements("css selector", ".dash-dropdown-content"):
        box.send_keys(Keys.ESCAPE)  # a multi-select stays open after a pick


def _reload_and_settle(driver, url: str) -> None:
    driver.get("about:blank")
    driver.get(url)
    settle(driver)


def _open(driver, url: str) -> None:
    driver.get_log("browser")  # drop what earlier pages left
    driver.get(url)
    settle(driver)


def _act_until(driver, act, done) -> None:
    """Do ``act()`` as a user would, then wait until ``done(driver)`` and the page settles."""
    from selenium.webdriver.support.ui import WebDriverWait

    act()
    WebDriverWait(driver, SETTLE_TIMEOUT_S).until(done)
    settle(driver)


def test_waterline_controls_round_trip_through_the_url(server, browser):
    _open(browser, f"{server}/efficiency?device={H100_KEY}")
    _act_until(browser, lambda: _choose(browser, "waterline-dtype", "bf16"),
               lambda d: "wl_dtype=bf16" in d.current_url)
    _act_until(browser, lambda: _choose(browser, "waterline-sequence", "Custom"),
               lambda d: "sequence=__custom__" in d.current_url)
    _act_until(browser, lambda: _choose(browser, "waterline-configs", "triton"),
               lambda d: "wl_configs=" in d.current_url)
    shared = browser.current_url
    assert f"device={H100_KEY}" in shared and f"wl_device={H100_KEY}" in shared
    picked = browser.find_element("id", "waterline-configs").text
    _reload_and_settle(browser, shared)
    assert "bf16" in browser.find_element("id", "waterline-dtype").text
    assert "Custom" in browser.find_element("id", "waterline-sequence").text
    assert browser.find_element("id", "waterline-configs").text == picked and "triton" in picked
    assert browser.current_url == shared
    assert severe(browser) == []


def test_tile_controls_round_trip_through_the_url(server, browser):
    _open(browser, f"{server}/tiles")
    _act_until(browser, lambda: _choose(browser, "tiles-dtype", "fp32"),
               lambda d: "tile_dtype=fp32" in d.current_url)
    _act_until(browser, lambda: _choose(browser, "tiles-shape", "512"),
               lambda d: "512" in d.find_element("id", "tiles-shape").text)
    _act_until(browser, browser.find_element("css selector", "#tiles-value input[value='energy']").click,
               lambda d: "tile_show=energy" in d.current_url)
    shared = browser.current_url
    assert "tile_impl=" in shared and "tile_shape=" in shared and "tile_device=" in shared
    shape = browser.find_element("id", "tiles-shape").text
    axes = (browser.find_element("id", "params-x").text, browser.find_element("id", "params-y").text)
    _reload_and_settle(browser, shared)
    assert "fp32" in browser.find_element("id", "tiles-dtype").text
    assert browser.find_element("id", "tiles-shape").text == shape and "512" in shape
    assert browser.find_element("css selector", "#tiles-value input[value='energy']").is_selected()
    assert (browser.find_element("id", "params-x").text, browser.find_element("id", "params-y").text) == axes
    assert browser.current_url == shared
    assert severe(browser) == []


def test_estimate_page_answers_an_imported_family_from_its_parameter_fields(imported_server, browser):
    from imported_family import FAMILY
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, f"{imported_server}/estimate?est_kernel={FAMILY}")
    field = '{"name":"block_size_x","type":"estimate-param"}'
    WebDriverWait(browser, SETTLE_TIMEOUT_S).until(lambda d: d.find_elements("xpath", f"//*[@id='{field}']"))
    assert "answered by the model" in browser.find_element("id", "estimate-model").text
    assert not browser.find_element("id", "estimate-sizes-box").is_displayed()  # no GEMM sizes for this family
    _act_until(browser, lambda: _choose(browser, field, "4"), lambda d: "block_size_x%3D4" in d.current_url)
    assert "problem=1000%2C64" in browser.current_url or "problem=1000,64" in browser.current_url
    browser.find_element("id", "estimate-run").click()
    WebDriverWait(browser, SETTLE_TIMEOUT_S).until(
        lambda d: "answered by:" in d.find_element("id", "estimate-status").text)
    assert "model:param_forest" in browser.find_element("id", "estimate-status").text
    details = browser.find_element("id", "estimate-details").text
    assert "block_size_x=4" in details and " – " in details and "ms" in details
    browser.find_element("id", "estimate-best").click()
    WebDriverWait(browser, SETTLE_TIMEOUT_S).until(
        lambda d: "best configuration" in d.find_element("id", "estimate-details").text)
    browser.save_screenshot(str(SCREENSHOTS / "estimate-imported.png"))
    shared = browser.current_url
    _reload_and_settle(browser, shared)  # a shared link brings the family and its fields back
    WebDriverWait(browser, SETTLE_TIMEOUT_S).until(
        lambda d: d.find_elements("xpath", f"//*[@id='{field}']") and "4" in d.find_element(
            "xpath", f"//*[@id='{field}']").text)
    assert browser.current_url == shared
    assert severe(browser) == []


def _parcoords_point(driver, axis: float, position: float) -> tuple[float, float]:
    """The viewport point of the parallel coordinates at (axis index, position on the axis)."""
    return driver.execute_script("""
        const graph = document.getElementById(JSON.stringify({name: 'params-parcoords', type: 'figure'}));
        const plot = graph.querySelector('.js-plotly-plot');
        const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis;
        const box = plot.querySelector('.nsewdrag').getBoundingClientRect();
        return [box.left + xa.l2p(arguments[0]), box.top + ya.l2p(arguments[1])];
    """, axis, position)


def _drag(driver, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press, move and release the mouse as a user drags a box."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    pointer = actions.w3c_actions.pointer_action
    pointer.move_to_location(int(start[0]), int(start[1]))
    pointer.pointer_down()
    for step in range(1, 6):
        pointer.move_to_location(int(start[0] + (end[0] - start[0]) * step / 5),
                                 int(start[1] + (end[1] - start[1]) * step / 5))
    pointer.pointer_up()
    actions.perform()


def test_brushing_the_parallel_coordinates_filters_the_heatmap_and_lives_in_the_url(server, browser):
    _open(browser, f"{server}/tiles?device={H100_KEY}")
    browser.execute_script("document.getElementById(JSON.stringify({name: 'params-parcoords', type: 'figure'}))"
                           ".scrollIntoView();")
    # hover: one marker per configuration names it and its time (lines carry no hover text)
    hover = browser.execute_script("""
        const plot = document.getElementById(JSON.stringify({name: 'params-parcoords', type: 'figure'}))
            .querySelector('.js-plotly-plot');
        Plotly.Fx.hover(plot, [{curveNumber: plot.data.findIndex(t => t.name === 'configurations'), pointNumber: 0}]);
        const texts = Array.from(plot.querySelectorAll('.hovertext')).map(e => e.textContent);
        Plotly.Fx.unhover(plot);
        return texts;""")
    assert len(hover) == 1 and hover[0].startswith("tile_m ") and hover[0].endswith("s")
    # a box over the first axis, from its bottom to just above its lowest value
    _act_until(browser, lambda: _drag(browser, _parcoords_point(browser, -0.25, -0.04),
                                      _parcoords_point(browser, 0.25, 0.2)),
               lambda d: "brush=" in d.current_url)
    title = browser.execute_script(
        "return document.getElementById(JSON.stringify({name: 'params-heatmap', type: 'figure'}))"
        ".querySelector('.js-plotly-plot').layout.title.text;")
    assert "in the brushed ranges" in title
    greyed = browser.execute_script(
        "return document.getElementById(JSON.stringify({name: 'params-parcoords', type: 'figure'}))"
        ".querySelector('.js-plotly-plot').data.filter(t => t.name === 'outside the brushed ranges').length;")
    assert greyed == 1
    shared = browser.current_url
    _reload_and_settle(browser, shared)  # a shared link brings the brush back
    assert "in the brushed ranges" in browser.execute_script(
        "return document.getElementById(JSON.stringify({name: 'params-heatmap', type: 'figure'}))"
        ".querySelector('.js-plotly-plot').layout.title.text;")
    _act_until(browser, browser.find_element("id", "params-brush-clear").click, lambda d: "brush=" not in d.current_url)
    assert severe(browser) == []
