"""Models on synthetic rows with a known law: conventions, recovery, extrapolation, energy."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from synthetic_rows import features_frame  # noqa: E402 (tests/ is on sys.path)

from perfscope.columns import as_columns
from perfscope.devices.registry import device_spec, resolve_row_devices
from perfscope.devicespecs import DeviceFigures
from perfscope.errors import InvalidInputError
from perfscope.models.efficiency import efficiency_gap, efficiency_summary, measured_energy_j, roofline_columns
from perfscope.models.energy_model import EnergyModel, fit_energy_coefficients
from perfscope.models.forest import PAPER_FEATURES, ForestModel, PaperBaselineModel, paper_design
from perfscope.models.intervals import ConformalWrapper
from perfscope.models.roofline_model import LogLinearModel, RooflineModel

H100 = "NVIDIA H100 80GB HBM3"
H100_KEY = "cuda-nvidia-h100-80gb-hbm3"
EFFICIENCY = {"fp32": 0.8, "fp16": 0.5}
IDLE_W, J_PER_FLOP, J_PER_BYTE = 60.0, 2e-12, 5e-10


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    """Resolve devices from the spec table only (no profile of this machine leaks in)."""
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


def synthetic_rows(sizes=(256, 512, 1024, 2048), dtypes=("fp32", "fp16"), batches=(1, 4), tiles=(64, 128),
                   noise=0.0, seed=0, energy=True, device_name=H100, device_key=H100_KEY) -> pd.DataFrame:
    """GEMM rows whose time is bound / EFFICIENCY[dtype] (times lognormal noise) on an H100."""
    rng = np.random.default_rng(seed)
    records = []
    for (m, n, k), dtype, batch, tile in itertools.product(
            itertools.product(sizes, repeat=3), dtypes, batches, tiles):
        records.append({"kernel": "gemm", "implementation": "triton", "dtype": dtype, "cache_mode": "warm",
                        "batch": batch, "m": m, "n": n, "k": k, "tile_m": tile, "tile_n": tile, "status": "ok",
                        "device_key": device_key, "device_name": device_name, "run_id": "run-1",
                        "params_json": json.dumps({"blocksize1": tile})})
    rows = pd.DataFrame(records)
    rows["config_id"] = [f"c{i}" for i in range(len(rows))]
    bound = features_frame(rows, device_spec(device_name))["bound_time_s"].to_numpy()
    eff = rows["dtype"].map(EFFICIENCY).to_numpy()
    time_s = bound / eff * np.exp(noise * rng.standard_normal(len(rows)))
    rows["time_median_ms"] = time_s * 1e3
    if energy:
        frame = features_frame(rows, device_spec(device_name))
        rows["energy_gross_j"] = IDLE_W * time_s + J_PER_FLOP * frame["flops"] + J_PER_BYTE * frame["min_bytes"]
        rows["energy_method"] = "nvml-counter"
        rows["energy_is_estimate"] = False
        rows["energy_quality"] = None
    return rows


def truth_latency_s(rows: pd.DataFrame) -> np.ndarray:
    bound = features_frame(rows, device_spec(H100))["bound_time_s"].to_numpy()
    return bound / rows["dtype"].map(EFFICIENCY).to_numpy()


def _models():
    return [RooflineModel(), LogLinearModel(), ForestModel(n_estimators=10), PaperBaselineModel(n_estimators=10),
            EnergyModel(), ConformalWrapper(RooflineModel(), n_splits=3)]


# ---- scikit-learn conventions ---------------------------------------------------------
# parametrize_with_checks does not apply: these models take DataFrames of profile rows
# (strings, a device per row), not numeric arrays. The conventions are checked directly.

@pytest.mark.parametrize("model", _models(), ids=lambda m: type(m).__name__)
def test_unfitted_model_refuses_to_predict(model):
    rows = synthetic_rows(sizes=(256, 512), dtypes=("fp32",), batches=(1,), tiles=(64,))
    with pytest.raises(NotFittedError):
        model.predict(rows)


@pytest.mark.parametrize("model", _models(), ids=lambda m: type(m).__name__)
def test_init_stores_parameters_and_fit_returns_self(model):
    params = model.get_params(deep=False)
    assert not [name for name in vars(model) if name.endswith("_") and not name.startswith("_")]
    for name, value in params.items():
        assert getattr(model, name) is value
    twin = clone(model)
    assert twin.get_params(deep=False).keys() == params.keys()
    rows = synthetic_rows(sizes=(256, 512, 1024), batches=(1,), tiles=(64,))
    assert model.fit(rows) is model
    assert model.targets_


def test_models_refuse_a_non_dataframe():
    with pytest.raises(InvalidInputError, match="DataFrame"):
        RooflineModel().fit(np.zeros((3, 3)))


# ---- devices and features -------------------------------------------------------------

def test_resolve_row_devices_names_the_device_without_figures():
    keys, names = ["cuda-mystery", H100_KEY], ["Mystery GPU 9000", H100]
    with pytest.raises(InvalidInputError, match="cuda-mystery.*calibrate"):
        resolve_row_devices(keys, names)
    given = resolve_row_devices(keys, names, {"cuda-mystery": device_spec("t4")})
    assert given["cuda-mystery"].key == "t4" and given[H100_KEY].key == "h100-sxm"


def test_roofline_columns_use_each_rows_own_device_and_keep_order():
    h100 = synthetic_rows(sizes=(512, 1024), dtypes=("fp16",), batches=(1,), tiles=(64,))
    t4 = synthetic_rows(sizes=(512, 1024), dtypes=("fp16",), batches=(1,), tiles=(64,), device_name="NVIDIA T4",
                        device_key="cuda-tesla-t4")
    mixed = pd.concat([h100, t4], ignore_index=True).sample(frac=1.0, random_state=1)
    frame = roofline_columns(as_columns(mixed))
    np.testing.assert_array_equal(frame["m"], mixed["m"].to_numpy())
    peaks = frame["peak_flops_per_s"]
    is_t4 = (mixed["device_key"] == "cuda-tesla-t4").to_numpy()
    assert np.all(peaks[is_t4] == device_spec("t4").peaks_flops_per_s["fp16"])
    assert np.all(peaks[~is_t4] == device_spec("h100-sxm").peaks_flops_per_s["fp16"])
    repeated_index = pd.concat([h100, t4])  # both parts indexed from 0
    frame = roofline_columns(as_columns(repeated_index))
    assert len(frame["device_key"]) == len(repeated_index)
    assert list(frame["device_key"]) == ["h100-sxm"] * len(h100) + ["t4"] * len(t4)


def test_device_figures_round_trip_through_json():
    spec = device_spec("h100-sxm")
    figures = DeviceFigures.from_json_dict(json.loads(json.dumps(DeviceFigures.of(spec).to_json_dict())))
    assert figures.peaks_flops_per_s == spec.peaks_flops_per_s
    assert figures.sm_count == spec.sm_count and figures.launch_overhead_s == spec.launch_overhead_s


# ---- efficiency gap -------------------------------------------------------------------

def test_efficiency_gap_is_measured_time_over_the_bound():
    rows = synthetic_rows(sizes=(512, 2048), batches=(1,), tiles=(64,))
    gap = efficiency_gap(rows)
    expected = {d: 1 / e for d, e in EFFICIENCY.items()}
    assert np.allclose(gap["gap"], gap["dtype"].map(expected))
    assert np.allclose(gap["achieved_fraction"] * gap["gap"], 1.0)


def test_efficiency_gap_drops_rows_that_were_not_measured():
    rows = synthetic_rows(sizes=(512,), dtypes=("fp32",), batches=(1,), tiles=(64, 128))
    rows.loc[rows.index[0], "status"] = "unsupported"
    rows.loc[rows.index[1], "time_median_ms"] = np.nan
    assert len(efficiency_gap(rows)) == len(rows) - 2


def test_efficiency_summary_gives_quantiles_per_group():
    rows = synthetic_rows(sizes=(256, 512, 1024), batches=(1,), tiles=(64,), noise=0.05, seed=3)
    summary = efficiency_summary(rows, by=("dtype",))
    assert set(summary["dtype"]) == {"fp16", "fp32"}
    for _, s in summary.iterrows():
        assert s["fraction_p10"] < s["fraction_median"] < s["fraction_p90"]
        assert s["fraction_median"] == pytest.approx(EFFICIENCY[s["dtype"]], rel=0.05)
    assert summary["n_rows"].sum() == len(rows)


# ---- roofline model -------------------------------------------------------------------

def test_roofline_model_recovers_the_efficiency_per_dtype():
    rows = synthetic_rows(noise=0.03, seed=1)
    model = RooflineModel().fit(rows)
    report = model.report()
    finest = report[report["level"] == 0]
    assert set(finest["bound"]) >= {"launch", "compute"}  # one group per regime
    for _, group in finest.iterrows():
        assert group["efficiency"] == pytest.approx(EFFICIENCY[group["dtype"]], rel=0.02)
    test = synthetic_rows(sizes=(384, 3072), batches=(2,), tiles=(64,))
    assert np.allclose(model.predict(test), truth_latency_s(test), rtol=0.03)


def test_roofline_model_falls_back_to_coarser_groups():
    rows = synthetic_rows(dtypes=("fp32",), batches=(1,), tiles=(64,))
    model = RooflineModel().fit(rows)
    unseen = synthetic_rows(sizes=(512,), dtypes=("bf16",), batches=(1,), tiles=(64,))
    explained = model.explain(unseen)
    assert (explained["efficiency_level"] == 3).all()  # (kernel,) answers for an unseen dtype
    assert np.allclose(explained["efficiency"], EFFICIENCY["fp32"])
    other_kernel = unseen.assign(kernel="attention", seq_q=128, seq_k=128, heads=8, head_dim=64)
    assert (model.explain(other_kernel)["efficiency_level"] == -1).all()


def test_roofline_model_needs_min_group_rows():
    rows = synthetic_rows(sizes=(512, 1024), batches=(1,), tiles=(64,))
    model = RooflineModel(min_group_rows=len(rows)).fit(rows)  # no dtype group is that large
    assert {r["level"] for r in model.efficiencies_} == {3}


# ---- forest ---------------------------------------------------------------------------

def test_forest_extrapolates_to_larger_shapes_through_the_bound():
    train = synthetic_rows(sizes=(128, 256, 512, 1024), noise=0.02, seed=2, energy=False)
    test = synthetic_rows(sizes=(2048, 4096), batches=(1,), tiles=(128,), energy=False)
    truth = truth_latency_s(test)
    efficiency = ForestModel(n_estimators=30, random_state=0).fit(train)
    log_time = ForestModel(n_estimators=30, random_state=0, target="log_time").fit(train)
    third = ForestModel(n_estimators=30, random_state=0, max_features=1 / 3).fit(train)
    error_eff = np.median(np.abs(efficiency.predict(test) / truth - 1))
    error_time = np.median(np.abs(log_time.predict(test) / truth - 1))
    error_third = np.median(np.abs(third.predict(test) / truth - 1))
    assert error_eff < 0.02
    assert error_time > 0.5  # a forest on raw (log) times cannot leave the range it saw
    assert error_third > 2 * error_eff  # why every feature is tried at each split (forest.py)
    assert efficiency.targets_ == ("latency",)


def test_forest_learns_energy_as_a_second_output():
    rows = synthetic_rows(sizes=(256, 512, 1024, 2048), batches=(1,), tiles=(64,))
    model = ForestModel(n_estimators=30).fit(rows)
    assert model.targets_ == ("latency", "energy")
    assert model.forest_.n_outputs == 2 and model.energy_forest_ is None
    test = synthetic_rows(sizes=(768,), batches=(1,), tiles=(64,))
    error = np.abs(model.predict_energy(test) / test["energy_gross_j"].to_numpy() - 1)
    assert np.median(error) < 0.10


def test_forest_uses_a_second_forest_when_only_some_rows_have_energy():
    rows = synthetic_rows(sizes=(256, 512, 1024), batches=(1,), tiles=(64,))
    rows.loc[rows.index[::2], "energy_gross_j"] = np.nan
    model = ForestModel(n_estimators=10, min_energy_rows=5).fit(rows)
    assert model.forest_.n_outputs == 1 and model.energy_forest_ is not None
    assert model.n_rows_ == len(rows) and model.n_energy_rows_ == len(rows) - len(rows.index[::2])


def test_forest_leaves_out_doubtful_energy_unless_asked():
    rows = synthetic_rows(sizes=(256, 512, 1024), batches=(1,), tiles=(64,))
    rows["energy_quality"] = "doubtful"
    assert ForestModel(n_estimators=5).fit(rows).targets_ == ("latency",)
    assert ForestModel(n_estimators=5, include_doubtful_energy=True).fit(rows).targets_ == ("latency", "energy")
    with pytest.raises(InvalidInputError, match="no energy"):
        ForestModel(n_estimators=5).fit(rows).predict_energy(rows)


def test_forest_predictions_follow_refits_and_changed_rows():
    """The forest keeps its last outputs for repeated calls on the same rows: never stale."""
    rows = synthetic_rows(sizes=(256, 512, 1024), batches=(1,), tiles=(64,))
    test = synthetic_rows(sizes=(768, 1536), batches=(1,), tiles=(64,))
    model = ForestModel(n_estimators=5).fit(rows)
    first = model.predict(test)
    assert np.array_equal(model.predict(test), first)
    slower = rows.assign(time_median_ms=rows["time_median_ms"] * 3)
    fresh = ForestModel(n_estimators=5).fit(slower)
    refitted = model.fit(slower).predict(test)  # the same rows to predict, a new forest
    assert np.array_equal(refitted, fresh.predict(test)) and not np.allclose(refitted, first)
    before = fresh._predict_logs(test)[1]
    test.loc[test.index[0], ["m", "n", "k"]] = 256  # changed in place, to a shape the forest rates differently
    assert fresh._predict_logs(test)[1][0] != before[0]
    assert np.array_equal(model.predict(test), ForestModel(n_estimators=5).fit(slower).predict(test))


def test_conformal_forest_gives_every_target_with_its_interval_in_one_call():
    rows = synthetic_rows(sizes=(256, 512, 1024), batches=(1,), tiles=(64,))
    test = synthetic_rows(sizes=(768,), batches=(1,), tiles=(64,))
    model = ConformalWrapper(ForestModel(n_estimators=5), n_splits=3).fit(rows)
    both = model.predict_with_intervals(test)
    assert set(both) == {"latency", "energy"}
    assert np.array_equal(both["latency"][0], model.predict_latency(test))
    assert np.array_equal(both["energy"][0], model.predict_energy(test))
    for target in both:
        for got, expected in zip(both[target][1:], model.predict_interval(test, target), strict=True):
            assert np.array_equal(got, expected)
    roofline = ConformalWrapper(RooflineModel(), n_splits=3).fit(rows).predict_with_intervals(test)
    assert set(roofline) == {"latency"} and (roofline["latency"][1] <= roofline["latency"][2]).all()


def test_paper_baseline_reads_blocksizes_from_params_json():
    rows = synthetic_rows(sizes=(256, 512), dtypes=("fp32",), batches=(1,), tiles=(64, 128))
    design = paper_design(rows)
    assert list(design[:, PAPER_FEATURES.index("blocksize1")]) == list(rows["tile_m"].astype(float))
    assert (design[:, PAPER_FEATURES.index("blocksize2")] == -1).all()  # absent: -1
    model = PaperBaselineModel(n_estimators=10).fit(rows)
    assert model._forest().max_depth == 6 and model.latency_forest_.max_depth <= 6
    assert model.targets_ == ("latency", "energy")


# ---- energy ---------------------------------------------------------------------------

def test_fit_energy_coefficients_recovers_a_noiseless_law():
    rng = np.random.default_rng(0)
    t, f, b = rng.uniform(1e-5, 1e-2, 50), rng.uniform(1e8, 1e12, 50), rng.uniform(1e6, 1e9, 50)
    coef = fit_energy_coefficients(t, f, b, 30 * t + 1e-12 * f + 2e-10 * b)
    assert coef == pytest.approx([30, 1e-12, 2e-10], rel=1e-6)


def test_energy_model_reports_joules_per_flop_and_per_byte():
    rows = synthetic_rows()
    model = EnergyModel().fit(rows)
    finest = model.report().query("level == 0")
    assert len(finest) == 2  # one per dtype on the one device
    for _, group in finest.iterrows():
        assert group["idle_power_w"] == pytest.approx(IDLE_W, rel=1e-3)
        assert group["j_per_flop"] == pytest.approx(J_PER_FLOP, rel=1e-3)
        assert group["j_per_byte"] == pytest.approx(J_PER_BYTE, rel=1e-3)
    assert np.allclose(model.predict(rows), rows["energy_gross_j"], rtol=1e-6)


def test_energy_model_takes_time_from_the_argument_or_its_latency_model():
    rows = synthetic_rows(sizes=(256, 512, 1024), batches=(1,), tiles=(64,))
    model = EnergyModel(latency_model=RooflineModel()).fit(rows)
    new = rows.drop(columns=["time_median_ms"])
    assert np.allclose(model.predict(new), rows["energy_gross_j"], rtol=1e-3)
    doubled = model.predict(new, time_s=2 * rows["time_median_ms"].to_numpy() / 1e3)
    coef = model.report().query("level == 0").iloc[0]
    assert np.allclose(doubled - model.predict(new), coef["idle_power_w"] * rows["time_median_ms"] / 1e3,
                       rtol=1e-3)


def test_energy_model_never_learns_from_estimates_or_doubtful_rows():
    rows = synthetic_rows(sizes=(256, 512, 1024), batches=(1,), tiles=(64,))
    rows["energy_is_estimate"] = True
    with pytest.raises(InvalidInputError, match="measured energy"):
        EnergyModel().fit(rows)
    rows["energy_is_estimate"] = False
    rows["energy_quality"] = "doubtful"
    assert np.isnan(measured_energy_j(rows)).all()
    with pytest.raises(InvalidInputError, match="doubtful"):
        EnergyModel().fit(rows)
    assert EnergyModel(include_doubtful_energy=True).fit(rows).n_rows_ == len(rows)
