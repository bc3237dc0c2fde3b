"""Model bundles: round trips, metadata, and refusal of tampered, foreign or untrusted files."""

from __future__ import annotations

import itertools
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

from perfscope.devicespecs import device_spec
from perfscope.errors import PerfscopeError
from perfscope.models.energy_model import EnergyModel
from perfscope.models.forest import ForestModel, PaperBaselineModel
from perfscope.models.intervals import ConformalWrapper
from perfscope.models.persistence import (MANIFEST, ModelFileError, _sealed, data_fingerprint, load_bundle,
                                          save_bundle)
from perfscope.models.roofline_model import LogLinearModel, RooflineModel
from perfscope.models.training import estimate_rows, train
from perfscope.roofline import feature_frame

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


def rows_with_energy(sizes=(256, 512, 1024, 2048), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    records = [{"kernel": "gemm", "implementation": "triton", "dtype": dtype, "batch": 1, "m": m, "n": n, "k": k,
                "tile_m": tile, "tile_n": 64, "status": "ok", "device_key": "cuda-h100", "device_name": H100,
                "run_id": "r", "config_id": f"{dtype}-{m}-{n}-{k}-{tile}", "params_json": '{"blocksize1": 64}'}
               for (m, n, k), dtype, tile in itertools.product(itertools.product(sizes, repeat=3), ("fp16", "fp32"),
                                                               (64, 128))]
    rows = pd.DataFrame(records)
    frame = feature_frame(rows, device_spec(H100))
    time_s = frame["bound_time_s"].to_numpy() / 0.6 * np.exp(0.05 * rng.standard_normal(len(rows)))
    rows["time_median_ms"] = time_s * 1e3
    rows["energy_gross_j"] = 80 * time_s + 1e-12 * frame["flops"] + 3e-10 * frame["min_bytes"]
    rows["energy_method"] = "nvml-counter"
    rows["energy_is_estimate"] = False
    return rows


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    rows = rows_with_energy(sizes=(256, 512, 1024))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFSCOPE_HOME", str(tmp_path_factory.mktemp("home")))
        models = {
            "forest": ConformalWrapper(ForestModel(n_estimators=8), n_splits=3).fit(rows),
            "roofline": RooflineModel().fit(rows),
            "energy": EnergyModel(latency_model=LogLinearModel()).fit(rows),
            "paper": PaperBaselineModel(n_estimators=5).fit(rows),
        }
    return rows, models


@pytest.fixture
def bundle(tmp_path, fitted):
    rows, models = fitted
    return save_bundle(tmp_path / "model", models, rows=rows, metadata={"evaluation": [{"model": "forest", "r2": 0.9}]},
                       model_metadata={"forest": {"note": "test"}})


def test_round_trip_gives_identical_predictions(bundle, fitted):
    rows, models = fitted
    loaded = load_bundle(bundle)
    assert set(loaded.models) == set(models)
    test = rows_with_energy(sizes=(384, 3072), seed=9).drop(columns=["time_median_ms", "energy_gross_j"])
    forest, again = models["forest"], loaded["forest"]
    assert np.array_equal(forest.predict(test), again.predict(test))
    assert np.array_equal(forest.predict_energy(test), again.predict_energy(test))
    for a, b in zip(forest.predict_interval(test), again.predict_interval(test)):
        assert np.array_equal(a, b)
    assert np.array_equal(models["roofline"].predict(test), loaded["roofline"].predict(test))
    assert np.array_equal(models["energy"].predict(test), loaded["energy"].predict(test))
    assert np.array_equal(models["paper"].predict_energy(test), loaded["paper"].predict_energy(test))
    assert loaded["roofline"].report().equals(models["roofline"].report())


def test_bundle_layout_and_metadata(bundle, fitted):
    rows, _ = fitted
    assert sorted(os.listdir(bundle)) == ["energy.json", "forest.json", "forest.skops", MANIFEST, "paper.json",
                                          "paper.skops", "roofline.json"]
    loaded = load_bundle(bundle)
    meta = loaded.model_metadata["forest"]
    assert meta["kind"] == "conformal" and meta["note"] == "test"
    assert "log10_bound_time_s" in meta["features"] and meta["targets"] == ["latency", "energy"]
    assert meta["training_data"] == {"fingerprint": data_fingerprint(rows), "n_rows": len(rows)}
    assert meta["libraries"]["scikit-learn"] and meta["libraries"]["skops"]
    assert meta["schema_version"] >= 1 and meta["created_at"]
    assert loaded.metadata["evaluation"] == [{"model": "forest", "r2": 0.9}]
    document = json.loads((bundle / "roofline.json").read_text())
    assert document["format"] == "perfscope-model" and len(document["content_sha256"]) == 64


def test_data_fingerprint_follows_the_configs_and_times():
    rows = rows_with_energy(sizes=(256, 512))
    assert data_fingerprint(rows) == data_fingerprint(rows.sample(frac=1.0, random_state=0))
    changed = rows.copy()
    changed.loc[changed.index[0], "time_median_ms"] *= 1.001
    assert data_fingerprint(changed) != data_fingerprint(rows)


def test_a_tampered_json_file_is_refused(bundle):
    path = bundle / "roofline.json"
    document = json.loads(path.read_text())
    document["state"]["global_efficiency"] *= 2
    path.write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="roofline.json was modified"):
        load_bundle(bundle)


