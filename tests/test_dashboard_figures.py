"""The dashboard's pure pieces: figure functions, filters, data layer, waterline maths.

``dashboard_rows`` builds a small dataset (an H100 by its spec-table name, and a CPU with
no peaks) whose times are set from the roofline bound, so the figures have known
answers; the callback and browser tests import it.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from perfscope.dashboards import filters as flt
from perfscope.dashboards.data import DashboardData
from perfscope.dashboards.figures import carbon, common, efficiency, estimate, overview, roofline, scaling, tiles
from perfscope.dashboards.waterline import Layer, load_sequences, matched_columns, waterline
from perfscope.devices.registry import device_spec
from perfscope.schema import Measurement, config_id, rows_to_table

H100_KEY = "cuda-nvidia-h100-80gb-hbm3"
H100_NAME = "NVIDIA H100 80GB HBM3"
H100 = device_spec("h100-sxm")
SIZES = (128, 256, 512, 1024, 2048)
TILES = (None, (64, 64, 32), (128, 128, 32), (128, 64, 32))
TILE_EFFICIENCY = {None: 0.5, (64, 64, 32): 0.3, (128, 128, 32): 0.6, (128, 64, 32): 0.4}
POWER_W = 300.0


def measurement(**overrides) -> Measurement:
    """A valid row (like tests/conftest.py's make_row) with configuration overrides."""
    config_keys = ("kernel", "implementation", "dtype", "cache_mode", "batch", "m", "n", "k", "tile_m", "tile_n",
                   "tile_k")
    config = {"kernel": "gemm", "implementation": "torch.matmul", "dtype": "fp32", "cache_mode": "warm",
              "batch": 1, "m": 8, "n": 8, "k": 8}
    config.update({k: v for k, v in overrides.items() if k in config_keys})
    values = dict(config)
    values.update(run_id="run-a", config_id=config_id({k: v for k, v in config.items() if v is not None}),
                  measured_at=datetime(2026, 1, 2, tzinfo=timezone.utc), device_key=H100_KEY, status="ok", host="h",
                  os="Linux", cpu_model="cpu", threads=2, python_version="3.11", perfscope_version="0",
                  device_kind="cuda", device_name=H100_NAME, time_median_ms=1.0, samples_ms=[1.0],
                  energy_method="nvml-counter")
    values.update(overrides)
    return Measurement(**values)


def h100_time_s(size: int, dtype: str, tile: tuple | None, batch: int = 1) -> float:
    """Measured time of the synthetic rows: the roofline bound over a per-tile efficiency."""
    s = 4 if dtype == "fp32" else 2
    flops = 2 * batch * size ** 3
    nbytes = s * batch * 3 * size * size
    bound = max(flops / H100.peaks_flops_per_s[dtype], nbytes / H100.mem_bandwidth_bytes_per_s,
                H100.launch_overhead_s)
    return bound / TILE_EFFICIENCY[tile]


def dashboard_rows() -> list[Measurement]:
    """H100 GEMMs (5 sizes x fp32/bf16 x 4 tiles, energy measured), CPU GEMMs (estimated
    energy, one noisy), one unsupported and one throttled row."""
    rows = []
    for size in SIZES:
        for dtype in ("fp32", "bf16"):
            for tile in TILES:
                t = h100_time_s(size, dtype, tile)
                tm, tn, tk = tile or (None, None, None)
                rows.append(measurement(m=size, n=size, k=size, dtype=dtype, tile_m=tm, tile_n=tn, tile_k=tk,
                                        implementation="triton.matmul" if tile else "torch.matmul",
                                        time_median_ms=t * 1e3, flops=2 * size ** 3,
                                        energy_gross_j=t * POWER_W, energy_net_j=t * (POWER_W - 60)))
    for i, size in enumerate((64, 128, 256, 512)):
        rows.append(measurement(m=size, n=size, k=size, device_key="cpu-test", device_name="test cpu", run_id="run-cpu",
                                device_kind="cpu", time_median_ms=2e-6 * size ** 3 / 1e3 * 1e3 + 0.01,
                                energy_method="estimate-tdp", energy_is_estimate=True,
                                energy_gross_j=0.5 * size / 64, noisy=(i == 0)))
    rows.append(measurement(m=4096, n=4096, k=4096, dtype="fp16", status="unsupported",
                            reason="no such kernel here", time_median_ms=None, samples_ms=None))
    rows.append(measurement(m=4096, n=4096, k=4096, dtype="bf16", batch=2, throttled=True,
                            time_median_ms=h100_time_s(4096, "bf16", None, batch=2) * 1e3))
    return rows


def dashboard_frame() -> pd.DataFrame:
    """``dashboard_rows`` as the store would hand them over (Arrow -> pandas)."""
    return rows_to_table(dashboard_rows()).to_pandas(strings_to_categorical=True)


@pytest.fixture(scope="module", autouse=True)
def no_calibrated_profiles(tmp_path_factory):
    """Device resolution must not see profiles calibrated on this machine."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFSCOPE_HOME", str(tmp_path_factory.mktemp("perfscope-home")))
        yield


@pytest.fixture(scope="module")
def data() -> DashboardData:
    return DashboardData.from_rows(dashboard_frame())


@pytest.fixture(scope="module")
def rows(data: DashboardData) -> pd.DataFrame:
    return data.rows


# ---- every figure function: empty and missing-column frames give a message --------------

FIGURES = {
    "coverage": overview.coverage_figure,
    "quality": overview.quality_figure,
    "roofline": roofline.roofline_figure,
    "latency": efficiency.latency_flops_figure,
    "gap": efficiency.gap_figure,
    "scaling": scaling.scaling_figure,
    "tiles": tiles.tile_heatmap_figure,
    "carbon": lambda r: carbon.carbon_figure(carbon.carbon_frame(r, intensity_gco2e_per_kwh=100.0)),
    "waterline": lambda r: efficiency.waterline_figure(r),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_empty_frame_gives_a_message_not_an_exception(name, rows):
    fig = FIGURES[name](rows.iloc[:0])
    assert common.is_message(fig)
    assert common.message_text(fig)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_frame_missing_columns_gives_a_message(name):
    fig = FIGURES[name](pd.DataFrame({"unrelated": [1, 2, 3]}))
    assert common.is_message(fig)
    text = common.message_text(fig)
    assert "lack" in text or "no rows" in text or "none of" in text


@pytest.mark.parametrize("name", sorted(set(FIGURES) - {"waterline"}))
def test_figures_draw_the_rows(name, rows):
    fig = FIGURES[name](rows)
    assert not common.is_message(fig), common.message_text(fig)
    assert len(fig.data) > 0
    fig.to_json()  # serialisable as Dash will send it


def test_message_names_the_missing_column(rows):
    fig = roofline.roofline_figure(rows.drop(columns=["intensity_flops_per_byte"]))
    assert "intensity_flops_per_byte" in common.message_text(fig)


# ---- roofline ------------------------------------------------------------------------------

def test_roofline_ceilings_are_min_of_peak_and_bandwidth(rows):
    h100 = rows[rows["device_key"] == H100_KEY]
    fig = roofline.roofline_figure(h100)
    ceilings = [t for t in fig.data if "ceiling" in (t.hovertemplate or "")]
    names = sorted(t.name for t in ceilings)
    assert names == [f"{H100_KEY} bf16 (spec sheet)", f"{H100_KEY} fp32 (spec sheet)"]
    for trace in ceilings:
        dtype = "bf16" if "bf16" in trace.name else "fp32"
        x, y = np.asarray(trace.x), np.asarray(trace.y)
        expected = np.minimum(H100.peaks_flops_per_s[dtype], x * H100.mem_bandwidth_bytes_per_s)
        np.testing.assert_allclose(y, expected)
    assert trace.line.dash == "dash"  # spec-sheet ceilings are dashed


def test_calibrated_ceilings_are_drawn_solid_next_to_the_spec(monkeypatch, tmp_path):
    from perfscope.dashboards.data import ceilings_frame
    from perfscope.devices.profile import DeviceProfile
    from perfscope.devices.registry import save_profile

    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path))
    save_profile(DeviceProfile(device_key=H100_KEY, name=H100_NAME, kind="cuda",
                               peaks_flops_per_s={"fp32": 5.0e13, "bf16": 7.0e14}, mem_bandwidth_bytes_per_s=3.0e12,
                               launch_overhead_s=4e-6, sm_count=132, l2_bytes=None, memory_bytes=None,
                               measured_at="2026-01-02T00:00:00+00:00", calibrate_s=1.0, spec_id="h100-sxm"))
    calibrated = DashboardData.from_rows(dashboard_frame())
    info = calibrated.devices[H100_KEY]
    assert info.calibrated is not None and info.spec is not None and "calibrated" in info.note
    h100 = calibrated.rows[calibrated.rows["device_key"] == H100_KEY]
    assert set(h100["device_source"].astype(str)) == {"calibrated"}  # the bound uses the measured peaks
    fig = roofline.roofline_figure(h100, ceilings_frame({H100_KEY: info}))
    styles = {t.name: t.line.dash for t in fig.data if t.mode == "lines"}
    assert styles[f"{H100_KEY} bf16 (calibrated profile)"] == "solid"
    assert styles[f"{H100_KEY} bf16 (spec sheet)"] == "dash"
    bf16 = next(t for t in fig.data if t.name == f"{H100_KEY} bf16 (calibrated profile)")
    assert max(bf16.y) == pytest.approx(7.0e14)


def _h100_profile(bf16_peak: float, when: str):
    from perfscope.devices.profile import DeviceProfile

    return DeviceProfile(device_key=H100_KEY, name=H100_NAME, kind="cuda",
                         peaks_flops_per_s={"fp32": 5.0e13, "bf16": bf16_peak}, mem_bandwidth_bytes_per_s=3.0e12,
                         launch_overhead_s=4e-6, sm_count=132, l2_bytes=None, memory_bytes=None,
                         measured_at=f"{when}T00:00:00+00:00", calibrate_s=1.0, spec_id="h100-sxm")


def test_the_datasets_own_profile_wins_over_the_viewers_calibration(monkeypatch, tmp_path):
    from perfscope.dashboards.data import ceilings_frame
    from perfscope.dashboards.pages.roofline import ceiling_labels, ceiling_sources
    from perfscope.devices.registry import DATASET_PROFILE_SUBDIR, profile_path, save_profile
    from perfscope.store import ProfileStore

    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))
    viewer_file = save_profile(_h100_profile(7.0e14, "2026-01-02"))  # this machine's own calibration
    dataset = tmp_path / "dataset"
    ProfileStore(dataset, create=True).append(dashboard_rows())
    own_file = save_profile(_h100_profile(6.0e14, "2025-11-30"),
                            profile_path(H100_KEY, dataset / DATASET_PROFILE_SUBDIR))

    loaded = DashboardData.load([dataset])  # the store still reads: "_devices" is not a partition
    assert len(loaded.rows) == len(dashboard_rows())
    info = loaded.devices[H100_KEY]
    assert info.calibrated_origin == "dataset" and info.used.peaks_flops_per_s["bf16"] == pytest.approx(6.0e14)
    assert str(own_file) in info.note and "your own calibration of this device is not used" in info.note
    label = ceiling_sources({H100_KEY: info})[f"{H100_KEY}:calibrated"]
    assert label.startswith("the dataset's own profile, calibrated 2025-11-30") and str(own_file) in label
    fig = roofline.roofline_figure(loaded.rows[loaded.rows["device_key"] == H100_KEY],
                                   ceilings_frame({H100_KEY: info}), sources=ceiling_sources({H100_KEY: info}),
                                   labels=ceiling_labels({H100_KEY: info}))
    # the legend names whose profile drew the ceiling, its date and file
    bf16 = next(t for t in fig.data if t.name == f"{H100_KEY} bf16 (dataset's profile 2025-11-30, {own_file.name})")
    assert max(bf16.y) == pytest.approx(6.0e14) and "dataset's own profile" in bf16.hovertemplate
    assert any(t.name == f"{H100_KEY} bf16 (spec sheet)" for t in fig.data)

    viewers = DashboardData.load([_copy_without_profile(dataset, tmp_path)])
    info = viewers.devices[H100_KEY]  # no profile in the dataset: the viewer's calibration, and it says so
    assert info.calibrated_origin == "viewer" and info.used.peaks_flops_per_s["bf16"] == pytest.approx(7.0e14)
    label = ceiling_sources({H100_KEY: info})[f"{H100_KEY}:calibrated"]
    assert label.startswith("your calibration, calibrated 2026-01-02") and str(viewer_file) in label
    legend = ceiling_labels({H100_KEY: info})[f"{H100_KEY}:calibrated"]
    assert legend == f"your calibration 2026-01-02, {viewer_file.name}"


def _copy_without_profile(dataset, tmp_path):
    import shutil

    from perfscope.devices.registry import DATASET_PROFILE_SUBDIR

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy, ignore=shutil.ignore_patterns(DATASET_PROFILE_SUBDIR))
    return copy


def test_roofline_points_are_flops_over_time(rows):
    h100 = rows[(rows["device_key"] == H100_KEY) & (rows["dtype"] == "fp32") & rows["tile_m"].isna()]
    fig = roofline.roofline_figure(h100)
    points = [t for t in fig.data if t.mode == "markers"]
    ys = np.sort(np.asarray(points[0].y))
    expected = np.sort([2 * s ** 3 / h100_time_s(s, "fp32", None) for s in SIZES])
    np.testing.assert_allclose(ys, expected, rtol=1e-9)


def test_roofline_without_peaks_says_so(rows):
    cpu = rows[rows["device_key"] == "cpu-test"]
    fig = roofline.roofline_figure(cpu)
    assert not common.is_message(fig)
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "no ceilings" in notes


def test_thinning_keeps_every_row_counted():
    rng = np.random.default_rng(0)
    n = 50_000
    frame = pd.DataFrame({"x": 10 ** rng.uniform(0, 6, n), "y": 10 ** rng.uniform(0, 6, n),
                          "dtype": rng.choice(["fp32", "bf16"], n)})
    thinned, note = common.thin_points(frame, "x", "y", by="dtype", max_points=2_000)
    assert len(thinned) <= 2_000
    assert thinned["point_count"].sum() == n
    assert "50,000 rows" in note
    small, none = common.thin_points(frame.head(100), "x", "y", max_points=2_000)
    assert len(small) == 100 and none is None


# ---- efficiency gap and waterline ----------------------------------------------------------

def test_gap_is_time_over_bound(rows):
    h100 = rows[(rows["device_key"] == H100_KEY) & (rows["status"] == "ok")]
    for tile, eff in TILE_EFFICIENCY.items():
        part = h100[h100["tile_m"].isna()] if tile is None else h100[h100["tile_m"] == tile[0]]
        part = part[part["tile_n"].isna()] if tile is None else part[part["tile_n"] == tile[1]]
        np.testing.assert_allclose(part["gap"].dropna(), 1 / eff, rtol=1e-6)


def test_latency_figure_has_peak_line_and_iso_efficiency_diagonals(rows):
    fig = efficiency.latency_flops_figure(rows[rows["device_key"] == H100_KEY])
    names = [t.name for t in fig.data]
    assert any(n.startswith("peak ") for n in names)
    iso = [t for t in fig.data if "of" in (t.name or "") and "peak" in (t.name or "")]
    assert {t.name.split("%")[0] for t in iso} == {"50", "25", "10", "1"}
    assert all(t.name.endswith("of fp32 peak") or t.name.endswith("of bf16 peak") for t in iso)
    assert not any("fp16" in (t.name or "") for t in fig.data)  # the fp16 row was not measured: no line
    peak = next(t for t in fig.data if t.name.startswith("peak "))
    dtype = peak.name.split()[-1]
    np.testing.assert_allclose(np.asarray(peak.y), np.asarray(peak.x) / H100.peaks_flops_per_s[dtype])


def test_gap_table_lists_worst_first(rows):
    table = efficiency.gap_table(rows, top=3)
    assert len(table) == 3
    gaps = [float(g.rstrip("x")) for g in table["gap"]]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[0] == pytest.approx(1 / min(TILE_EFFICIENCY.values()), rel=5e-3)  # printed to 3 digits


def test_waterline_sums_and_fused_bound():
    layers = [Layer("up", "gemm", (("batch", 1), ("k", 1024), ("m", 2048), ("n", 4096))),
              Layer("down", "gemm", (("batch", 1), ("k", 4096), ("m", 2048), ("n", 1024)))]
    frame, totals = waterline(layers, "bf16", H100)
    assert totals["sum_bound_s"] == pytest.approx(frame["bound_time_s"].sum())
    # the intermediate 2048 x 4096 bf16 tensor is written once and read once
    assert totals["intermediate_bytes_removed"] == pytest.approx(2 * 2 * 2048 * 4096)
    assert totals["fused_min_bytes"] == pytest.approx(frame["min_bytes"].sum() - 2 * 2 * 2048 * 4096)
    flops = 2 * 2048 * 4096 * 1024 * 2
    expected = max(flops / H100.peaks_flops_per_s["bf16"], totals["fused_min_bytes"] / H100.mem_bandwidth_bytes_per_s,
                   H100.launch_overhead_s)
    assert totals["fused_bound_s"] == pytest.approx(expected)
    assert totals["fused_bound_s"] <= totals["sum_bound_s"]
    assert math.isnan(totals["measured_sum_s"])  # nothing measured was given
    fig = efficiency.waterline_figure(frame, totals)
    assert [t.name for t in fig.data][:3] == ["roofline bound", "measured (median)", "totals"]


def test_waterline_matches_measured_rows(rows):
    layers = [Layer("a", "gemm", (("m", 512), ("n", 512), ("k", 512))),
              Layer("b", "gemm", (("m", 999), ("n", 999), ("k", 999)))]
    measured = rows[(rows["device_key"] == H100_KEY) & (rows["dtype"] == "fp32") & (rows["status"] == "ok")]
    frame, totals = waterline(layers, "fp32", H100, measured)
    assert frame["measured_rows"].tolist() == [len(TILES), 0]
    expected = np.median([h100_time_s(512, "fp32", t) for t in TILES])
    assert frame["time_s"].iloc[0] == pytest.approx(expected)
    assert totals["measured_sum_s"] == pytest.approx(expected)
    assert totals["measured_layers"] == 1
    narrow = measured[list(matched_columns(layers))]  # what the page reads: the sizes the layers set
    assert "conv_c" not in narrow and {"m", "n", "k", "batch"} <= set(narrow)
    pd.testing.assert_frame_equal(waterline(layers, "fp32", H100, narrow)[0], frame)


def test_shipped_sequences_load():
    sequences = load_sequences()
    assert len(sequences) >= 3
    assert any(layer.kernel == "conv" for s in sequences for layer in s.layers)
    assert all(s.layers for s in sequences)


# ---- scaling -------------------------------------------------------------------------------

def test_scaling_fits_each_group_with_enough_sizes(rows):
    fig, table = scaling.scaling_view(rows, "flops", ["device_key", "implementation", "dtype"])
    fitted = table[table["note"] == ""].set_index("group")["points"].to_dict()
    assert fitted == {f"{H100_KEY} torch.matmul fp32": 5, f"{H100_KEY} torch.matmul bf16": 6,  # + the throttled row
                      f"{H100_KEY} triton.matmul fp32": 5, f"{H100_KEY} triton.matmul bf16": 5,
                      "cpu-test torch.matmul fp32": 4}
    fit_lines = [t for t in fig.data if t.mode == "lines" and t.showlegend is False]
    assert len(fit_lines) >= len(fitted)
    assert any(t.fill == "toself" for t in fig.data)  # the band


def test_scaling_reports_groups_too_small_to_fit(rows):
    few = rows[rows["m"] <= 256]
    _, table = scaling.scaling_view(few, "flops", ["device_key", "dtype"])
    assert (table["note"].str.contains("at least 4")).all()


def test_scaling_draws_a_spread_of_many_sizes_but_fits_them_all():
    sizes = np.logspace(6, 12, 400)
    many = pd.DataFrame({"device_key": "d", "implementation": "i", "dtype": "fp32", "flops": sizes,
                         "time_s": 1e-5 + sizes / 1e12})
    fig, table = scaling.scaling_view(many, "flops", ["device_key", "implementation", "dtype"])
    assert table["points"].tolist() == [400]  # the fit saw every size
    measured = [t for t in fig.data if t.mode == "markers"]
    assert len(measured) == 1 and len(measured[0].x) <= scaling.MAX_DRAWN_PER_GROUP
    drawn = np.log10(np.asarray(measured[0].x, dtype=float))
    assert drawn.min() == pytest.approx(6) and drawn.max() > 11.9  # spread over the whole x range
    assert "not drawn" in str(fig.layout.annotations[-1].text)


# ---- carbon --------------------------------------------------------------------------------

def test_carbon_frame_numbers(rows):
    h100 = rows[(rows["device_key"] == H100_KEY) & (rows["dtype"] == "fp32") & (rows["m"] == 1024)
                & rows["tile_m"].isna()]
    frame = carbon.carbon_frame(h100, intensity_gco2e_per_kwh=400.0, pue=1.5, calls=1e6)
    assert len(frame) == 1
    energy_j = h100_time_s(1024, "fp32", None) * POWER_W
    assert frame["energy_j"].iloc[0] == pytest.approx(energy_j)
    assert frame["energy_kwh"].iloc[0] == pytest.approx(energy_j * 1e6 / 3.6e6)
    assert frame["total_gco2e"].iloc[0] == pytest.approx(energy_j * 1e6 / 3.6e6 * 1.5 * 400.0)
    net = carbon.carbon_frame(h100, intensity_gco2e_per_kwh=400.0, energy="net")
    assert net["energy_j"].iloc[0] < frame["energy_j"].iloc[0]


def test_carbon_figure_labels_estimated_energy(rows):
    frame = carbon.carbon_frame(rows, intensity_gco2e_per_kwh=100.0)
    fig = carbon.carbon_figure(frame, "device_key")
    estimated = [t for t in fig.data if "(estimated energy)" in t.name]
    measured = [t for t in fig.data if "(estimated energy)" not in t.name]
    assert estimated and measured
    assert all(t.marker.pattern.shape == "/" for t in estimated)
    assert all(t.name.startswith("cpu-test") for t in estimated)
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "estimated" in notes and "without energy" in notes  # the unsupported row has none


def test_carbon_rows_without_energy_say_why(rows):
    no_energy = rows.assign(energy_gross_j=np.nan)
    fig = carbon.carbon_figure(carbon.carbon_frame(no_energy, intensity_gco2e_per_kwh=100.0))
    assert "has energy" in common.message_text(fig)


# ---- tiles, estimate, overview ------------------------------------------------------------

def test_tile_heatmap_marks_the_best_tile(rows):
    part = rows[(rows["device_key"] == H100_KEY) & (rows["m"] == 1024) & (rows["dtype"] == "bf16")]
    fig = tiles.tile_heatmap_figure(part)
    heat = fig.data[0]
    best = max(TILE_EFFICIENCY.items(), key=lambda kv: kv[1] if kv[0] else -1)[0]
    ys, xs = list(heat.y), list(heat.x)
    cell = heat.text[ys.index(str(best[0]))][xs.index(str(best[1]))]
    assert cell.startswith("★")
    starred = [c for row in heat.text for c in row if c.startswith("★")]
    assert len(starred) == 1
    assert "best: 128x128, k 32" in " ".join(a.text for a in fig.layout.annotations)


def test_tile_heatmap_shows_predictions_next_to_measurements(rows):
    part = rows[(rows["device_key"] == H100_KEY) & (rows["m"] == 1024) & (rows["dtype"] == "bf16")]
    fig = tiles.tile_heatmap_figure(part.assign(predicted_time_s=part["time_s"] * 2))
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2
    assert [a.text for a in fig.layout.annotations][:2] == ["measured", "predicted (model)"]


def test_estimate_normalises_key_spellings():
    values = estimate.normalise_estimate({"latency_s": 2e-3, "latency_low_s": 1e-3, "latency_high_s": 3e-3,
                                          "bound_time_s": 5e-4, "energy_j": 0.4, "bound": "compute"})
    assert values["time_s"] == 2e-3 and values["low_s"] == 1e-3 and values["high_s"] == 3e-3
    assert values["bound_s"] == 5e-4 and values["regime"] == "compute"
    ms = estimate.normalise_estimate({"time_ms": 2.0, "interval_ms": [1.0, 3.0]})
    assert ms["time_s"] == pytest.approx(2e-3) and ms["high_s"] == pytest.approx(3e-3)
    fig = estimate.estimate_figure({"time_ms": 2.0, "interval_ms": [1.0, 3.0], "bound_time_ms": 0.5})
    assert fig.data[0].error_x.array[0] == pytest.approx(1e-3)
    assert common.is_message(estimate.estimate_figure(None))
    assert common.is_message(estimate.estimate_figure({"something": 1}))


def test_quality_flags_count_each_flag(rows):
    flags = overview.quality_flags(rows).set_index("flag")["rows"]
    assert flags["noisy"] == 1
    assert flags["throttled"] == 1
    assert flags["estimated energy"] == 4
    assert flags["non-ok status"] == 1
    statuses = overview.status_counts(rows).set_index("status")
    assert statuses.loc["unsupported", "example reason"] == "no such kernel here"


def test_shape_labels_per_family():
    frame = pd.DataFrame({
        "kernel": ["gemm", "gemm", "conv", "attention"],
        "batch": [1, 4, np.nan, 2], "m": [256, 8, np.nan, np.nan], "n": [128, 8, np.nan, np.nan],
        "k": [64, 8, np.nan, np.nan], "conv_n": [np.nan, np.nan, 32, np.nan], "conv_c": [np.nan, np.nan, 64, np.nan],
        "conv_h": [np.nan, np.nan, 56, np.nan], "conv_w": [np.nan, np.nan, 56, np.nan],
        "conv_k": [np.nan, np.nan, 128, np.nan], "conv_r": [np.nan, np.nan, 3, np.nan],
        "conv_s": [np.nan, np.nan, 3, np.nan], "stride_h": [np.nan, np.nan, 2, np.nan],
        "pad_h": [np.nan, np.nan, 1, np.nan], "heads": [np.nan, np.nan, np.nan, 16],
        "kv_heads": [np.nan, np.nan, np.nan, 4], "seq_q": [np.nan, np.nan, np.nan, 1024],
        "seq_k": [np.nan, np.nan, np.nan, 1024], "head_dim": [np.nan, np.nan, np.nan, 64],
        "causal": [None, None, None, True],
    })
    assert list(common.shape_labels(frame)) == ["256x128x64", "4x8x8x8", "n32 c64 56x56 k128 3x3 s2 p1",
                                                "b2 h16/4 q1024 k1024 d64 causal"]


# ---- filters and the data layer -------------------------------------------------------------

def test_filters_round_trip_through_the_query_string():
    filters = {"dtype": ["fp32", "bf16"], "device": ["h100"], "unknown": ["x"]}
    query = flt.query_from_filters(filters)
    assert query.startswith("?")
    back = flt.filters_from_query(query)
    assert back["dtype"] == ["bf16", "fp32"] and back["device"] == ["h100"] and "unknown" not in back
    assert flt.filters_from_query("?dtype=fp32,bf16")["dtype"] == ["bf16", "fp32"]
    assert flt.query_from_filters(flt.empty_filters()) == ""


def test_data_filters_select_the_right_rows(data):
    total = len(data.rows)
    bf16 = data.select({"dtype": ["bf16"]})
    assert len(bf16) == (data.rows["dtype"] == "bf16").sum() and len(bf16) < total
    both = data.select({"dtype": ["bf16"], "device": [H100_KEY], "batch": ["2"]})
    assert len(both) == 1 and bool(both["throttled"].iloc[0])
    tiled = data.select({"tile": ["128x128x32"]})
    assert len(tiled) == 2 * len(SIZES)
    assert data.select({"tile": ["untiled"]})["tile_m"].isna().all()
    assert data.count({"device": ["nothing"]}) == 0
    assert data.options["tile"] == sorted(["128x128x32", "128x64x32", "64x64x32", "untiled"])
    assert set(data.options["device"]) == {H100_KEY, "cpu-test"}


def test_devices_resolve_to_spec_or_none(data):
    assert data.devices[H100_KEY].used.key == "h100-sxm"
    assert data.devices["cpu-test"].used.source_kind == "none"
    assert "calibrate" in data.devices["cpu-test"].note
    cpu = data.rows[data.rows["device_key"] == "cpu-test"]
    assert cpu["bound_time_s"].isna().all() and cpu["gap"].isna().all()
    assert cpu["intensity_flops_per_byte"].notna().all()  # work and traffic need no device


# ---- time vs energy ------------------------------------------------------------------------

def test_pareto_front_keeps_only_unbeaten_points():
    from perfscope.dashboards.figures.pareto import pareto_mask

    time_s = np.array([1.0, 2.0, 3.0, 2.5, 1.0, np.nan])
    energy_j = np.array([5.0, 3.0, 1.0, 4.0, 6.0, 0.1])
    # (2.5, 4) is beaten by (2, 3); (1, 6) by (1, 5); the NaN point is not drawn
    assert pareto_mask(time_s, energy_j).tolist() == [True, True, True, False, False, False]


def test_pareto_figure_per_configuration_with_doubtful_energy_hollow(rows):
    from perfscope.dashboards.figures.pareto import pareto_figure

    fig, table = pareto_figure(rows)
    assert not common.is_message(fig)
    front = next(t for t in fig.data if t.name == "Pareto front")
    assert len(front.x) == len(table) >= 1
    hollow = [t for t in fig.data if "estimated/doubtful" in (t.name or "")]
    assert hollow and all(t.marker.symbol.endswith("-open") for t in hollow)  # the CPU rows' TDP estimates
    net, _ = pareto_figure(rows.assign(energy_net_j=np.nan), "net")
    assert common.is_message(net) and "idle power" in common.message_text(net)
    # beyond max_points configurations: the front and at most max_points of the rest are drawn
    n_configs = rows.groupby(["device_key", "config_id"], observed=True).ngroups
    thinned, _ = pareto_figure(rows, max_points=n_configs // 3)
    drawn = sum(len(t.x) for t in thinned.data if t.name != "Pareto front")
    assert drawn <= n_configs // 3 + len(table) and drawn < n_configs


def test_parameter_space_views_any_param_columns():
    from perfscope.dashboards.figures.params import (
        HOVER_TRACE,
        parameter_heatmap,
        parameter_parallel_coordinates,
        varying_parameters,
    )

    grid = [(bx, by, u) for bx in (16, 32, 64) for by in (1, 2, 4) for u in (0, 1)]
    rows = pd.DataFrame({"param_block_size_x": [g[0] for g in grid], "param_block_size_y": [g[1] for g in grid],
                         "param_unroll": [g[2] for g in grid], "tile_m": np.nan,
                         "time_s": [1e-3 * g[0] / 16 / g[1] * (0.9 if g[2] else 1.0) for g in grid]})
    varying = varying_parameters(rows)
    assert varying == ["param_block_size_x", "param_block_size_y", "param_unroll"]
    heat = parameter_heatmap(rows, "param_block_size_x", "param_block_size_y")
    cells = [c for row in heat.data[0].text for c in row]
    assert sum(c.startswith("★") for c in cells) == 1 and "★ 225 µs" in cells  # 16 x 4, unrolled: 1e-3/4*0.9
    parallel = parameter_parallel_coordinates(rows, varying)
    assert list(parallel.layout.xaxis.ticktext) == ["block_size_x", "block_size_y", "unroll", "median time"]
    lines = [t for t in parallel.data if t.mode == "lines"]
    assert {t.type for t in parallel.data} == {"scatter"}  # SVG: no WebGL parcoords
    # one polyline per configuration (4 vertices and a break), every configuration drawn once
    assert sum(len(t.x) for t in lines) == len(grid) * 5
    assert all(t.hoverinfo == "skip" and t.text is None for t in lines)  # hover: one marker per line
    hover, = [t for t in parallel.data if t.mode == "markers" and t.name == HOVER_TRACE]
    assert len(hover.text) == len(grid) and set(hover.x) == {3.0}  # on the time axis
    fastest = hover.text[int(np.argmin(hover.marker.color))]
    assert fastest.startswith("block_size_x 16, block_size_y 4, unroll 1: 225 µs")


def test_parallel_coordinates_stay_bounded_on_a_large_parameter_space():
    from perfscope.dashboards.figures.params import (
        HOVER_TRACE,
        MAX_PARCOORDS_ROWS,
        parameter_parallel_coordinates,
        varying_parameters,
    )

    rng = np.random.default_rng(0)
    n, names = 20_000, [f"param_p{i}" for i in range(6)]
    rows = pd.DataFrame({name: rng.integers(1, 64, n) for name in names})
    rows["time_s"] = 1e-3 * (1.0 + rng.random(n))
    rows.loc[123, "time_s"] = 1e-4  # the best configuration: always drawn
    varying = varying_parameters(rows)
    fig = parameter_parallel_coordinates(rows, varying, {"time_s": (1e-4, 1.5e-3)})
    axes = len(varying) + 1
    lines = [t for t in fig.data if t.mode == "lines"]
    markers = [t for t in fig.data if t.mode == "markers"]
    assert len(fig.data) <= 12  # a trace per colour band (and the greyed), not one per line
    assert sum(len(t.x) for t in lines) == MAX_PARCOORDS_ROWS * (axes + 1)
    assert all(t.text is None for t in lines)
    # one hover string per drawn configuration, none per vertex
    assert sum(len(t.text) for t in markers) == MAX_PARCOORDS_ROWS
    hover, = [t for t in markers if t.name == HOVER_TRACE]
    best = ", ".join(f"{name.removeprefix('param_')} {rows.loc[123, name]:g}" for name in varying)
    assert any(text.startswith(best) for text in hover.text)
    assert f"{MAX_PARCOORDS_ROWS:,} of {n:,} configurations drawn" in fig.layout.title.text
    # a brush on slow configurations draws the fastest of them, not only grey lines
    slow = parameter_parallel_coordinates(rows, varying, {"time_s": (1.98e-3, 2e-3)})  # about 400
    inside = sum(len(t.text) for t in slow.data if t.name == HOVER_TRACE)
    assert 0 < inside == int(((rows["time_s"] >= 1.98e-3) & (rows["time_s"] <= 2e-3)).sum()) < MAX_PARCOORDS_ROWS
    assert sum(len(t.text) for t in slow.data if t.mode == "markers") == MAX_PARCOORDS_ROWS
    assert len(fig.to_json()) < 400_000  # was over 1 MB with hover text on every vertex


def test_a_box_over_parallel_coordinate_axes_brushes_their_ranges():
    from perfscope.dashboards.figures.params import (
        brush_mask,
        brush_ranges,
        brush_text,
        parameter_heatmap,
        parameter_parallel_coordinates,
        parse_brush,
    )

    grid = [(bx, by) for bx in (16, 32, 64) for by in (1, 2, 4)]
    rows = pd.DataFrame({"param_block_size_x": [g[0] for g in grid], "param_block_size_y": [g[1] for g in grid],
                         "time_s": [1e-3 * g[0] / 16 / g[1] for g in grid]})
    varying = ["param_block_size_x", "param_block_size_y"]
    # a box over axis 0 (block_size_x: 16, 32, 64 evenly spaced at 0, 0.5, 1) from 0.4 to 1.02
    ranges = brush_ranges(rows, varying, [{"type": "rect", "x0": -0.1, "x1": 0.1, "y0": 1.02, "y1": 0.4}])
    assert list(ranges) == ["param_block_size_x"]
    assert brush_mask(rows, ranges).sum() == 6  # 32 and 64 kept, 16 out
    # a box across the second axis and the time axis brushes both
    both = brush_ranges(rows, varying, [{"x0": 0.9, "x1": 2.1, "y0": -0.05, "y1": 0.6}])
    assert set(both) == {"param_block_size_y", "time_s"}
    assert both["param_block_size_y"][0] == 1 and 2 <= both["param_block_size_y"][1] < 4
    (low, high), = parse_brush(brush_text(ranges)).values()
    assert (low, high) == pytest.approx(ranges["param_block_size_x"], rel=1e-5)
    assert parse_brush("nonsense;param_a=1..x;param_b=2..3") == {"param_b": (2.0, 3.0)}  # a bad link falls back
    drawn = parameter_parallel_coordinates(rows, varying, ranges)
    grey = [t for t in drawn.data if t.name == "outside the brushed ranges"]
    assert grey and len(grey[0].x) == 3 * 4  # the three block_size_x=16 configurations, greyed
    assert [s.type for s in drawn.layout.shapes].count("rect") == 1 and drawn.layout.dragmode == "select"
    heat = parameter_heatmap(rows[brush_mask(rows, ranges)], *varying)
    assert "16" not in list(heat.data[0].x)


def test_net_of_idle_is_derived_where_idle_power_is_known(rows):
    gross = rows["energy_gross_j"].to_numpy(dtype=float)
    imported = rows.assign(energy_net_j=np.nan, power_idle_w=np.where(np.arange(len(rows)) % 2 == 0, 10.0, np.nan))
    per_config = carbon.energy_per_config(imported, "net")
    has_gross = np.isfinite(gross) & (gross > 0)
    derived = gross - 10.0 * rows["time_s"].to_numpy(dtype=float)
    expect = int((has_gross & (np.arange(len(rows)) % 2 == 0) & (derived > 0)).sum())
    assert expect > 0 and per_config.attrs["rows_net_derived"] == expect
    assert per_config.attrs["rows_without_energy"] == len(rows) - expect
    assert (per_config["energy_j"] <= carbon.energy_per_config(imported, "gross")["energy_j"].max()).all()


def test_carbon_never_calls_doubtful_energy_measured_and_net_says_why(rows):
    doubtful = rows.assign(energy_quality="doubtful", energy_is_estimate=False)
    frame = carbon.carbon_frame(doubtful, intensity_gco2e_per_kwh=400.0)
    assert frame["estimated"].all()
    summary = carbon.carbon_summary(frame)
    assert "measured" not in set(summary["energy"])
    net = carbon.carbon_frame(rows.assign(energy_net_j=np.nan), intensity_gco2e_per_kwh=400.0, energy="net")
    message = common.message_text(carbon.carbon_figure(net))
    assert "net-of-idle" in message and "gross energy" in message and "idle power" in message
