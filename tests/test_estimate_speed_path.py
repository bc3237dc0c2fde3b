"""The light estimate path: column arrays instead of DataFrames, and what it must not import.

``perfscope estimate`` (and ``estimate``) work on a mapping of column name -> numpy array
(``config_columns``, ``perfscope.roofline.feature_columns``, the forest on those arrays);
``estimate_many`` frames the same columns. These tests check that the two paths agree,
that the column features equal the frame features, that a model whose device figures
differ from the resolved device still predicts on its own figures, and that neither
the CLI nor an in-process estimate imports pandas, scikit-learn, torch or dash.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from synthetic_rows import H100, features_frame, rows_with_energy  # tests/ is on sys.path (rootdir import mode)

from perfscope.devices.registry import device_spec
from perfscope.devicespecs import DeviceFigures
from perfscope.roofline import FEATURE_COLUMNS, feature_columns
from perfscope.workflows.estimate import config_columns, estimate, estimate_many

HEAVY = ("pandas", "torch", "dash", "sklearn", "scipy", "pyarrow", "triton", "plotly")


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Three saved bundles: the forest learnt energy; an energy model instead; a forest
    whose device snapshot differs from the spec table (half the peaks)."""
    from perfscope.models.energy_model import EnergyModel
    from perfscope.models.forest import ForestModel
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.persistence import load_bundle, save_bundle
    from perfscope.models.roofline_model import RooflineModel

    rows = rows_with_energy(sizes=(256, 512, 1024))
    spec = DeviceFigures.of(device_spec(H100))
    slower = DeviceFigures(**{**vars(spec), "peaks": tuple((d, p / 2) for d, p in spec.peaks)})
    root = tmp_path_factory.mktemp("bundles")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFSCOPE_HOME", str(root / "home"))
        roofline = ConformalWrapper(RooflineModel(), n_splits=2).fit(rows)
        models = {
            "forest_energy": {"forest": ConformalWrapper(ForestModel(n_estimators=5), n_splits=2).fit(rows),
                              "roofline": roofline},
            "energy_model": {"forest": ConformalWrapper(ForestModel(n_estimators=5, energy=False),
                                                        n_splits=2).fit(rows),
                             "roofline": roofline, "energy": EnergyModel().fit(rows)},
            "own_figures": {"forest": ConformalWrapper(ForestModel(n_estimators=5, energy=False,
                                                                   devices={"cuda-h100": slower}),
                                                       n_splits=2).fit(rows),
                            "roofline": roofline},
        }
        paths = {name: save_bundle(root / name, fitted, rows=rows) for name, fitted in models.items()}
    return {name: (path, load_bundle(path)) for name, path in paths.items()}


# every configuration of a family names the same columns: estimate_many refuses a column
# given for some rows only (as a DataFrame would, the others are missing cells)
CONFIGS = {
    "gemm": [dict(m=4096, n=4096, k=4096, batch=1), dict(m=16, n=16, k=16, batch=1),
             dict(m=8192, n=8192, k=1, batch=1), dict(m=1000, n=300, k=77, batch=3),
             dict(m=1000, n=3000, k=512, batch=1, tile_m=64, tile_n=128, tile_k=32)],
    "conv": [dict(conv_n=32, conv_c=64, conv_h=56, conv_w=56, conv_k=64, conv_r=3, conv_s=3, stride_h=1, stride_w=1,
                  pad_h=1, pad_w=1, dil_h=1, dil_w=1, groups=1),
             dict(conv_n=8, conv_c=64, conv_h=30, conv_w=31, conv_k=128, conv_r=5, conv_s=3, stride_h=2, stride_w=1,
                  pad_h=0, pad_w=2, dil_h=2, dil_w=1, groups=4)],
    "attention": [dict(batch=1, heads=8, kv_heads=8, seq_q=1024, seq_k=1024, head_dim=64, causal=True),
                  dict(batch=2, heads=16, kv_heads=4, seq_q=333, seq_k=4096, head_dim=128, causal=False)],
}


