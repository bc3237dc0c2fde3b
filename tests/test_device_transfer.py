"""New GPUs: device features of the parameter forest, and few-shot mixtures of device landscapes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perfscope.errors import UserInputError


def _rows(device_key: str, device_name: str, landscape, speed: float) -> pd.DataFrame:
    """A 60-configuration sweep of one device whose log time is ``landscape(bx, by)`` + log speed."""
    configs = [(bx, by) for bx in (1, 2, 4, 8, 16, 32) for by in (16, 32, 48, 64, 96, 128, 160, 192, 224, 256)]
    return pd.DataFrame({
        "device_key": device_key, "device_name": device_name, "kind": "stencil", "status": "ok",
        "param_block_size_x": [c[0] for c in configs], "param_block_size_y": [c[1] for c in configs],
        "time_median_ms": [speed * math.exp(landscape(bx, by)) for bx, by in configs],
    })


def _small_x(bx, by):  # fastest with narrow blocks
    return 0.4 * math.log2(bx) + 0.001 * by


def _large_x(bx, by):  # fastest with wide blocks
    return -0.4 * math.log2(bx) + 0.002 * by


def test_device_figures_name_the_vendor_and_its_wave_width():
    from perfscope.models.param_forest import ParameterForestModel

    rows = pd.concat([_rows("cuda-nvidia-rtx-a4000", "NVIDIA RTX A4000", _small_x, 1.0),
                      _rows("rocm-amd-instinct-mi250x-one-gcd", "AMD Instinct MI250X (one GCD)", _small_x, 1.0),
                      _rows("rocm-amd-radeon-pro-w6600", "AMD Radeon PRO W6600", _small_x, 1.0),
                      _rows("rocm-some-new-gpu", "", _small_x, 1.0)])
    model = ParameterForestModel(n_estimators=5).fit(rows)
    vendor_and_wave = {k: v[3:] for k, v in model.device_figures_.items()}
    assert vendor_and_wave["cuda-nvidia-rtx-a4000"] == (0.0, 32.0)
    assert vendor_and_wave["rocm-amd-instinct-mi250x-one-gcd"] == (1.0, 64.0)  # CDNA: 64-lane wavefronts
    assert vendor_and_wave["rocm-amd-radeon-pro-w6600"] == (1.0, 32.0)  # RDNA: wave32
    assert vendor_and_wave["rocm-some-new-gpu"][0] == 1.0 and math.isnan(vendor_and_wave["rocm-some-new-gpu"][1])
    assert {"device_vendor", "device_wave_width"} <= set(model.feature_names_)
    assert "device_log10_bandwidth" not in model.feature_names_  # spec figures only on request


def test_device_features_can_include_the_spec_figures_or_nothing():
    from perfscope.models.param_forest import ParameterForestModel

    rows = pd.concat([_rows("cuda-nvidia-rtx-a4000", "NVIDIA RTX A4000", _small_x, 1.0),
                      _rows("cuda-nvidia-rtx-a6000", "NVIDIA RTX A6000", _small_x, 0.5)])
    spec = ParameterForestModel(n_estimators=5, device_features="spec").fit(rows)
    assert {"device_log10_bandwidth", "device_vendor"} <= set(spec.feature_names_)
    none = ParameterForestModel(n_estimators=5, device_features="none").fit(rows)
    assert not any(n.startswith("device_") for n in none.feature_names_)
    assert np.all(np.isfinite(none.predict(rows)))
    with pytest.raises(UserInputError, match="device_features"):
        ParameterForestModel(n_estimators=5, device_features="all").fit(rows)


def test_mixture_weights_find_the_landscape_that_explains_the_measurements():
    from perfscope.models.few_shot import mixture_weights

    rng = np.random.default_rng(0)
    landscapes = rng.normal(size=(20, 3))
    measured = 3.0 + 1.5 * landscapes[:, 2]
    assert np.allclose(mixture_weights(landscapes, measured), [0.0, 0.0, 1.5], atol=1e-6)
    assert list(mixture_weights(landscapes[:3], measured[:3])) == [1.0, 0.0, 0.0]  # too few rows: pooled only


def test_adapt_weights_the_training_device_whose_landscape_the_new_one_shares(tmp_path):
    from perfscope.models.param_forest import ParameterForestModel
    from perfscope.models.persistence import load_bundle, save_bundle

    train = pd.concat([_rows("cuda-nvidia-rtx-a4000", "NVIDIA RTX A4000", _small_x, 1.0),
                       _rows("cuda-nvidia-rtx-a6000", "NVIDIA RTX A6000", _large_x, 0.5)])
    new = _rows("cuda-nvidia-a100-pcie-40gb", "NVIDIA A100-PCIE-40GB", _large_x, 0.2)
    model = ParameterForestModel(n_estimators=20).fit(train)
    assert set(model.device_forests_) == {"cuda-nvidia-rtx-a4000", "cuda-nvidia-rtx-a6000"}
    measured = new.sample(12, random_state=0)
    model.adapt(measured)
    weights = model.mixtures_["cuda-nvidia-a100-pcie-40gb"]  # pooled, then the devices in order
    assert weights[2] > max(weights[0], weights[1])  # the A6000's landscape (wide blocks fastest)
    predicted = model.predict(new)
    truth = new["time_median_ms"].to_numpy() / 1e3
    assert np.median(np.abs(predicted / truth - 1)) < 0.10
    assert truth[np.argmin(predicted)] / truth.min() < 1.05
    save_bundle(tmp_path / "bundle", {"param_forest": model})
    loaded = load_bundle(tmp_path / "bundle")["param_forest"]
    assert np.allclose(loaded.predict(new), predicted)
