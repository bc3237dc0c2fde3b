"""What ``train`` skips to stay fast on 100,000 rows: per-device landscapes in the fold fits,
fold-by-fold refusals of models that cannot use the rows, checks of freshly exported trees."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_device_transfer import _large_x, _rows, _small_x  # tests/ is on sys.path (rootdir import mode)


@pytest.fixture
def two_devices() -> pd.DataFrame:
    rows = pd.concat([_rows("cuda-nvidia-rtx-a4000", "NVIDIA RTX A4000", _small_x, 1.0),
                      _rows("cuda-nvidia-rtx-a6000", "NVIDIA RTX A6000", _large_x, 0.5)], ignore_index=True)
    return rows.assign(kernel="stencil", dtype="fp32")


def test_without_device_landscapes_the_pooled_forest_is_the_same_and_adapt_still_works(two_devices):
    from perfscope.models.param_forest import ParameterForestModel

    full = ParameterForestModel(n_estimators=8).fit(two_devices)
    lean = ParameterForestModel(n_estimators=8, device_landscapes=False).fit(two_devices)
    assert len(full.device_forests_) == 2 and lean.device_forests_ == {}
    assert np.array_equal(full.predict(two_devices), lean.predict(two_devices))  # fold figures unchanged
    new = _rows("cuda-nvidia-rtx-a4000-new", "NVIDIA RTX A4000", _large_x, 2.0).head(12)
    lean.adapt(new)
    assert lean.mixtures_["cuda-nvidia-rtx-a4000-new"] == [1.0]  # only the pooled landscape to mix
    assert np.all(np.isfinite(lean.predict(new)))


def test_train_skips_fold_landscapes_but_saves_them_and_refuses_roofline_models_once(two_devices, tmp_path,
                                                                                        monkeypatch):
    from perfscope.models.param_forest import ParameterForestModel
    from perfscope.models.persistence import load_bundle
    from perfscope.models.roofline_model import RooflineModel
    from perfscope.workflows.train import FOLD_TREES, train

    fits: dict[str, list] = {"roofline": [], "param_forest": []}
    roofline_fit, forest_fit = RooflineModel.fit, ParameterForestModel.fit

    def count_roofline(self, *args, **kwargs):
        fits["roofline"].append(True)
        return roofline_fit(self, *args, **kwargs)

    def count_forest(self, *args, **kwargs):
        fits["param_forest"].append((self.n_estimators, self.device_landscapes))
        return forest_fit(self, *args, **kwargs)

    monkeypatch.setattr(RooflineModel, "fit", count_roofline)
    monkeypatch.setattr(ParameterForestModel, "fit", count_forest)
    report = train(two_devices, out_dir=tmp_path / "model", n_splits=3)
    assert fits["roofline"] == [True]  # no FLOPs: refused once on every row, not once per fold
    assert set(report.skipped) == {"forest", "roofline"} and "roofline" in report.skipped["roofline"]
    reasons = report.evaluation.set_index("model")["reason"]
    assert reasons["forest"] == report.skipped["forest"] and reasons["roofline"] == report.skipped["roofline"]
    # three smaller folds without landscapes, then all rows at full size
    assert fits["param_forest"] == [(FOLD_TREES, False)] * 3 + [(ParameterForestModel().n_estimators, True)]
    saved = load_bundle(tmp_path / "model").models["param_forest"].estimator_
    assert len(saved.device_forests_) == 2


def test_an_exported_forest_predicts_as_scikit_learn_before_and_after_a_round_trip():
    from sklearn.ensemble import ExtraTreesRegressor

    from perfscope.models.tree_arrays import ForestArrays, export_forest

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 4)), rng.normal(size=300)
    fitted = ExtraTreesRegressor(n_estimators=5, random_state=0).fit(X, y)
    exported = export_forest(fitted)
    assert np.array_equal(exported.predict(X), fitted.predict(X))
    reloaded = ForestArrays.from_arrays(exported.to_arrays())  # read back: checked
    assert np.array_equal(reloaded.predict(X), fitted.predict(X))
