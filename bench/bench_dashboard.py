"""Dashboard speed on a 1,000,000-row dataset: startup, first page served, a filter change.

The frame is built from the real rows of a small profile (``--profile``, default: the
sample shipped in perfscope.data/samples) repeated with varied shapes: m, n and k scaled
by powers of two, batch 1 to 16, a third of the rows given a tile, times and energy
scaled by the FLOP ratio with 5% log-normal noise, so the shapes and counts look like a
large sweep while every column keeps a real row's provenance. With ``--gpu-share``
(default 0.5) that share of the rows is relabelled as an H100 (spec-table peaks) so the
roofline bound, the gap and the waterline run as they would on GPU data; the numbers
timed are the dashboard's, not the kernels'.

Timed, server-side, on this machine (Flask's test client, no browser; wall clock,
``time.perf_counter``):

* startup: ``DashboardData.from_rows`` (features for every row) and ``create_app``;
* first page: GET / (index), /_dash-layout, /_dash-dependencies, then the callbacks
  the overview page fires on load (filter sync, page routing, overview figures) as the
  browser would POST them, JSON responses included;
* filter change: the sync callback for a new dtype + device selection and the
  callbacks it triggers on the roofline page (targets: first page <= 3 s, change <= 300 ms).

With ``--browser`` the same app is served and every page is opened in headless
Chromium (``dashboard_browser.py``): per page the first full render (navigation start to
every graph drawn, plotly.js included) and a filter change (a shared filter set to
the action's end, every graph updated), then the server's RSS (targets: first render
<= 3 s, filter change <= 1 s, RSS <= 1 GB). The browser's first two visits are timed apart
(``cold_visits_s``): Chromium compiles plotly.js (4.8 MB) on each of them and keeps the
compiled code from the second load on, so they show what a first-ever visit costs.
``--json`` prints ``{"rows": N, "server_rss_mb": X, "pages": {"overview": {"first_render_s":
..., "filter_change_s": ..., "pass": true}, ...}, "pass": ..., "targets": {...},
"cold_visits_s": [...], "other_cpu_share": ...}`` and the exit status is 1 when a target is missed.

Run: ``python bench/bench_dashboard.py [--rows 1000000] [--profile DATASET] [--browser] [--json]``.
Times depend on the machine and on what else runs on it: the output prints the share of
the CPUs other processes used during the run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FIRST_PAGE_TARGET_S = 3.0
FILTER_CHANGE_TARGET_S = 0.3
BROWSER_FIRST_RENDER_TARGET_S = 3.0
BROWSER_FILTER_CHANGE_TARGET_S = 1.0
SERVER_RSS_TARGET_MB = 1024.0
COLD_VISITS = 2  # untimed first visits: Chromium keeps a script's compiled code from its second load on
H100 = ("cuda-nvidia-h100-80gb-hbm3", "NVIDIA H100 80GB HBM3", 132)


def build_frame(profile: Path, n_rows: int, gpu_share: float, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` rows from ``profile``'s real rows, repeated with varied shapes (see module doc)."""
    from perfscope.dashboards.data import DASHBOARD_COLUMNS
    from perfscope.dtypes import DTYPES
    from perfscope.store import ProfileStore

    base = ProfileStore(profile).read(list(DASHBOARD_COLUMNS)).table.to_pandas(strings_to_categorical=True)
    base = base[(base["status"] == "ok").to_numpy() & (base["kernel"] == "gemm").to_numpy()].reset_index(drop=True)
    if base.empty:
        raise SystemExit(f"{profile} has no ok GEMM rows to repeat")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), n_rows)
    frame = base.iloc[pick].reset_index(drop=True)
    scale = 2.0 ** rng.integers(-2, 5, size=(n_rows, 3))
    m = np.maximum(8, np.round(frame["m"].to_numpy(dtype=float) * scale[:, 0]))
    n = np.maximum(8, np.round(frame["n"].to_numpy(dtype=float) * scale[:, 1]))
    k = np.maximum(8, np.round(frame["k"].to_numpy(dtype=float) * scale[:, 2]))
    batch = rng.choice([1, 2, 4, 8, 16], n_rows).astype(float)
    size = np.array([DTYPES[str(d)].bytes_per_element for d in frame["dtype"]], dtype=float)
    flops = 2 * batch * m * n * k
    ratio = flops / frame["flops"].to_numpy(dtype=float)
    noise = np.exp(rng.normal(0, 0.05, n_rows))
    frame["m"], frame["n"], frame["k"], frame["batch"] = m, n, k, batch
    frame["flops"] = flops
    frame["min_bytes"] = size * batch * (m * k + k * n + m * n)
    frame["time_median_ms"] = frame["time_median_ms"].to_numpy(dtype=float) * ratio * noise
    frame["achieved_flops_per_s"] = flops / (frame["time_median_ms"] / 1e3)
    for column in ("energy_gross_j", "energy_net_j"):
        frame[column] = frame[column].to_numpy(dtype=float) * ratio * noise
    tiled = rng.random(n_rows) < 1 / 3
    tiles = np.array([[64, 64, 32], [128, 64, 32], [64, 128, 32], [128, 128, 32], [128, 128, 64], [256, 128, 64]])
    choice = tiles[rng.integers(0, len(tiles), n_rows)].astype(float)
    for i, column in enumerate(("tile_m", "tile_n", "tile_k")):
        frame[column] = np.where(tiled, choice[:, i], np.nan)
    impl = frame["implementation"].astype(str).to_numpy()
    frame["implementation"] = pd.Categorical(np.where(tiled, "triton.matmul", impl))
    gpu = rng.random(n_rows) < gpu_share
    key, name, sms = H100
    frame["device_key"] = pd.Categorical(np.where(gpu, key, frame["device_key"].astype(str)))
    frame["device_name"] = pd.Categorical(np.where(gpu, name, frame["device_name"].astype(str)))
    frame["device_kind"] = pd.Categorical(np.where(gpu, "cuda", frame["device_kind"].astype(str)))
    frame["sm_count"] = np.where(gpu, float(sms), frame["sm_count"].to_numpy(dtype=float))
    config_cols = ["device_key", "implementation", "dtype", "batch", "m", "n", "k", "tile_m", "tile_n", "tile_k"]
    hashed = pd.util.hash_pandas_object(frame[config_cols], index=False).to_numpy()
    frame["config_id"] = pd.Categorical([f"{h:016x}" for h in hashed])
    frame["run_id"] = pd.Categorical(rng.choice([f"bench-run-{i}" for i in range(8)], n_rows))
    return frame