def _assert_same(single: dict, row: dict, context: str) -> None:
    for key, value in single.items():
        other = row[key]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(other, float) and math.isnan(other), (context, key, other)
        elif isinstance(value, float):
            assert other == pytest.approx(value, rel=1e-12, abs=0), (context, key)
        else:
            assert other == value, (context, key)
    for key in set(row) - set(single):  # a tile column another configuration of the batch has
        assert row[key] is None or math.isnan(row[key]), (context, key)


@pytest.mark.parametrize("kernel", list(CONFIGS))
@pytest.mark.parametrize("model", [None, "forest_energy", "energy_model"])
def test_single_estimates_agree_with_the_vectorised_ones(kernel, model, bundles):
    bundle = bundles[model][1] if model else None
    device, dtype = ("cuda-h100", "fp16") if model else ("h100-sxm", "bf16")
    frame = estimate_many(kernel, CONFIGS[kernel], device, dtype=dtype, model=bundle, region="France")
    assert len(frame) == len(CONFIGS[kernel])
    for i, config in enumerate(CONFIGS[kernel]):
        single = estimate(kernel, device, dtype, model=bundle, region="France", **config)
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[i].to_dict().items()}
        _assert_same(single, row, f"{kernel} #{i}")
        if model:
            assert single["method"].startswith("model:forest")
            assert single["latency_low_s"] < single["latency_s"] < single["latency_high_s"]
            assert single["energy_method"] == "model" and single["energy_j"] > 0


def test_the_model_predicts_on_its_own_device_figures_not_the_resolved_ones(bundles):
    """The forest's snapshot of cuda-h100 has half the spec peaks: the estimate's bound is the
    spec's, its latency the forest's on the snapshot (as the frame path computes it)."""
    from perfscope.models.prediction import estimate_rows

    _, bundle = bundles["own_figures"]
    configs = CONFIGS["gemm"]
    frame = estimate_many("gemm", configs, "cuda-h100", dtype="fp16", model=bundle)
    rows = pd.DataFrame(config_columns("gemm", configs, "fp16")).assign(device_key="cuda-h100", device_name=H100)
    expected = estimate_rows(bundle, rows)  # from a DataFrame: the features on the snapshot
    np.testing.assert_allclose(frame["latency_s"], expected["latency_s"], rtol=1e-12)
    np.testing.assert_allclose(frame["latency_high_s"], expected["latency_high_s"], rtol=1e-12)
    spec_bound = features_frame(rows, device_spec("h100-sxm"))["bound_time_s"]
    np.testing.assert_array_equal(frame["bound_time_s"], spec_bound)
    # the same forest on the spec's figures would predict another latency
    same_figures = estimate_rows(bundles["energy_model"][1], rows)
    assert not np.allclose(frame["latency_s"], same_figures["latency_s"])


def test_a_dataframe_at_the_edge_gives_the_features_of_its_columns_for_every_family():
    rows = pd.DataFrame([
        {"kernel": "gemm", "dtype": "fp16", "batch": 2, "m": 512, "n": 256, "k": 128, "tile_m": 64.0},
        {"kernel": "gemm", "dtype": "fp8_e4m3", "batch": 1, "m": 4096, "n": 4096, "k": 4096, "tile_m": np.nan},
        {"kernel": "conv", "dtype": "bf16", "conv_n": 1, "conv_c": 3, "conv_h": 224, "conv_w": 224, "conv_k": 64,
         "conv_r": 7, "conv_s": 7, "stride_h": 2, "stride_w": 2, "pad_h": 3, "pad_w": 3},
        {"kernel": "attention", "dtype": "fp16", "batch": 2, "heads": 8, "kv_heads": None, "seq_q": 100,
         "seq_k": 1024, "head_dim": 64, "causal": True, "backend": "math"},
        {"kernel": "mystery", "dtype": "fp32", "m": 4},
        {"kernel": "gemm", "dtype": "fp32", "m": 4.5, "n": 4, "k": 4},
    ])
    device = device_spec("a100-80gb-sxm")
    frame = feature_columns(rows, device)
    columns = feature_columns({c: rows[c].to_numpy() for c in rows.columns}, device)
    for name in FEATURE_COLUMNS:
        expected = frame[name]
        if expected.dtype.kind == "O":
            assert list(expected) == list(columns[name]), name
        else:
            np.testing.assert_array_equal(np.asarray(columns[name], dtype=float), expected, err_msg=name)
    assert math.isnan(columns["flops"][4]) and math.isnan(columns["flops"][5])  # no formula, not an integer
    assert columns["bound"][1] is None  # the A100 has no fp8 peak: no bound rather than a wrong one


