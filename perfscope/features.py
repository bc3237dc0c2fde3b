"""Work and minimum traffic of kernels (docs/formulas.md). Pure functions.

Each formula is written once and serves both callers:

* scalar sizes (Python or numpy integers), as a collector passes them: the result is an
  exact Python ``int`` (arbitrary precision; the store keeps it in an int64 column);
* integer arrays (or lists), as ``perfscope.roofline`` passes configuration columns:
  arguments broadcast together and the result is an ``int64`` ndarray. A result that
  would not fit in int64 (>= 2**63, about 9.2e18) raises ``InvalidInputError`` instead of
  wrapping around: the formula is also evaluated in float64 to check the range.

Sizes must be integers: bool, float (even 3.0) and strings are refused rather than
silently truncated. An invalid configuration raises ``InvalidInputError``; for arrays the
message names the first offending element. ``gemm_is_valid``, ``conv2d_is_valid`` and
``attention_is_valid`` give the same verdict per element without raising, for callers
that skip invalid rows rather than fail on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from perfscope.dtypes import bytes_per_element
from perfscope.errors import InvalidInputError

IntArg = Any  # an integer, or an array-like of integers
FlagArg = Any  # a bool, or an array-like of bools

_INT64_LIMIT = 2.0**63 * (1 - 1e-12)  # float64 results at or above this may not fit in int64


# ---- scalar-or-array plumbing --------------------------------------------------------

class _Rule(NamedTuple):
    """One rule of a configuration: where it is broken, and the error for an offending element."""

    broken: Any  # bool (scalar call) or bool ndarray (vectorised call)
    message: Callable[[Callable[[Any], Any]], str]  # given value_of(argument) at the offending element


def _integers(what: str, requirement: str, **values: Any) -> list[Any]:
    """Each value as a Python int (scalar) or an int64 ndarray; ``InvalidInputError`` for non-integers."""
    out: list[Any] = []
    for name, value in values.items():
        if type(value) is int:  # the common scalar case, first (a collector's call)
            out.append(value)
            continue
        array = np.asarray(value)
        if array.ndim == 0:
            item = array.item()
            if isinstance(item, bool) or not isinstance(item, int):
                raise InvalidInputError(f"{what} {name} must be {requirement}, got {value!r}")
            out.append(item)
            continue
        if array.dtype.kind == "O" and all(isinstance(v, int) and not isinstance(v, bool) for v in array.flat):
            try:
                array = array.astype(np.int64)
            except OverflowError:
                raise InvalidInputError(f"{what} {name} has a value too large for int64") from None
        if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
            raise InvalidInputError(f"{what} {name} has a value too large for int64")
        if array.dtype.kind not in "iu":
            raise InvalidInputError(f"{what} {name} must be {requirement}, got an array of {array.dtype}")
        out.append(array.astype(np.int64, copy=False))
    return out


def _flag(value: Any) -> Any:
    """A truth value (as ``if value`` reads it) or a bool ndarray."""
    array = np.asarray(value)
    return bool(value) if array.ndim == 0 else array.astype(bool)


def _where(condition: Any, yes: Any, no: Any) -> Any:
    """``yes if condition else no`` for a Python bool (keeps Python ints exact), else ``np.where``."""
    if isinstance(condition, (bool, np.bool_)):
        return yes if condition else no
    return np.where(condition, yes, no)


def _floor_at_one(value: Any) -> Any:
    """``value`` with entries below 1 replaced by 1: a safe divisor for rules checked after a broken one."""
    return _where(value >= 1, value, 1)


def _message(template: str, value: Any, at: Callable[[Any], Any]) -> str:
    """``template`` with the offending element of ``value`` (``at`` picks it) in place of ``{}``."""
    return template.format(repr(at(value)))


def _positive(what: str, **sizes: Any) -> Iterator[_Rule]:
    for name, value in sizes.items():
        yield _Rule(value < 1, partial(_message, f"{what} {name} must be a positive integer, got {{}}", value))


def _enforce(rules: Iterator[_Rule]) -> None:
    """Raise ``InvalidInputError`` for the first broken rule (in order), at its first offending element."""
    for rule in rules:
        broken = rule.broken
        if not isinstance(broken, np.ndarray):  # scalar arguments: a Python bool
            if broken:
                raise InvalidInputError(rule.message(lambda value: value))
            continue
        if not broken.any():
            continue
        index = np.unravel_index(int(np.argmax(broken)), broken.shape)
        at = lambda value, shape=broken.shape, index=index: np.broadcast_to(value, shape)[index].item()  # noqa: E731
        where = index[0] if len(index) == 1 else index
        raise InvalidInputError(f"{rule.message(at)} (at index {where})")


def _valid(rules: Iterator[_Rule]) -> Any:
    """True where every rule holds: a bool for scalar arguments, a bool ndarray for arrays."""
    ok: Any = True
    for rule in rules:
        ok = ok & ~np.asarray(rule.broken)
    return ok if np.ndim(ok) else bool(ok)


def _evaluate(what: str, formula: Callable[..., Any], *args: Any) -> Any:
    """``formula(*args)`` in Python ints for scalar arguments, in int64 (range-checked) for arrays.

    Bool arguments (flags) are passed through; integer ones are converted.
    """
    if not any(isinstance(a, np.ndarray) for a in args):
        return formula(*args)

    def converted(dtype: type) -> list[Any]:
        return [a if isinstance(a, (bool, np.bool_)) or (isinstance(a, np.ndarray) and a.dtype == bool)
                else np.asarray(a, dtype=dtype) for a in args]

    with np.errstate(all="ignore"):
        approx = np.asarray(formula(*converted(float)))
    bad = np.abs(approx) >= _INT64_LIMIT
    if bad.any():
        index = int(np.argmax(bad.reshape(-1)))
        raise InvalidInputError(f"{what} is about {approx.reshape(-1)[index]:.3g} at index {index}: too large for "
                             f"int64; check the sizes")
    try:
        return np.asarray(formula(*converted(np.int64)), dtype=np.int64)
    except OverflowError:  # a Python int argument beyond int64 whose result still fits (a huge stride)
        raise InvalidInputError(f"{what}: an argument is too large for int64") from None


# ---- GEMM ------------------------------------------------------------------------------

def _gemm_sizes(batch: IntArg, m: IntArg, n: IntArg, k: IntArg) -> list[Any]:
    return _integers("gemm", "a positive integer", batch=batch, m=m, n=n, k=k)


def _gemm_rules(batch: Any, m: Any, n: Any, k: Any) -> Iterator[_Rule]:
    yield from _positive("gemm", batch=batch, m=m, n=n, k=k)


def gemm_is_valid(batch: IntArg, m: IntArg, n: IntArg, k: IntArg) -> bool | np.ndarray:
    """True (per element) where ``gemm_flops``/``gemm_min_bytes`` accept the sizes: all >= 1."""
    return _valid(_gemm_rules(*_gemm_sizes(batch, m, n, k)))


def gemm_flops(batch: IntArg, m: IntArg, n: IntArg, k: IntArg) -> int | np.ndarray:
    """FLOPs of ``batch`` products of (m x k) by (k x n): 2*b*m*n*k."""
    sizes = _gemm_sizes(batch, m, n, k)
    _enforce(_gemm_rules(*sizes))
    return _evaluate("gemm FLOPs", lambda b, m, n, k: 2 * b * m * n * k, *sizes)


def gemm_min_bytes(batch: IntArg, m: IntArg, n: IntArg, k: IntArg, dtype: str,
                   beta_nonzero: FlagArg = False) -> int | np.ndarray:
    """Bytes that must move at least once: read A and B, write C (and read C if beta != 0)."""
    sizes = _gemm_sizes(batch, m, n, k)
    _enforce(_gemm_rules(*sizes))
    s = bytes_per_element(dtype)

    def formula(b: Any, m: Any, n: Any, k: Any, beta: Any) -> Any:
        return s * b * (m * k + k * n + m * n * _where(beta, 2, 1))

    return _evaluate("gemm min_bytes", formula, *sizes, _flag(beta_nonzero))


# ---- conv2d ----------------------------------------------------------------------------

def _output_hw(h: Any, w: Any, r: Any, s: Any, stride_h: Any, stride_w: Any, pad_h: Any, pad_w: Any,
               dil_h: Any, dil_w: Any) -> tuple[Any, Any]:
    """P = floor((H + 2*pad_h - dil_h*(R-1) - 1) / stride_h) + 1, Q likewise (no checks)."""
    p = (h + 2 * pad_h - dil_h * (r - 1) - 1) // stride_h + 1
    q = (w + 2 * pad_w - dil_w * (s - 1) - 1) // stride_w + 1
    return p, q


def _output_hw_rules(h: Any, w: Any, r: Any, s: Any, stride_h: Any, stride_w: Any, pad_h: Any, pad_w: Any,
                     dil_h: Any, dil_w: Any) -> Iterator[_Rule]:
    yield from _positive("conv2d", h=h, w=w, r=r, s=s, stride_h=stride_h, stride_w=stride_w, dil_h=dil_h,
                         dil_w=dil_w)
    for name, value in (("pad_h", pad_h), ("pad_w", pad_w)):
        yield _Rule(value < 0, partial(_message, f"conv2d {name} must be an integer >= 0, got {{}}", value))
    p, q = _output_hw(h, w, r, s, _floor_at_one(stride_h), _floor_at_one(stride_w), pad_h, pad_w, dil_h, dil_w)
    yield _Rule((p < 1) | (q < 1), lambda at: (
        f"conv2d output is empty: a {at(r)}x{at(s)} filter (dilation {at(dil_h)}x{at(dil_w)}) does not fit a "
        f"{at(h)}x{at(w)} image padded by {at(pad_h)}x{at(pad_w)}; use a larger image, more padding or a "
        f"smaller filter"))


def _conv2d_args(n: IntArg, c: IntArg, h: IntArg, w: IntArg, k: IntArg, r: IntArg, s: IntArg, stride_h: IntArg,
                 stride_w: IntArg, pad_h: IntArg, pad_w: IntArg, dil_h: IntArg, dil_w: IntArg,
                 groups: IntArg) -> list[Any]:
    """The 14 conv2d arguments as integers, in the public functions' order."""
    sizes = _integers("conv2d", "a positive integer", n=n, c=c, h=h, w=w, k=k, r=r, s=s, stride_h=stride_h,
                      stride_w=stride_w)
    pads = _integers("conv2d", "an integer >= 0", pad_h=pad_h, pad_w=pad_w)
    rest = _integers("conv2d", "a positive integer", dil_h=dil_h, dil_w=dil_w, groups=groups)
    return [*sizes, *pads, *rest]


