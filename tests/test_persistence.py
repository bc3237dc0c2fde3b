"""Model bundles: round trips, metadata, refusal of tampered, foreign, corrupt or old files,
and the scikit-learn-free estimator base."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
from synthetic_rows import rows_with_energy  # tests/ is on sys.path (rootdir import mode)

from perfscope.errors import PerfscopeError
from perfscope.models.bundle_format import sealed
from perfscope.models.energy_model import EnergyModel
from perfscope.models.forest import ForestModel, PaperBaselineModel
from perfscope.models.intervals import ConformalWrapper
from perfscope.models.persistence import (
    MANIFEST,
    LightEstimator,
    LightRegressorMixin,
    ModelFileError,
    data_fingerprint,
    load_bundle,
    save_bundle,
)
from perfscope.models.prediction import estimate_rows
from perfscope.models.roofline_model import LogLinearModel, RooflineModel
from perfscope.models.tree_arrays import ForestArrays
from perfscope.workflows.train import train


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


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
    for a, b in zip(forest.predict_interval(test), again.predict_interval(test), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(models["roofline"].predict(test), loaded["roofline"].predict(test))
    assert np.array_equal(models["energy"].predict(test), loaded["energy"].predict(test))
    assert np.array_equal(models["paper"].predict_energy(test), loaded["paper"].predict_energy(test))
    assert loaded["roofline"].report().equals(models["roofline"].report())
    assert isinstance(again.estimator_.forest_, ForestArrays) and again.estimator_.forest_.n_outputs == 2
    assert again.estimator_.feature_importances().equals(forest.estimator_.feature_importances())


def test_bundle_layout_and_metadata(bundle, fitted):
    rows, _ = fitted
    assert sorted(os.listdir(bundle)) == ["energy.json", "forest.json", "forest.npz", MANIFEST, "paper.json",
                                          "paper.npz", "roofline.json"]
    loaded = load_bundle(bundle)
    meta = loaded.model_metadata["forest"]
    assert meta["kind"] == "conformal" and meta["note"] == "test"
    assert "log10_bound_time_s" in meta["features"] and meta["targets"] == ["latency", "energy"]
    assert meta["training_data"] == {"fingerprint": data_fingerprint(rows), "n_rows": len(rows)}
    assert meta["libraries"]["scikit-learn"] and meta["libraries"]["numpy"]
    assert meta["schema_version"] >= 1 and meta["created_at"]
    assert loaded.metadata["evaluation"] == [{"model": "forest", "r2": 0.9}]
    document = json.loads((bundle / "roofline.json").read_text())
    assert document["format"] == "perfscope-model" and len(document["content_sha256"]) == 64
    with np.load(bundle / "paper.npz", allow_pickle=False) as archive:
        assert json.loads(str(archive["__metadata_json__"]))["kind"] == "paper_baseline"
        assert {"latency_forest/children_left", "power_forest/value"} <= set(archive.files)


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


def test_a_tampered_array_file_is_refused(bundle):
    path = bundle / "forest.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="forest.npz was modified"):
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


def _npz(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _replace_file(bundle, name: str, data: bytes) -> None:
    (bundle / name).write_bytes(data)
    _rewrite_manifest(bundle, {name: data})


def _paper_arrays(bundle) -> dict[str, np.ndarray]:
    with np.load(bundle / "paper.npz", allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def test_an_array_file_with_pickled_objects_is_refused_even_with_consistent_hashes(bundle):
    arrays = _paper_arrays(bundle)
    arrays["latency_forest/value"] = np.array([os.getcwd], dtype=object)  # np.savez pickles object arrays
    _replace_file(bundle, "paper.npz", _npz(**arrays))
    with pytest.raises(ModelFileError, match="pickled objects are never loaded"):
        load_bundle(bundle)


def test_a_foreign_array_file_is_refused(bundle):
    arrays = _paper_arrays(bundle)
    del arrays["__perfscope_format__"]
    _replace_file(bundle, "paper.npz", _npz(**arrays))
    with pytest.raises(ModelFileError, match="paper.npz is not a perfscope model file"):
        load_bundle(bundle)
    _replace_file(bundle, "paper.npz", b"PK\x03\x04 not really a zip archive")
    with pytest.raises(ModelFileError, match="not a readable perfscope array archive"):
        load_bundle(bundle)


@pytest.mark.parametrize("change, message", [
    (lambda a: a["latency_forest/children_left"].__setitem__(0, 10**6), "out-of-range node"),
    (lambda a: a["latency_forest/feature"].__setitem__(0, 99), "feature out of range"),
    (lambda a: a.pop("power_forest/threshold"), "missing arrays threshold"),
    (lambda a: a.__setitem__("power_forest/extra", np.zeros(3)), "unexpected arrays extra"),
    (lambda a: a.__setitem__("latency_forest/value", a["latency_forest/value"][:-1]), "different lengths"),
])
def test_corrupt_tree_arrays_are_refused_even_with_consistent_hashes(bundle, change, message):
    arrays = _paper_arrays(bundle)
    arrays = {k: v.copy() for k, v in arrays.items()}
    change(arrays)
    _replace_file(bundle, "paper.npz", _npz(**arrays))
    with pytest.raises(ModelFileError, match=message):
        load_bundle(bundle)


def test_a_model_missing_its_forest_is_refused(bundle):
    arrays = {k: v for k, v in _paper_arrays(bundle).items() if not k.startswith("latency_forest/")}
    _replace_file(bundle, "paper.npz", _npz(**arrays))
    with pytest.raises(ModelFileError, match="no 'latency_forest' arrays"):
        load_bundle(bundle)


def test_a_bundle_of_the_older_skops_format_is_refused_with_a_retrain_message(bundle):
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest.pop("content_sha256")
    manifest["format_version"] = 1
    (bundle / MANIFEST).write_text(json.dumps(sealed(manifest)))
    with pytest.raises(ModelFileError, match="older perfscope .*format 1.*retrain"):
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
    (bundle / MANIFEST).write_text(json.dumps(sealed(manifest)))


@pytest.mark.slow
def test_loading_a_forest_bundle_does_not_import_torch(bundle):
    import subprocess

    code = ("import sys; from perfscope.models.persistence import load_bundle; "
            f"b = load_bundle({str(bundle)!r}); assert b['forest'].estimator_.forest_ is not None; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_loading_and_estimating_does_not_import_scikit_learn(bundle, fitted):
    import subprocess

    rows, _ = fitted
    test = rows_with_energy(sizes=(384,), seed=3).drop(columns=["time_median_ms", "energy_gross_j"])
    test_path = bundle.parent / "test_rows.json"
    test.to_json(test_path, orient="records")
    code = ("import sys; import pandas as pd; from perfscope.models.persistence import load_bundle; "
            f"b = load_bundle({str(bundle)!r}); rows = pd.read_json({str(test_path)!r}, orient='records'); "
            "low, high = b['forest'].predict_interval(rows, 'energy'); "
            "out = [b['forest'].predict_latency(rows), b['forest'].predict_energy(rows), low, high, "
            "b['roofline'].predict(rows), b['energy'].predict(rows), b['paper'].predict_energy(rows)]; "
            "assert all((o > 0).all() for o in out); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'skops', 'torch'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PERFSCOPE_HOME": str(bundle.parent / "home")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- the estimator base: scikit-learn's API without importing it ----------------------

class _Toy(LightRegressorMixin, LightEstimator):
    def __init__(self, alpha: float = 1.0, inner: object = None) -> None:
        self.alpha = alpha
        self.inner = inner

    def fit(self, X, y=None):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_ * self.alpha)


def test_light_estimators_follow_scikit_learns_conventions():
    from sklearn.base import clone, is_regressor
    from sklearn.exceptions import NotFittedError

    model = _Toy(alpha=2.0, inner=_Toy())
    assert model.get_params(deep=False) == {"alpha": 2.0, "inner": model.inner}
    assert model.get_params()["inner__alpha"] == 1.0
    assert model.set_params(inner__alpha=3.0, alpha=0.5) is model and model.inner.alpha == 3.0 and model.alpha == 0.5
    with pytest.raises(ValueError, match="invalid parameter 'beta'"):
        model.set_params(beta=1)
    twin = clone(model)
    assert twin is not model and twin.inner is not model.inner and twin.inner.alpha == 3.0
    assert repr(_Toy(alpha=0.5)) == "_Toy(alpha=0.5)" and repr(_Toy()) == "_Toy()"
    assert is_regressor(model) and not is_regressor(ConformalWrapper(RooflineModel()))
    assert model.fit(np.zeros((4, 1)), np.array([1.0, 2.0, 3.0, 4.0])).score(np.zeros((2, 1)), [1.0, 2.0]) == \
        pytest.approx(1 - ((1 - 1.25) ** 2 + (2 - 1.25) ** 2) / 0.5)  # mean 2.5 x alpha 0.5
    from perfscope.models.persistence import check_is_fitted

    with pytest.raises(NotFittedError):
        check_is_fitted(_Toy())


# ---- train: the whole path ------------------------------------------------------------

@pytest.mark.slow
def test_train_saves_a_bundle_that_estimates_unseen_configurations(tmp_path):
    rows = rows_with_energy(sizes=(256, 512, 1024))
    other = rows.assign(kernel="conv")  # filtered out by kernels=
    report = train(pd.concat([rows, other], ignore_index=True), out_dir=tmp_path / "m", kernels=["gemm"], n_splits=3)
    assert report.n_rows == len(rows) and report.kernels == ["gemm"] and report.n_energy_rows == len(rows)
    assert report.models == ["forest", "roofline", "param_forest", "energy"]  # rows carry tile parameters
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