def test_a_json_file_with_a_recomputed_manifest_hash_still_fails_its_own_hash(bundle):
    path = bundle / "roofline.json"
    document = json.loads(path.read_text())
    document["state"]["global_efficiency"] *= 2
    data = json.dumps(document).encode()
    path.write_bytes(data)
    _rewrite_manifest(bundle, {"roofline.json": data})
    with pytest.raises(ModelFileError, match="content hash mismatch"):
        load_bundle(bundle)


def test_a_tampered_skops_file_is_refused(bundle):
    path = bundle / "forest.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="forest.skops was modified"):
        load_bundle(bundle)


def test_a_tampered_manifest_is_refused(bundle):
    path = bundle / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["metadata"]["evaluation"][0]["r2"] = 0.99
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="modified"):
        load_bundle(bundle)


def test_foreign_files_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="not a perfscope model"):
        load_bundle(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / MANIFEST).write_text(json.dumps({"name": "some other tool", "models": {}}))
    with pytest.raises(ModelFileError, match="not a perfscope model"):
        load_bundle(foreign)
    (foreign / MANIFEST).write_text("not json at all")
    with pytest.raises(ModelFileError, match="not a perfscope model"):
        load_bundle(foreign)
    with pytest.raises(ModelFileError, match="no perfscope model"):
        load_bundle(tmp_path / "missing")
    assert issubclass(ModelFileError, PerfscopeError)


def test_a_skops_file_with_an_untrusted_type_is_refused_even_with_consistent_hashes(bundle):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    payload = {"perfscope_format": "perfscope-model", "metadata_json": "{}",
               "objects": {"forest": FunctionTransformer(func=os.getcwd)}}
    data = sio.dumps(payload)
    (bundle / "forest.skops").write_bytes(data)
    _rewrite_manifest(bundle, {"forest.skops": data})
    with pytest.raises(ModelFileError, match="does not trust: posix.getcwd"):
        load_bundle(bundle)


def test_a_tree_with_out_of_range_nodes_is_refused(bundle, fitted):
    import skops.io as sio

    forest = fitted[1]["paper"].latency_forest_
    broken = sio.loads(sio.dumps(forest), trusted=["sklearn.tree._tree.Tree"])
    tree = broken.estimators_[0].tree_
    state = tree.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["nodes"]["left_child"][0] = 10**6
    tree.__setstate__(state)
    data = sio.dumps({"perfscope_format": "perfscope-model", "metadata_json": "{}",
                      "objects": {"latency_forest": broken, "power_forest": fitted[1]["paper"].power_forest_}})
    (bundle / "paper.skops").write_bytes(data)
    _rewrite_manifest(bundle, {"paper.skops": data})
    with pytest.raises(ModelFileError, match="out-of-range node"):
        load_bundle(bundle)


def test_saving_again_replaces_the_previous_bundle(bundle, fitted):
    save_bundle(bundle, {"roofline": fitted[1]["roofline"]})
    assert sorted(os.listdir(bundle)) == [MANIFEST, "roofline.json"]
    assert list(load_bundle(bundle).models) == ["roofline"]


def test_saving_refuses_foreign_objects_and_occupied_directories(tmp_path, fitted):
    from sklearn.linear_model import LinearRegression

    with pytest.raises(ModelFileError, match="only perfscope's own models"):
        save_bundle(tmp_path / "a", {"x": LinearRegression()})
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="holds no perfscope model"):
        save_bundle(occupied, {"roofline": fitted[1]["roofline"]})


def _rewrite_manifest(bundle, replaced: dict[str, bytes]) -> None:
    """Recompute the manifest as a careless (not malicious-proof) rewriter would."""
    import hashlib

    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest.pop("content_sha256")
    for entry in manifest["models"].values():
        for name in entry["files"]:
            if name in replaced:
                entry["files"][name] = hashlib.sha256(replaced[name]).hexdigest()
    (bundle / MANIFEST).write_text(json.dumps(_sealed(manifest)))


@pytest.mark.slow
def test_loading_a_forest_bundle_does_not_import_torch(bundle):
    import subprocess

    code = ("import sys; from perfscope.models.persistence import load_bundle; "
            f"b = load_bundle({str(bundle)!r}); assert b['forest'].model_.forest_ is not None; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# ---- train: the whole path ------------------------------------------------------------

@pytest.mark.slow
def test_train_saves_a_bundle_that_estimates_unseen_configurations(tmp_path):
    rows = rows_with_energy(sizes=(256, 512, 1024))
    other = rows.assign(kernel="conv")  # filtered out by kernels=
    report = train(pd.concat([rows, other], ignore_index=True), out_dir=tmp_path / "m", kernels=["gemm"], n_splits=3)
    assert report.n_rows == len(rows) and report.kernels == ["gemm"] and report.n_energy_rows == len(rows)
    assert report.models == ["forest", "roofline", "energy"]
    figures = report.evaluation.set_index(["model", "target"])
    assert figures.loc[("forest", "latency"), "median_abs_pct_error"] < 10
    assert set(report.to_dict()) >= {"out_dir", "evaluation", "fingerprint"}
    bundle = load_bundle(report.out_dir)
    assert bundle.metadata["evaluation_split"] == "shape"
    new = rows_with_energy(sizes=(384, 1536)).drop(columns=["time_median_ms", "energy_gross_j"])
    estimate = estimate_rows(bundle, new)
    assert (estimate["latency_low_s"] < estimate["latency_s"]).all()
    assert (estimate["latency_s"] < estimate["latency_high_s"]).all()
    assert (estimate["energy_j"] > 0).all() and set(estimate["bound"]) <= {"launch", "memory", "compute"}