def _conv2d_rules(n: Any, c: Any, h: Any, w: Any, k: Any, r: Any, s: Any, stride_h: Any, stride_w: Any,
                  pad_h: Any, pad_w: Any, dil_h: Any, dil_w: Any, groups: Any) -> Iterator[_Rule]:
    yield from _positive("conv2d", n=n, c=c, k=k, groups=groups)
    g = _floor_at_one(groups)
    yield _Rule((c % g != 0) | (k % g != 0), lambda at: (
        f"conv2d groups ({at(groups)}) must divide both the input channels ({at(c)}) and the filters ({at(k)})"))
    yield from _output_hw_rules(h, w, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)


def conv2d_output_hw(h: IntArg, w: IntArg, r: IntArg, s: IntArg, stride_h: IntArg = 1, stride_w: IntArg = 1,
                     pad_h: IntArg = 0, pad_w: IntArg = 0, dil_h: IntArg = 1,
                     dil_w: IntArg = 1) -> tuple[int, int] | tuple[np.ndarray, np.ndarray]:
    """Output height and width (P, Q) of a 2-D convolution of an H x W image by an R x S filter.

    P = floor((H + 2*pad_h - dil_h*(R-1) - 1) / stride_h) + 1, Q likewise.
    ``InvalidInputError`` for non-positive sizes, negative padding or an empty output.
    """
    args = [*_integers("conv2d", "a positive integer", h=h, w=w, r=r, s=s, stride_h=stride_h, stride_w=stride_w),
            *_integers("conv2d", "an integer >= 0", pad_h=pad_h, pad_w=pad_w),
            *_integers("conv2d", "a positive integer", dil_h=dil_h, dil_w=dil_w)]
    _enforce(_output_hw_rules(*args))
    p, q = _output_hw(*args)
    if isinstance(p, int) and isinstance(q, int):
        return p, q
    p, q = np.broadcast_arrays(p, q)
    return p.copy(), q.copy()  # writable arrays of one shape