def test_config_columns_type_cells_as_a_frame_would():
    columns = config_columns("gemm", [{"m": 1, "n": 2, "k": 3}, {"m": 7, "n": 8, "k": 9, "tile_m": 16}], "fp16")
    frame = pd.DataFrame([{"m": 1, "n": 2, "k": 3}, {"m": 7, "n": 8, "k": 9, "tile_m": 16}])
    for name in ("m", "n", "k", "tile_m"):
        assert columns[name].dtype == frame[name].dtype, name
        np.testing.assert_array_equal(columns[name], frame[name].to_numpy())
    assert list(columns["batch"]) == [1, 1] and list(columns["dtype"]) == ["fp16", "fp16"]
    broadcast = config_columns("attention", {"batch": np.array([1, 2]), "heads": 8, "seq_q": [4, 5], "seq_k": 6,
                                             "head_dim": 64})
    assert list(broadcast["heads"]) == [8, 8] and list(broadcast["kv_heads"]) == [8, 8]
    assert list(broadcast["causal"]) == [False, False]


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args] if not code else [sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))


def _imported(importtime_stderr: str) -> set[str]:
    """Top-level packages named in ``-X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("model", [None, "forest_energy", "energy_model"])
def test_the_estimate_command_imports_no_pandas_torch_dash_or_scikit_learn(model, bundles):
    args = ["-X", "importtime", "-m", "perfscope", "estimate", "gemm", "--m", "4096", "--n", "4096", "--k", "4096",
            "--dtype", "fp16", "--json"]
    args += ["--device", "cuda-h100", "--model", str(bundles[model][0])] if model else ["--device", "h100-sxm"]
    run = _run("", *args)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["method"].startswith("model:forest" if model else "roofline fallback")
    imported = _imported(run.stderr)
    assert "perfscope" in imported and "numpy" in imported  # the parse saw the imports
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_an_in_process_estimate_and_a_loaded_bundle_need_no_pandas(bundles):
    code = ("import sys\nfrom perfscope.workflows.estimate import estimate\n"
            "from perfscope.models.persistence import load_bundle\n"
            "r = estimate('conv', 'h100-sxm', 'fp16', conv_n=8, conv_c=64, conv_h=56, conv_w=56, conv_k=64, conv_r=3, "
            "conv_s=3)\nb = load_bundle(sys.argv[1])\n"
            "m = estimate('gemm', 'cuda-h100', 'fp16', m=300, n=200, k=100, model=b)\n"
            "assert r['latency_s'] > 0 and m['energy_j'] > 0\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & {set(HEAVY)!r}))")
    run = _run(code, str(bundles["energy_model"][0]))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


def test_columns_of_different_lengths_beside_a_scalar_are_a_user_error():
    from perfscope.errors import InvalidInputError
    from perfscope.workflows.estimate import config_columns

    with pytest.raises(InvalidInputError, match="different lengths"):
        config_columns("gemm", {"m": [1, 2], "n": [1, 2, 3], "k": 5})


def test_nullable_frame_columns_with_missing_cells_take_the_defaults():
    import pandas as pd

    from perfscope.workflows.estimate import estimate_many

    shape = {"batch": [1], "heads": [8], "seq_q": [128], "seq_k": [128], "head_dim": [64]}
    missing = estimate_many("attention", pd.DataFrame({**shape, "causal": pd.array([pd.NA], dtype="boolean")}),
                            "h100-sxm", dtype="fp16")
    plain = estimate_many("attention", pd.DataFrame({**shape, "causal": [False]}), "h100-sxm", dtype="fp16")
    assert missing["latency_s"].iloc[0] == plain["latency_s"].iloc[0]
