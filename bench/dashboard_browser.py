"""Timing the dashboard where the user sits: headless Chromium through selenium.

Used by ``bench_dashboard.py --browser``. Each time is measured inside the browser
(``performance.now()``), from the action to the moment no Dash callback is pending, no
component is loading and every graph has drawn, plus two animation frames (the paint):

* first render: from navigation start (the URL typed) to that point, plotly.js
  included (Dash serves it from the installed package, no CDN);
* filter change: from setting a shared filter (``dash_clientside.set_props``, what a
  dropdown does) to that point.

The server runs in this process (werkzeug, threaded); its RSS is read from /proc.
"""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1700")
TIMEOUT_S = 120

# Resolves with performance.now() once Dash is idle and every graph has drawn.
_SETTLE_JS = ("""
const done = arguments[arguments.length - 1];
const start = arguments[0];
const mustSeeBusy = arguments[1];
let seenBusy = false;
function pending() {
  const state = window.store && window.store.getState ? window.store.getState() : null;
  let n = 0;
  if (state && state.callbacks) {
    for (const k of ['requested', 'prioritized', 'blocked', 'executing', 'watched', 'executed']) {
      n += (state.callbacks[k] || []).length;
    }
  }
  return n;
}
function idle() {
  if (document.readyState !== 'complete') return false;
  if (!document.querySelector('#_pages_content') || !document.querySelector('#_pages_content').children.length)
    return false;
  if (pending() > 0 || document.querySelectorAll('[data-dash-is-loading="true"]').length) {
    seenBusy = true;
    return false;
  }
  const graphs = document.querySelectorAll('.dash-graph');
  const drawn = document.querySelectorAll('.dash-graph .main-svg').length;
  if (drawn < graphs.length) return false;
  if (document.body.innerText.includes('loading...')) return false;
  // a change is done once Dash ran its callbacks: seen busy, or the selection count rewritten
  // (a page with nothing to redraw only runs the filter sync, which can finish between polls)
  const count = document.querySelector('#selection-count');
  const rewritten = count && window.__countBefore !== undefined && count.innerText !== window.__countBefore;
  return !mustSeeBusy || seenBusy || rewritten || performance.now() - start > 1500;
}
function poll() {
  if (idle()) {
    requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now())));
    return;
  }
  if (performance.now() - start > TIMEOUT_MS) { done(-1); return; }
  setTimeout(poll, 5);
}
poll();
""").replace("TIMEOUT_MS", str(TIMEOUT_S * 1000))

_CHANGE_JS = """
const count = document.querySelector('#selection-count');
window.__countBefore = count ? count.innerText : undefined;
const t0 = performance.now();
window.dash_clientside.set_props(arguments[0], {value: arguments[1]});
return t0;
"""


def serve(app: Any) -> tuple[str, Any]:
    """Serve ``app`` on a free loopback port in a thread; (base URL, server to shut down)."""
    import logging

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", http


def chromium() -> Any:
    """A headless Chromium driven by selenium (Debian's chromium and chromium-driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    missing = [p for p in (driver_path, binary) if not Path(p).exists()]
    if missing:
        raise SystemExit(f"--browser needs chromium and chromium-driver (missing: {', '.join(missing)})")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(TIMEOUT_S + 10)
    return driver


def first_render_s(driver: Any, url: str) -> float:
    """Seconds from navigation start to the page drawn and idle."""
    driver.get("about:blank")
    driver.get(url)
    end_ms = driver.execute_async_script(_SETTLE_JS, 0, False)
    if end_ms < 0:
        raise RuntimeError(f"{url} did not settle within {TIMEOUT_S} s")
    return end_ms / 1e3


def filter_change_s(driver: Any, filter_name: str, value: list[str]) -> float:
    """Seconds from setting a shared filter to every graph of the page updated and idle."""
    t0 = driver.execute_script(_CHANGE_JS, f"filter-{filter_name}", value)
    end_ms = driver.execute_async_script(_SETTLE_JS, t0, True)
    if end_ms < 0:
        raise RuntimeError(f"the page did not settle within {TIMEOUT_S} s after a filter change")
    return (end_ms - t0) / 1e3


def severe_console_messages(driver: Any) -> list[str]:
    """SEVERE browser console messages since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, amount, _unit = line.split()
                values[name.rstrip(":")] = int(amount) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))
