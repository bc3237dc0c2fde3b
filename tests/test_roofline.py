"""Roofline features: regimes, ridge point, tile/wave quantisation, the feature frame."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from synthetic_rows import features_frame  # noqa: E402 (tests/ is on sys.path)

from perfscope import features
from perfscope.devices.profile import DeviceProfile
from perfscope.devices.registry import device_spec
from perfscope.roofline import (
    FEATURE_COLUMNS,
    REGIMES,
    arithmetic_intensity,
    ridge_point,
    roofline_bound,
    tile_wave,
)
from perfscope.work import work_and_traffic

H100 = device_spec("h100-sxm")


def gemm_rows(shapes, dtype="fp16", **extra):
    rows = pd.DataFrame([{"kernel": "gemm", "dtype": dtype, "batch": b, "m": m, "n": n, "k": k}
                         for b, m, n, k in shapes])
    return rows.assign(**extra)


def test_three_regimes_on_hand_made_gemms():
    rows = gemm_rows([(1, 8, 8, 8),            # tiny: the launch floor dominates
                      (1, 1, 8192, 8192),      # GEMV-like: streams B once, 1 FLOP per byte
                      (1, 8192, 8192, 8192)])  # big square: compute
    out = features_frame(rows, H100)
    assert list(out["bound"]) == ["launch", "memory", "compute"]
    tiny, skinny, big = out.itertuples()
    assert tiny.bound_time_s == H100.launch_overhead_s
    assert skinny.bound_time_s == pytest.approx(skinny.min_bytes / 3.35e12)
    assert big.bound_time_s == pytest.approx(2 * 8192**3 / 989.4e12)
    assert big.intensity_over_ridge > 1 > skinny.intensity_over_ridge


def test_roofline_bound_by_hand():
    bound = roofline_bound(flops=[1e12, 1e9, 1e3], min_bytes=[1e9, 1e9, 1e3], peak_flops_per_s=1e14,
                           mem_bandwidth_bytes_per_s=1e12, launch_overhead_s=5e-6)
    np.testing.assert_allclose(bound.compute_time_s, [1e-2, 1e-5, 1e-11])
    np.testing.assert_allclose(bound.memory_time_s, [1e-3, 1e-3, 1e-9])
    np.testing.assert_allclose(bound.bound_time_s, [1e-2, 1e-3, 5e-6])
    assert [REGIMES[c] for c in bound.regime] == ["compute", "memory", "launch"]


def test_a_missing_peak_gives_no_bound_rather_than_a_wrong_one():
    bound = roofline_bound(1e12, 1e9, math.nan, 1e12, 5e-6)
    assert math.isnan(bound.bound_time_s) and bound.regime == -1
    out = features_frame(gemm_rows([(1, 4096, 4096, 4096)], dtype="fp8_e4m3"), device_spec("a100-80gb-sxm"))
    assert math.isnan(out["bound_time_s"][0]) and pd.isna(out["bound"][0])
    assert out["flops"][0] == 2 * 4096**3  # the work is still known


def test_ridge_point_and_intensity():
    assert ridge_point(989.4e12, 3.35e12) == pytest.approx(295.343, rel=1e-4)
    np.testing.assert_allclose(arithmetic_intensity([8.0, 1.0], [2.0, 0.0]), [4.0, math.nan])
    out = features_frame(gemm_rows([(1, 1024, 1024, 1024)]), H100)
    assert out["ridge_point_flops_per_byte"][0] == pytest.approx(989.4e12 / 3.35e12)
    # fp16 GEMM, n^3 * 2 FLOPs over 3 * n^2 * 2 bytes: I = n / 3
    assert out["intensity_flops_per_byte"][0] == pytest.approx(1024 / 3)


def test_regime_follows_intensity_against_the_ridge_on_random_rows():
    rng = np.random.default_rng(1)
    shapes = rng.integers(1, 16384, size=(2000, 3))
    rows = gemm_rows([(1, m, n, k) for m, n, k in shapes], dtype="bf16")
    out = features_frame(rows, H100)
    not_launch = out["bound"] != "launch"
    compute = out["intensity_over_ridge"] > 1
    assert ((out["bound"] == "compute") == compute)[not_launch].all()
    expected = np.maximum.reduce([out["compute_time_s"], out["memory_time_s"], out["launch_overhead_s"]])
    np.testing.assert_array_equal(out["bound_time_s"], expected)


def test_wave_quantisation_known_case():
    tw = tile_wave(m=128 * 133, n=128, sm_count=132)
    assert (tw.tiles, tw.waves) == (133, 2)
    assert tw.wave_efficiency == pytest.approx(133 / 264)
    assert tw.tile_efficiency == 1.0
    full = tile_wave(m=128 * 132, n=128, sm_count=132)
    assert (full.waves, full.wave_efficiency) == (1, 1.0)


def test_tile_quantisation_pads_partial_tiles_and_counts_batches():
    tw = tile_wave(m=129, n=128, batch=3, sm_count=4, tile_m=128, tile_n=128)
    assert tw.tiles == 6 and tw.waves == 2
    assert tw.tile_efficiency == pytest.approx(129 * 128 / (256 * 128))
    assert tw.wave_efficiency == pytest.approx(6 / 8)
    two_per_sm = tile_wave(m=64, n=64, sm_count=1, blocks_per_sm=2, tile_m=32, tile_n=32)
    assert (two_per_sm.tiles, two_per_sm.waves, two_per_sm.wave_efficiency) == (4, 2, 1.0)


def test_functions_are_vectorised_and_agree_with_scalar_calls():
    rng = np.random.default_rng(0)
    m, n = rng.integers(1, 5000, 500), rng.integers(1, 5000, 500)
    tiles = rng.choice([32, 64, 128], 500)
    tw = tile_wave(m, n, sm_count=108, tile_m=tiles, tile_n=tiles)
    assert tw.tiles.shape == tw.wave_efficiency.shape == (500,)
    for i in range(0, 500, 97):
        one = tile_wave(int(m[i]), int(n[i]), sm_count=108, tile_m=int(tiles[i]), tile_n=int(tiles[i]))
        assert (one.tiles, one.waves) == (tw.tiles[i], tw.waves[i])
        assert one.wave_efficiency == pytest.approx(tw.wave_efficiency[i])


def test_features_tile_from_the_rows_else_the_default():
    rows = gemm_rows([(1, 256, 256, 64), (1, 256, 256, 64)], tile_m=[32.0, np.nan], tile_n=[32.0, np.nan])
    out = features_frame(rows, H100)
    assert list(out["tile_m_used"]) == [32, 128] and list(out["tiles"]) == [64, 4]
    assert list(out["waves"]) == [1, 1]
    assert out["wave_efficiency"][1] == pytest.approx(4 / 132)


def test_features_add_every_documented_column_and_leave_the_input_alone():
    rows = gemm_rows([(2, 512, 256, 128)])
    before = rows.copy()
    out = features_frame(rows, H100)
    pd.testing.assert_frame_equal(rows, before)
    assert set(FEATURE_COLUMNS) <= set(out.columns)
    row = out.iloc[0]
    assert row["flops"] == features.gemm_flops(2, 512, 256, 128)
    assert row["min_bytes"] == features.gemm_min_bytes(2, 512, 256, 128, "fp16")
    assert row["log10_flops"] == pytest.approx(math.log10(row["flops"]))
    assert row["device_peak_fp8_flops_per_s"] == pytest.approx(1978.9e12)
    assert (row["device_key"], row["device_source"], row["launch_overhead_source"]) == ("h100-sxm", "spec", "assumed")
    assert row["dtype_bytes"] == 2
    assert row["min_bytes_over_l2"] == pytest.approx(row["min_bytes"] / (50 * 2**20))


def test_stored_work_is_kept_and_missing_work_is_computed():
    rows = pd.DataFrame({"kernel": ["gemm", "gemm", "mystery"], "dtype": ["fp32"] * 3,
                         "batch": [1, 1, 1], "m": [64, 64, 64], "n": [64, 64, 64], "k": [64, 64, 64],
                         "flops": [123.0, None, None], "min_bytes": [456.0, None, 10.0]})
    flops, min_bytes = work_and_traffic(rows)
    assert (flops[0], min_bytes[0]) == (123.0, 456.0)
    assert (flops[1], min_bytes[1]) == (2 * 64**3, 4 * 3 * 64 * 64)
    assert math.isnan(flops[2]) and min_bytes[2] == 10.0  # an unknown family is not guessed
    out = features_frame(rows, H100)
    assert math.isnan(out["bound_time_s"][2]) and math.isnan(out["tiles"][2])


def test_conv_and_attention_work_comes_from_the_features_module():
    rows = pd.DataFrame([
        # ResNet-50 stem: 1x3x224x224, 64 filters 7x7, stride 2, pad 3 -> 112x112 output
        {"kernel": "conv", "dtype": "fp16", "conv_n": 1, "conv_c": 3, "conv_h": 224, "conv_w": 224, "conv_k": 64,
         "conv_r": 7, "conv_s": 7, "stride_h": 2, "stride_w": 2, "pad_h": 3, "pad_w": 3, "n": 999},
        {"kernel": "attention", "dtype": "bf16", "batch": 2, "heads": 8, "kv_heads": 8, "seq_q": 1024,
         "seq_k": 1024, "head_dim": 64, "causal": True, "backend": "flash"},
        {"kernel": "attention", "dtype": "bf16", "batch": 2, "heads": 8, "kv_heads": 2, "seq_q": 1, "seq_k": 1024,
         "head_dim": 64, "causal": False, "backend": "flash"},
        {"kernel": "attention", "dtype": "bf16", "batch": 2, "heads": 8, "kv_heads": None, "seq_q": 1, "seq_k": 1024,
         "head_dim": 64, "causal": False, "backend": "math"},
        {"kernel": "conv", "dtype": "fp16", "conv_n": 1, "conv_c": 3, "conv_h": 2, "conv_w": 2, "conv_k": 8,
         "conv_r": 7, "conv_s": 7},  # the filter does not fit: no work, no crash
    ])
    out = features_frame(rows, H100)
    assert out["flops"][0] == 2 * 64 * 112 * 112 * 3 * 7 * 7
    assert out["min_bytes"][0] == 2 * (3 * 224 * 224 + 64 * 3 * 7 * 7 + 64 * 112 * 112)
    assert out["flops"][1] == 4 * 2 * 8 * 1024 * 1024 * 64 // 2
    assert out["flops"][2] == 4 * 2 * 8 * 1 * 1024 * 64
    assert out["min_bytes"][2] == 2 * 2 * 64 * (2 * 8 * 1 + 2 * 2 * 1024)
    # kv_heads defaults to heads; the math backend also writes and reads the score matrices
    assert out["min_bytes"][3] == 2 * 2 * 64 * (2 * 8 * 1 + 2 * 8 * 1024) + 2 * 2 * 8 * 1 * 1024 * 4
    assert math.isnan(out["flops"][4])
    # implicit-GEMM grid of the conv (N·P·Q x K) and one tile per (batch, head) query block
    assert out["tiles"][0] == math.ceil(112 * 112 / 128) * 1
    assert out["tiles"][1] == 2 * 8 * 8 and out["tile_efficiency"][1] == 1.0


def test_a_row_missing_a_size_gets_no_work_without_spoiling_its_group():
    conv = {"kernel": "conv", "dtype": "fp16", "conv_n": 1, "conv_c": 3, "conv_h": 8, "conv_w": 8, "conv_k": 4,
            "conv_r": 3, "conv_s": 3}
    rows = pd.DataFrame([conv, {**conv, "conv_r": None}, {**conv, "conv_r": None, "flops": 1e6, "min_bytes": 1e4},
                         {**conv, "conv_h": 8.5}])
    flops, min_bytes = work_and_traffic(rows)
    assert flops[0] == features.conv2d_flops(1, 3, 8, 8, 4, 3, 3) == 2 * 4 * 6 * 6 * 3 * 3 * 3
    assert min_bytes[0] == features.conv2d_min_bytes(1, 3, 8, 8, 4, 3, 3, dtype="fp16")
    assert math.isnan(flops[1]) and math.isnan(min_bytes[1])  # no filter size: not guessed
    assert (flops[2], min_bytes[2]) == (1e6, 1e4)  # stored work is kept
    assert math.isnan(flops[3])  # a fractional size is not truncated into a configuration


def test_vectorised_work_matches_the_scalar_features_calls_row_by_row():
    rng = np.random.default_rng(3)
    size = 300
    kv = rng.choice([1, 2, 4], size)
    rows = pd.DataFrame({"kernel": "attention", "dtype": rng.choice(["fp16", "fp32"], size),
                         "batch": rng.integers(1, 5, size), "heads": kv * rng.integers(1, 4, size),
                         "kv_heads": np.where(rng.random(size) < 0.2, np.nan, kv),
                         "seq_q": rng.integers(1, 300, size), "seq_k": rng.integers(1, 300, size),
                         "head_dim": rng.choice([32, 64], size), "causal": rng.random(size) < 0.5,
                         "backend": rng.choice(["flash", "math", None], size)})
    flops, min_bytes = work_and_traffic(rows)
    for i, row in enumerate(rows.itertuples()):
        kv_heads = row.heads if math.isnan(row.kv_heads) else int(row.kv_heads)
        assert flops[i] == features.attention_flops(row.batch, row.heads, row.seq_q, row.seq_k, row.head_dim,
                                                    row.causal)
        assert min_bytes[i] == features.attention_min_bytes(row.batch, row.heads, kv_heads, row.seq_q, row.seq_k,
                                                            row.head_dim, row.dtype, fused=row.backend != "math")


def test_a_large_frame_and_its_rows_one_by_one_give_the_same_features():
    rng = np.random.default_rng(4)
    rows = gemm_rows([tuple(s) for s in rng.integers(1, 4096, size=(400, 4))], dtype="bf16")
    rows.loc[::7, "dtype"] = "fp32"
    rows.loc[::11, "kernel"] = None  # no family: no work, in both paths
    rows.loc[::13, "kernel"] = "mystery"
    whole = features_frame(rows, H100)
    for i in range(0, len(rows), 37):
        one = features_frame(rows.iloc[[i]], H100)
        for column in ("flops", "min_bytes", "dtype_bytes", "peak_flops_per_s", "bound_time_s", "tiles"):
            np.testing.assert_array_equal(one[column].to_numpy(), whole[column].to_numpy()[[i]])
        missing = pd.isna(whole["bound"].iloc[i])
        assert pd.isna(one["bound"].iloc[0]) if missing else one["bound"].iloc[0] == whole["bound"].iloc[i]
    assert whole["flops"].isna().sum() == rows["kernel"].ne("gemm").sum()


def test_a_calibrated_profile_works_like_a_spec():
    profile = DeviceProfile(device_key="cpu-test", name="test cpu", kind="cpu",
                            peaks_flops_per_s={"fp32": 50e9}, mem_bandwidth_bytes_per_s=10e9,
                            launch_overhead_s=3e-6, sm_count=2, l2_bytes=32 * 2**20, memory_bytes=2**34,
                            measured_at="2026-01-01T00:00:00+00:00", calibrate_s=1.0)
    rows = gemm_rows([(1, 2048, 2048, 2048), (1, 64, 64, 64)], dtype="fp32", time_median_ms=[400.0, 0.02])
    out = features_frame(rows, profile)
    assert list(out["device_source"]) == ["calibrated"] * 2
    assert list(out["launch_overhead_source"]) == ["calibrated"] * 2
    assert out["bound_time_s"][0] == pytest.approx(2 * 2048**3 / 50e9)
    assert out["roofline_attainment"][0] == pytest.approx(out["bound_time_s"][0] / 0.4)
    assert out["waves"][0] == 16 * 16 / 2  # "SMs" of a CPU profile are its worker threads
    assert math.isnan(out["device_peak_bf16_flops_per_s"][0])
    assert features_frame(rows, profile, launch_overhead_s=1e-3)["bound"].tolist() == ["compute", "launch"]
