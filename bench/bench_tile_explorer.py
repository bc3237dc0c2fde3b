"""The tile explorer page (/tiles) in headless Chromium on a real dataset: first render and a brush.

``bench_dashboard.py --browser`` times every page on its synthetic frame, whose tiles are a
handful of GEMM tile sizes; an imported parameter space (a Kernel Tuner cache: about
11,000 configurations over eight tunable parameters) is what loads the page's parallel
coordinates. This bench opens /tiles on the datasets given and reports, measured inside
the browser as ``dashboard_browser.py`` does (``performance.now()``, Dash idle and every
graph drawn, plus two animation frames):

* first render: navigation start to every graph drawn (median of ``--repeat`` visits,
  after two untimed visits in which Chromium compiles plotly.js);
* brush change: a range written to the page's brush store (what a box dragged over an
  axis does) to every graph redrawn (median of ``--repeat``, alternating two ranges);
* the parallel coordinates' figure as the browser holds it: JSON size, traces, points.

Run: ``python bench/bench_tile_explorer.py DATASET [DATASET ...] [--repeat 3] [--json]``
(no dataset: the shipped sample). Times depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import dashboard_browser as web

_BRUSH_JS = """
const t0 = performance.now();
window.dash_clientside.set_props('params-brush', {data: arguments[0]});
return t0;
"""

_FIGURE_JS = """
const graph = document.getElementById(JSON.stringify({name: 'params-parcoords', type: 'figure'}));
const plot = graph ? graph.querySelector('.js-plotly-plot') : null;
if (!plot || !plot.data) return null;
const points = (plot.calcdata || []).reduce((n, c) => n + c.length, 0);
return {json_kb: JSON.stringify(plot.data).length / 1e3,
        traces: plot.data.length, points: points, title: plot.layout.title ? plot.layout.title.text : ''};
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="*", type=Path, help="dataset directories (default: the shipped sample)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from perfscope.dashboards.app import create_app
    from perfscope.dashboards.data import DashboardData
    from perfscope.dashboards.figures.params import TIME_AXIS, brush_text
    from perfscope.hostload import ForeignLoad

    data = DashboardData.load(args.datasets or None)
    app = create_app(data=data)
    url, http = web.serve(app)
    driver = web.chromium()
    load = ForeignLoad()
    load.start()
    try:
        for _ in range(2):  # V8 compiles plotly.js on the first two loads
            web.first_render_s(driver, url + "/tiles")
        firsts = [web.first_render_s(driver, url + "/tiles") for _ in range(args.repeat)]
        figure = driver.execute_script(_FIGURE_JS)
        times = data.rows["time_s"].to_numpy(dtype=float)
        median_s = float(statistics.median(times[times > 0]))
        ranges = [brush_text({TIME_AXIS: (0.0, median_s)}), brush_text({TIME_AXIS: (median_s, 10 * times.max())})]
        brushes = []
        for i in range(args.repeat):
            t0 = driver.execute_script(_BRUSH_JS, ranges[i % 2])
            end_ms = driver.execute_async_script(web._SETTLE_JS, t0, True)
            if end_ms < 0:
                raise RuntimeError("the page did not settle after a brush")
            brushes.append((end_ms - t0) / 1e3)
        brushed = driver.execute_script(_FIGURE_JS)
        errors = web.severe_console_messages(driver)
    finally:
        driver.quit()
        http.shutdown()
    share = load.share()
    result = {"rows": int(len(data.rows)), "first_render_s": round(statistics.median(firsts), 3),
              "brush_change_s": round(statistics.median(brushes), 3), "parcoords": figure,
              "parcoords_brushed": brushed, "console_errors": len(errors),
              "other_cpu_share": None if share is None else round(share, 3)}
    if args.json:
        print(json.dumps(result))
        return 0
    source = ", ".join(map(str, args.datasets)) or "the sample"
    print(f"tile explorer in headless Chromium: {result['rows']:,} rows from {source}")
    print(f"  first render (median of {args.repeat}): {result['first_render_s']:.2f} s; all: "
          f"{', '.join(f'{f:.2f}' for f in firsts)} s")
    print(f"  brush change (median of {args.repeat}): {result['brush_change_s']:.2f} s; all: "
          f"{', '.join(f'{b:.2f}' for b in brushes)} s")
    if figure:
        print(f"  parallel coordinates: {figure['json_kb']:.0f} kB of trace JSON, {figure['traces']} traces, "
              f"{figure['points']:,} points")
    print(f"  console errors: {len(errors)}; processes other than the server (Chromium included) used "
          + (f"{share:.0%}" if share is not None else "an unknown share") + " of the CPUs meanwhile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