class Client:
    """Dash's HTTP endpoints through Flask's test client, with payloads built from the callback map."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.http = app.server.test_client()

    def get(self, path: str) -> int:
        response = self.http.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code}")
        return len(response.data)

    def post(self, output_key: str, values: dict[tuple[str, str], Any], changed: list[str]) -> dict:
        spec = self.app.callback_map[output_key]
        payload = {
            "output": output_key,
            "outputs": self._outputs(output_key),
            "inputs": [self._with_value(i, values) for i in spec["inputs"]],
            "state": [self._with_value(s, values) for s in spec["state"]],
            "changedPropIds": changed,
        }
        response = self.http.post("/_dash-update-component", json=payload)
        if response.status_code not in (200, 204):
            raise RuntimeError(f"POST {output_key}: {response.status_code} {response.data[:300]!r}")
        return json.loads(response.data) if response.status_code == 200 else {}

    @staticmethod
    def _id(raw: str) -> Any:
        return json.loads(raw) if raw.startswith("{") else raw

    def _outputs(self, key: str) -> Any:
        parts = key.strip(".").split("...") if key.startswith("..") else [key]
        outs = []
        for part in parts:
            ident, _, prop = part.rpartition(".")
            outs.append({"id": self._id(ident), "property": prop})
        return outs if key.startswith("..") else outs[0]

    def _with_value(self, item: dict, values: dict[tuple[str, str], Any]) -> dict:
        ident = self._id(item["id"])
        key = (json.dumps(ident, sort_keys=True) if isinstance(ident, dict) else ident, item["property"])
        return {"id": ident, "property": item["property"], "value": values.get(key)}


def key_of(app: Any, fragment: str) -> str:
    """The callback-map key whose outputs mention ``fragment``."""
    for key in app.callback_map:
        if fragment in key:
            return key
    raise KeyError(fragment)


def first_page(app: Any, filters_empty: dict) -> tuple[float, dict[str, float], int]:
    """Serve the overview as a browser does on first load; (total s, per step s, bytes)."""
    from perfscope.dashboards.filters import FILTER_NAMES

    client = Client(app)
    steps: dict[str, float] = {}
    nbytes = 0
    t0 = time.perf_counter()
    for path in ("/", "/_dash-layout", "/_dash-dependencies"):
        t = time.perf_counter()
        nbytes += client.get(path)
        steps[f"GET {path}"] = time.perf_counter() - t
    values: dict[tuple[str, str], Any] = {("url", "search"): "", ("filters", "data"): filters_empty}
    values.update({(f"filter-{name}", "value"): [] for name in FILTER_NAMES})
    t = time.perf_counter()
    client.post(key_of(app, "filters.data"), values, ["url.search"])
    steps["POST filter sync"] = time.perf_counter() - t
    t = time.perf_counter()
    route_key = key_of(app, "_pages_content.children")
    client.post(route_key, {("_pages_location", "pathname"): "/", ("_pages_location", "search"): ""},
                ["_pages_location.pathname"])
    steps["POST page routing"] = time.perf_counter() - t
    t = time.perf_counter()
    response = client.post(key_of(app, "overview-summary.children"), values, ["filters.data"])
    nbytes += len(json.dumps(response))
    steps["POST overview figures"] = time.perf_counter() - t
    return time.perf_counter() - t0, steps, nbytes


def filter_change(app: Any, filters_empty: dict, selection: dict[str, list[str]]) -> tuple[float, dict[str, float]]:
    """A new selection (filter name -> values) on the roofline page, server-side; (total s, per step s)."""
    from perfscope.dashboards.filters import FILTER_NAMES, normalise_filters

    client = Client(app)
    values: dict[tuple[str, str], Any] = {("url", "search"): "", ("filters", "data"): filters_empty}
    values.update({(f"filter-{name}", "value"): list(selection.get(name, [])) for name in FILTER_NAMES})
    changed = [f"filter-{name}.value" for name in selection][:1]
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    client.post(key_of(app, "filters.data"), values, changed)
    steps["POST filter sync"] = time.perf_counter() - t0
    t = time.perf_counter()
    client.post(key_of(app, '"roofline","type":"figure"'),
                {("filters", "data"): normalise_filters(selection),
                 ("roofline-sources", "value"): ["spec", "calibrated"]},
                ["filters.data"])
    steps["POST roofline figure"] = time.perf_counter() - t
    return time.perf_counter() - t0, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--profile", type=Path, default=None, help="a small real dataset (default: the sample)")
    parser.add_argument("--gpu-share", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=5, help="filter changes timed (median reported)")
    parser.add_argument("--browser", action="store_true", help="time every page in headless Chromium")
    parser.add_argument("--json", action="store_true", help="print the browser figures as JSON (with --browser)")
    parser.add_argument("--pages", default="", help="with --browser: only these pages (comma-separated keys)")
    args = parser.parse_args(argv)
    if args.json and not args.browser:
        parser.error("--json reports the browser figures: add --browser")

    from perfscope.dashboards.data import DashboardData, find_sample_datasets
    from perfscope.dashboards.filters import empty_filters

    profile = args.profile
    if profile is None:
        samples = find_sample_datasets()
        if not samples:
            print("no sample profile shipped: pass --profile DATASET (perfscope collect gemm ... --out DATASET)")
            return 2
        profile = samples[0]
    t = time.perf_counter()
    frame = build_frame(profile, args.rows, args.gpu_share)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    data = DashboardData.from_rows(frame, datasets=[f"{profile} x {args.rows:,} (bench)"])
    load_s = time.perf_counter() - t
    del frame  # the bench's input: not part of what the dashboard holds
    import gc

    gc.collect()
    from perfscope.dashboards.app import create_app

    t = time.perf_counter()
    app = create_app(data=data)
    app_s = time.perf_counter() - t
    if args.browser:
        return browser_bench(app, data, args.json, build_s, load_s, app_s, args.repeat,
                             [k for k in args.pages.split(",") if k])
    first_s, first_steps, nbytes = first_page(app, empty_filters())
    devices = data.options["device"]
    # distinct selections each time (no cached mask helps): dtype + device (about a quarter
    # of the rows each), then batch + dtype + device (about a twentieth)
    kinds = {
        "dtype + device": [{"dtype": [d], "device": [v]} for d, v in itertools.product(data.options["dtype"], devices)],
        "batch + dtype + device": [{"batch": [b], "dtype": [d], "device": [v]} for b, d, v in itertools.product(
            data.options["batch"], data.options["dtype"], devices)][:args.repeat],
    }
    changes: dict[str, list[float]] = {}
    selected: dict[str, list[int]] = {}
    change_steps: dict[str, dict[str, float]] = {}
    for kind, selections in kinds.items():
        for selection in selections[:args.repeat]:
            total, change_steps[kind] = filter_change(app, empty_filters(), selection)
            changes.setdefault(kind, []).append(total)
            selected.setdefault(kind, []).append(data.count(selection))
    change_s = max(statistics.median(v) for v in changes.values())

    configurations = data.rows['config_id'].nunique()
    print(f"dashboard bench: {len(data.rows):,} rows from {profile} ({configurations:,} configurations, "
          f"devices: {', '.join(devices)})")
    print(f"  build frame (bench input, not the dashboard): {build_s:.2f} s")
    print(f"  startup: features for every row {load_s:.2f} s; create_app {app_s:.2f} s")
    print(f"  first page (overview) served: {first_s:.3f} s (target <= {FIRST_PAGE_TARGET_S} s), "
          f"{nbytes / 1e3:.0f} kB")
    for step, seconds in first_steps.items():
        print(f"    {step}: {seconds * 1e3:.0f} ms")
    for kind, times in changes.items():
        rows_selected = statistics.median(selected[kind])
        print(f"  filter change ({kind}, about {rows_selected:,.0f} rows selected, roofline page): median "
              f"{statistics.median(times) * 1e3:.0f} ms over {len(times)} "
              f"(target <= {FILTER_CHANGE_TARGET_S * 1e3:.0f} ms);"
              f" all: {', '.join(f'{c * 1e3:.0f}' for c in times)} ms")
        for step, seconds in change_steps[kind].items():
            print(f"    {step} (last): {seconds * 1e3:.0f} ms")
    ok = first_s <= FIRST_PAGE_TARGET_S and change_s <= FILTER_CHANGE_TARGET_S
    print("  targets met" if ok else "  TARGET MISSED")
    return 0


def browser_bench(app: Any, data: Any, as_json: bool, build_s: float, load_s: float, app_s: float,
                  repeat: int, only: list[str] | None = None) -> int:
    """Every page in headless Chromium: first render, filter change, server RSS (see module doc)."""
    import dashboard_browser as web

    from perfscope.dashboards.pages import PAGES
    from perfscope.hostload import ForeignLoad

    devices = data.options.get("device") or []
    selections = [[d] for d in devices[:2]] + [[]]  # one device, the other, then all rows again
    url, http = web.serve(app)
    driver = web.chromium()
    pages: dict[str, dict[str, float]] = {}
    errors: dict[str, list[str]] = {}
    load = ForeignLoad()
    load.start()
    try:
        # The browser's first visits, reported apart: V8 compiles plotly.js (4.8 MB) on the first two
        # loads and keeps its code cache from the second on, as for anyone who opened the dashboard before.
        cold_s = [web.first_render_s(driver, url + "/") for _ in range(COLD_VISITS)]
        for page in [p for p in PAGES if not only or p.KEY in only]:
            web.severe_console_messages(driver)
            first = web.first_render_s(driver, url + page.PATH)
            changes = [web.filter_change_s(driver, "device", value) for value in selections[:max(1, repeat)]]
            pages[page.KEY] = {"first_render_s": round(first, 3),
                               "filter_change_s": round(statistics.median(changes), 3)}
            messages = web.severe_console_messages(driver)
            if messages:
                errors[page.KEY] = messages
    finally:
        driver.quit()
        http.shutdown()
    rss_mb, peak_mb = web.rss_mb()
    other_share = load.share()
    for figures in pages.values():
        figures["pass"] = (figures["first_render_s"] <= BROWSER_FIRST_RENDER_TARGET_S
                           and figures["filter_change_s"] <= BROWSER_FILTER_CHANGE_TARGET_S)
    failed = not all(f["pass"] for f in pages.values()) or rss_mb > SERVER_RSS_TARGET_MB
    if as_json:
        print(json.dumps({"rows": int(len(data.rows)), "server_rss_mb": round(rss_mb, 1), "pages": pages,
                          "server_rss_pass": rss_mb <= SERVER_RSS_TARGET_MB, "pass": not failed,
                          "targets": {"first_render_s": BROWSER_FIRST_RENDER_TARGET_S,
                                      "filter_change_s": BROWSER_FILTER_CHANGE_TARGET_S,
                                      "server_rss_mb": SERVER_RSS_TARGET_MB},
                          "cold_visits_s": [round(c, 3) for c in cold_s], "server_peak_rss_mb": round(peak_mb, 1),
                          "other_cpu_share": None if other_share is None else round(other_share, 3)}))
    else:
        print(f"dashboard browser bench: {len(data.rows):,} rows, headless Chromium (selenium), server in-process")
        print(f"  startup: bench frame {build_s:.1f} s, features {load_s:.1f} s, create_app {app_s:.1f} s")
        print(f"  the browser's first {COLD_VISITS} visits of the overview (V8 compiles plotly.js, not yet "
              f"code-cached): {', '.join(f'{c:.2f}' for c in cold_s)} s (not in the per-page figures)")
        for key, figures in pages.items():
            ok = figures["pass"]
            print(f"  {key:<11} first render {figures['first_render_s']:6.2f} s   filter change (median of "
                  f"{len(selections)}) {figures['filter_change_s']:6.2f} s   {'pass' if ok else 'FAIL'}"
                  + (f"   console errors: {len(errors[key])}" if key in errors else ""))
        print(f"  server RSS {rss_mb:.0f} MB (peak {peak_mb:.0f} MB; target <= {SERVER_RSS_TARGET_MB:.0f} MB): "
              f"{'pass' if rss_mb <= SERVER_RSS_TARGET_MB else 'FAIL'}")
        print(f"  targets: first render <= {BROWSER_FIRST_RENDER_TARGET_S} s, filter change <= "
              f"{BROWSER_FILTER_CHANGE_TARGET_S} s; processes other than the server (Chromium included) used "
              + (f"{other_share:.0%}" if other_share is not None else "an unknown share") + " of the CPUs meanwhile")
        print("  all targets met" if not failed else "  TARGET MISSED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