def conv2d_is_valid(n: IntArg, c: IntArg, h: IntArg, w: IntArg, k: IntArg, r: IntArg, s: IntArg,
                    stride_h: IntArg = 1, stride_w: IntArg = 1, pad_h: IntArg = 0, pad_w: IntArg = 0,
                    dil_h: IntArg = 1, dil_w: IntArg = 1, groups: IntArg = 1) -> bool | np.ndarray:
    """True (per element) where ``conv2d_flops``/``conv2d_min_bytes`` accept the configuration."""
    return _valid(_conv2d_rules(*_conv2d_args(n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, dil_h,
                                              dil_w, groups)))


def conv2d_flops(n: IntArg, c: IntArg, h: IntArg, w: IntArg, k: IntArg, r: IntArg, s: IntArg,
                 stride_h: IntArg = 1, stride_w: IntArg = 1, pad_h: IntArg = 0, pad_w: IntArg = 0,
                 dil_h: IntArg = 1, dil_w: IntArg = 1, groups: IntArg = 1) -> int | np.ndarray:
    """FLOPs of a conv2d (no bias): 2 * N*K*P*Q * (C/groups)*R*S (one multiply-add = 2 FLOPs)."""
    args = _conv2d_args(n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
    _enforce(_conv2d_rules(*args))

    def formula(n: Any, c: Any, h: Any, w: Any, k: Any, r: Any, s: Any, stride_h: Any, stride_w: Any,
                pad_h: Any, pad_w: Any, dil_h: Any, dil_w: Any, groups: Any) -> Any:
        p, q = _output_hw(h, w, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
        return 2 * n * k * p * q * (c // groups) * r * s

    return _evaluate("conv2d FLOPs", formula, *args)


def conv2d_min_bytes(n: IntArg, c: IntArg, h: IntArg, w: IntArg, k: IntArg, r: IntArg, s: IntArg,
                     stride_h: IntArg = 1, stride_w: IntArg = 1, pad_h: IntArg = 0, pad_w: IntArg = 0,
                     dil_h: IntArg = 1, dil_w: IntArg = 1, groups: IntArg = 1, *, dtype: str) -> int | np.ndarray:
    """Bytes a conv2d must move at least once: read the input (N*C*H*W) and the filters
    (K*(C/groups)*R*S), write the output (N*K*P*Q); padding is not stored."""
    args = _conv2d_args(n, c, h, w, k, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
    _enforce(_conv2d_rules(*args))
    size = bytes_per_element(dtype)

    def formula(n: Any, c: Any, h: Any, w: Any, k: Any, r: Any, s: Any, stride_h: Any, stride_w: Any,
                pad_h: Any, pad_w: Any, dil_h: Any, dil_w: Any, groups: Any) -> Any:
        p, q = _output_hw(h, w, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
        return size * (n * c * h * w + k * (c // groups) * r * s + n * k * p * q)

    return _evaluate("conv2d min_bytes", formula, *args)


# ---- attention -------------------------------------------------------------------------

def _attention_rules(batch: Any, heads: Any, seq_q: Any, seq_k: Any, head_dim: Any,
                     kv_heads: Any = None) -> Iterator[_Rule]:
    """The rules of ``attention_min_bytes`` (with ``kv_heads``) or of ``attention_flops`` (without)."""
    if kv_heads is None:
        yield from _positive("attention", batch=batch, heads=heads, seq_q=seq_q, seq_k=seq_k, head_dim=head_dim)
        return
    yield from _positive("attention", batch=batch, heads=heads, kv_heads=kv_heads, seq_q=seq_q, seq_k=seq_k,
                         head_dim=head_dim)
    yield _Rule(heads % _floor_at_one(kv_heads) != 0, lambda at: (
        f"attention heads ({at(heads)}) must be a multiple of kv_heads ({at(kv_heads)})"))


def attention_is_valid(batch: IntArg, heads: IntArg, kv_heads: IntArg, seq_q: IntArg, seq_k: IntArg,
                       head_dim: IntArg) -> bool | np.ndarray:
    """True (per element) where both ``attention_flops`` and ``attention_min_bytes`` accept the sizes."""
    batch, heads, kv_heads, seq_q, seq_k, head_dim = _integers(
        "attention", "a positive integer", batch=batch, heads=heads, kv_heads=kv_heads, seq_q=seq_q, seq_k=seq_k,
        head_dim=head_dim)
    return _valid(_attention_rules(batch, heads, seq_q, seq_k, head_dim, kv_heads))


def attention_flops(batch: IntArg, heads: IntArg, seq_q: IntArg, seq_k: IntArg, head_dim: IntArg,
                    causal: FlagArg = False) -> int | np.ndarray:
    """Forward FLOPs of attention: two products (Q K^T and P V), 2*d FLOPs per (query, key)
    pair each, so 4*B*H*d*A where A is the number of attended pairs (softmax not counted).

    A = Nq*Nk without a mask. With torch's causal mask (``is_causal``: top-left aligned,
    query i sees keys 0..i) A is the area of the kept triangle: Nq^2/2 when Nq <= Nk and
    Nq*Nk - Nk^2/2 when Nq > Nk. For Nq == Nk this is exactly half the dense count (the
    convention of FlashAttention's benchmarks, kept in docs/formulas.md); it differs from the exact
    count of unmasked pairs by the half-diagonal, min(Nq, Nk)/2 pairs.
    """
    sizes = _integers("attention", "a positive integer", batch=batch, heads=heads, seq_q=seq_q, seq_k=seq_k,
                      head_dim=head_dim)
    _enforce(_attention_rules(*sizes))

    def formula(b: Any, h: Any, nq: Any, nk: Any, d: Any, causal: Any) -> Any:
        per_pair = 4 * b * h * d  # FLOPs per attended (query, key) pair
        triangle = _where(nq <= nk, per_pair * nq * nq // 2, per_pair * nq * nk - per_pair * nk * nk // 2)
        return _where(causal, triangle, per_pair * nq * nk)

    return _evaluate("attention FLOPs", formula, *sizes, _flag(causal))


def attention_min_bytes(batch: IntArg, heads: IntArg, kv_heads: IntArg, seq_q: IntArg, seq_k: IntArg,
                        head_dim: IntArg, dtype: str, fused: FlagArg = True) -> int | np.ndarray:
    """Bytes attention must move at least once, at the storage size s of ``dtype``.

    Fused (flash, memory-efficient, cuDNN): read Q, K, V and write O once:
    s*B*d*(2*H*Nq + 2*Hkv*Nk). Unfused (the math backend) also materialises the Nq x Nk
    matrices per query head: writes the scores, reads them for the softmax, writes the
    probabilities, reads them for P V: + s*B*H*Nq*Nk*4 (the full matrix, causal or not,
    since an unfused implementation masks a dense matrix).
    """
    batch, heads, kv_heads, seq_q, seq_k, head_dim = _integers(
        "attention", "a positive integer", batch=batch, heads=heads, kv_heads=kv_heads, seq_q=seq_q, seq_k=seq_k,
        head_dim=head_dim)
    _enforce(_attention_rules(batch, heads, seq_q, seq_k, head_dim, kv_heads))
    size = bytes_per_element(dtype)

    def formula(b: Any, h: Any, hkv: Any, nq: Any, nk: Any, d: Any, fused: Any) -> Any:
        total = size * b * d * (2 * h * nq + 2 * hkv * nk)
        return total + _where(fused, 0, size * b * h * nq * nk * 4)

    return _evaluate("attention min_bytes", formula, batch, heads, kv_heads, seq_q, seq_k, head_dim, _flag(fused))
