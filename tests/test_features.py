"""perfscope.features: one formula per quantity, called with Python ints or with arrays."""

from __future__ import annotations

import numpy as np
import pytest

from perfscope import features
from perfscope.errors import InvalidInputError

N = 300  # random configurations per family


def rng_for(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def scalar_or_none(fn, *args, **kwargs):
    """``fn`` on Python ints, or None where it refuses the configuration."""
    try:
        return fn(*args, **kwargs)
    except InvalidInputError:
        return None


def check_same(vectorised: np.ndarray, scalars: list) -> None:
    assert isinstance(vectorised, np.ndarray) and vectorised.dtype == np.int64
    assert all(type(s) is int for s in scalars)  # Python ints, not numpy scalars
    assert vectorised.tolist() == scalars


def test_gemm_scalar_and_vectorised_agree():
    rng = rng_for(0)
    b, m, n, k = rng.integers(1, 5000, size=(4, N))
    beta = rng.random(N) < 0.5
    for dtype in ("fp32", "bf16", "fp8_e4m3"):
        args = [(int(b[i]), int(m[i]), int(n[i]), int(k[i])) for i in range(N)]
        check_same(features.gemm_flops(b, m, n, k), [features.gemm_flops(*a) for a in args])
        check_same(features.gemm_min_bytes(b, m, n, k, dtype, beta_nonzero=beta),
                   [features.gemm_min_bytes(*a, dtype, beta_nonzero=bool(beta[i])) for i, a in enumerate(args)])
    assert features.gemm_flops(2, 3, 4, 5) == 2 * 2 * 3 * 4 * 5


def test_conv2d_scalar_and_vectorised_agree_and_is_valid_says_which_are_accepted():
    rng = rng_for(1)
    groups = rng.choice([1, 2, 3, 4], N)
    cfg = {
        "n": rng.integers(1, 9, N), "c": groups * rng.integers(1, 9, N) + (rng.random(N) < 0.1),  # some not divisible
        "h": rng.integers(1, 65, N), "w": rng.integers(1, 65, N), "k": groups * rng.integers(1, 9, N),
        "r": rng.choice([1, 3, 5, 7, 11], N), "s": rng.choice([1, 3, 5, 7], N),
        "stride_h": rng.integers(1, 4, N), "stride_w": rng.integers(1, 4, N),
        "pad_h": rng.integers(0, 4, N), "pad_w": rng.integers(0, 4, N),
        "dil_h": rng.integers(1, 4, N), "dil_w": rng.integers(1, 4, N), "groups": groups,
    }
    rows = [{name: int(v[i]) for name, v in cfg.items()} for i in range(N)]
    scalar_flops = [scalar_or_none(features.conv2d_flops, **row) for row in rows]
    accepted = np.array([f is not None for f in scalar_flops])
    assert 0.3 < accepted.mean() < 0.95  # both kinds are exercised (empty outputs, groups that do not divide)
    np.testing.assert_array_equal(features.conv2d_is_valid(**cfg), accepted)
    assert [features.conv2d_is_valid(**row) for row in rows] == accepted.tolist()

    good = {name: v[accepted] for name, v in cfg.items()}
    good_rows = [row for row, ok in zip(rows, accepted, strict=True) if ok]
    check_same(features.conv2d_flops(**good), [f for f in scalar_flops if f is not None])
    check_same(features.conv2d_min_bytes(**good, dtype="fp16"),
               [features.conv2d_min_bytes(**row, dtype="fp16") for row in good_rows])
    hw = ("h", "w", "r", "s", "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w")
    p, q = features.conv2d_output_hw(**{name: good[name] for name in hw})
    assert list(zip(p.tolist(), q.tolist(), strict=True)) == [features.conv2d_output_hw(**{n: row[n] for n in hw})
                                                 for row in good_rows]


def test_attention_scalar_and_vectorised_agree():
    rng = rng_for(2)
    kv = rng.choice([1, 2, 4, 8], N)
    cfg = {"batch": rng.integers(1, 9, N), "heads": kv * rng.integers(1, 5, N), "kv_heads": kv,
           "seq_q": rng.integers(1, 5000, N), "seq_k": rng.integers(1, 5000, N), "head_dim": rng.choice([64, 128], N)}
    causal, fused = rng.random(N) < 0.5, rng.random(N) < 0.5
    rows = [{name: int(v[i]) for name, v in cfg.items()} for i in range(N)]
    flops_args = ("batch", "heads", "seq_q", "seq_k", "head_dim")
    check_same(features.attention_flops(*(cfg[a] for a in flops_args), causal=causal),
               [features.attention_flops(*(row[a] for a in flops_args), causal=bool(c))
                for row, c in zip(rows, causal, strict=True)])
    check_same(features.attention_min_bytes(**cfg, dtype="bf16", fused=fused),
               [features.attention_min_bytes(**row, dtype="bf16", fused=bool(f))
                for row, f in zip(rows, fused, strict=True)])
    assert features.attention_is_valid(**cfg).all()
    # both causal branches, against the formula: Nq <= Nk keeps Nq^2/2 pairs, Nq > Nk keeps Nq*Nk - Nk^2/2
    np.testing.assert_array_equal(features.attention_flops(1, 1, np.array([100, 300]), 200, 1, causal=True),
                                  [4 * 100 * 100 // 2, 4 * 300 * 200 - 4 * 200 * 200 // 2])


def test_scalars_of_any_integer_kind_give_python_ints_and_arrays_broadcast():
    assert type(features.gemm_flops(np.int64(2), np.int32(3), 4, np.uint8(5))) is int
    assert features.gemm_flops(np.int64(2), np.int32(3), 4, np.uint8(5)) == 240
    out = features.gemm_flops(1, [2, 3], 4, 5)  # a list is an array; the rest broadcast
    assert isinstance(out, np.ndarray) and out.tolist() == [80, 120]
    mixed = features.attention_flops(1, 2, 16, 16, 8, causal=np.array([False, True]))
    assert mixed.tolist() == [4 * 2 * 16 * 16 * 8, 4 * 2 * 16 * 16 * 8 // 2]
    assert features.conv2d_is_valid(1, 3, 2, 2, 8, 7, 7) is False  # no exception from is_valid


@pytest.mark.parametrize("call, good, bad, message", [
    (lambda v: features.gemm_flops(1, v, 8, 8), 8, 0, "gemm m must be a positive integer, got 0"),
    (lambda v: features.gemm_min_bytes(v, 8, 8, 8, "fp16"), 1, 0, "gemm batch must be a positive integer, got 0"),
    (lambda v: features.conv2d_flops(1, 3, v, 8, 4, 3, 3), 8, 0, "conv2d h must be a positive integer, got 0"),
    (lambda v: features.conv2d_min_bytes(1, 3, 8, 8, 4, 3, 3, stride_w=v, dtype="fp32"), 1, 0,
     "conv2d stride_w must be a positive integer, got 0"),
    (lambda v: features.conv2d_output_hw(8, 8, 3, 3, pad_h=v), 0, -1, "conv2d pad_h must be an integer >= 0, got -1"),
    (lambda v: features.conv2d_flops(1, 6, 8, 8, 4, 3, 3, groups=v), 2, 4,
     "conv2d groups (4) must divide both the input channels (6) and the filters (4)"),
    (lambda v: features.conv2d_output_hw(v, 5, 5, 5), 5, 4,
     "conv2d output is empty: a 5x5 filter (dilation 1x1) does not fit a 4x5 image padded by 0x0"),
    (lambda v: features.attention_flops(1, 8, 16, v, 64), 16, 0, "attention seq_k must be a positive integer, got 0"),
    (lambda v: features.attention_min_bytes(1, 12, v, 16, 16, 64, "fp32"), 4, 8,
     "attention heads (12) must be a multiple of kv_heads (8)"),
])
def test_bad_inputs_raise_the_same_error_scalar_and_vectorised(call, good, bad, message):
    with pytest.raises(InvalidInputError) as scalar:
        call(bad)
    assert str(scalar.value).startswith(message)
    call(good)  # the rule is the one under test: the good value passes
    with pytest.raises(InvalidInputError) as vectorised:
        call(np.array([good, good, bad, bad]))
    assert str(vectorised.value) == f"{scalar.value} (at index 2)"  # the first offending element
    assert features.gemm_is_valid(1, 1, 1, 1)


@pytest.mark.parametrize("value", [2.0, True, "8", None, np.array([2.0, 3.0]), np.array([True]), [1, "2"]])
def test_non_integer_sizes_are_refused_not_truncated(value):
    with pytest.raises(InvalidInputError, match="gemm m must be a positive integer"):
        features.gemm_flops(1, value, 8, 8)
    with pytest.raises(InvalidInputError, match="attention head_dim must be a positive integer"):
        features.attention_flops(1, 8, 16, 16, value)


def test_unknown_dtype_is_refused_in_both_forms():
    for m in (8, np.array([8, 16])):
        with pytest.raises(InvalidInputError, match="unknown dtype 'fp64'"):
            features.gemm_min_bytes(1, m, 8, 8, "fp64")


def test_int64_overflow_raises_for_arrays_and_scalars_stay_exact():
    huge = 2**21
    assert features.gemm_flops(huge, huge, huge, huge) == 2 * huge**4  # Python ints: exact, beyond int64
    with pytest.raises(InvalidInputError, match="too large for int64"):
        features.gemm_flops(np.array([1, 1]), 2**20, 2**21, 2**21)  # 2**63: one past int64's largest value
    fits = features.gemm_flops(np.array([1, 2]), 2**20, 2**20, 2**20)  # up to 2**62: exact in int64
    assert fits.tolist() == [2**61, 2**62]
