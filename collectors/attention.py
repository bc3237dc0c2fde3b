"""Attention through PyTorch's ``scaled_dot_product_attention`` with one forced backend.

``AttentionShape`` is what every attention implementation shares (fields, validation,
work, configuration columns, inputs); ``AttentionCase`` and the Triton attention case
build on it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from perfscope.collectors.conv import check_dtype_supported, describe_point, expand_axes, one_line
from perfscope.collectors.fp32_math import torch_fp32_math
from perfscope.collectors.inputs import input_set_count, seeded_uniform, torch_dtype
from perfscope.collectors.memory_guard import FLOAT32_BYTES, FLOAT64_BYTES, MemoryNeed
from perfscope.collectors.protocol import Case, Workload, check_cache_mode
from perfscope.devices.base import Device
from perfscope.dtypes import bytes_per_element, dtype_info, is_tf32
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.features import attention_flops, attention_min_bytes

# perfscope's backend names -> torch.nn.attention.SDPBackend members
BACKENDS = {"math": "MATH", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
            "cudnn": "CUDNN_ATTENTION"}
FUSED_BACKENDS = ("flash", "efficient", "cudnn")
CHECK_EDGE_ROWS = 32  # the first and the last query rows are compared with the float64 reference
# RuntimeError texts by which torch says a forced backend cannot run this input
_REFUSALS = ("no available kernel", "no viable backend", "not supported", "only supports", "not implemented for")


@dataclass(frozen=True, kw_only=True)
class AttentionShape(Case):
    """The configuration every attention implementation shares:
    O = softmax(Q K^T / sqrt(d) [+ causal mask]) V with Q (B, H, Nq, d) and K, V (B, Hkv, Nk, d).

    ``kv_heads`` defaults to ``heads``; fewer kv heads is grouped-query attention (query
    head h reads kv head h // (H / Hkv)). ``causal`` is torch's ``is_causal``: a
    top-left-aligned mask (query i sees keys 0..i), also when Nq != Nk. Validates the
    fields; gives the work, the configuration columns and the inputs. An implementation
    adds ``implementation``, ``build`` and its own fields.
    """

    batch: int
    heads: int
    seq_q: int
    seq_k: int
    head_dim: int
    kv_heads: int | None = None
    causal: bool = False
    dtype: str = "fp32"
    cache_mode: str = "warm"
    seed: int = 0
    kernel: str = "attention"

    def __post_init__(self) -> None:
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        _ = self.fused_min_bytes  # validates sizes, heads % kv_heads and the dtype (InvalidInputError)
        if not isinstance(self.causal, bool):
            raise InvalidInputError(f"attention causal must be true or false, got {self.causal!r}")
        check_cache_mode(self.cache_mode)

    @property
    def fused(self) -> bool:
        """Whether the scores stay on chip (a fused, flash-style kernel); ``min_bytes`` counts them otherwise."""
        return True

    @property
    def flops(self) -> int:
        """Forward FLOPs of this configuration."""
        return attention_flops(self.batch, self.heads, self.seq_q, self.seq_k, self.head_dim, self.causal)

    @property
    def min_bytes(self) -> int:
        """Minimum bytes moved (fused or not, as this implementation runs)."""
        return self._min_bytes(fused=self.fused)

    @property
    def fused_min_bytes(self) -> int:
        """Bytes of Q, K, V and O, what a fused kernel moves at least; cold-cache input sets are sized by it."""
        return self._min_bytes(fused=True)

    def _min_bytes(self, fused: bool) -> int:
        return attention_min_bytes(self.batch, self.heads, self.kv_heads, self.seq_q, self.seq_k, self.head_dim,
                                   self.dtype, fused=fused)

    def config_columns(self) -> dict[str, Any]:
        """The configuration columns of this case's profile row."""
        return {"kernel": self.kernel, "implementation": self.implementation, "dtype": self.dtype,
                "cache_mode": self.cache_mode, "batch": self.batch, "heads": self.heads,
                "kv_heads": self.kv_heads, "seq_q": self.seq_q, "seq_k": self.seq_k, "head_dim": self.head_dim,
                "causal": self.causal}

    def memory_need(self, device: Device) -> MemoryNeed:
        """What measuring this shape allocates: (Q, K, V) per input set, O, float32 staging,
        the scores when the kernel is not fused, and the float64 check (one head at a time)."""
        bpe = bytes_per_element(self.dtype)
        assert self.kv_heads is not None  # set in __post_init__
        q = self.batch * self.heads * self.seq_q * self.head_dim
        kv = self.batch * self.kv_heads * self.seq_k * self.head_dim
        # unfused (the math backend): scores, a temporary and their softmax, as measured on a CPU
        scores = 0 if self.fused else 3 * self.batch * self.heads * self.seq_q * self.seq_k * max(bpe, FLOAT32_BYTES)
        rows = min(self.seq_q, 2 * CHECK_EDGE_ROWS)
        return MemoryNeed(operand_bytes=bpe * (q + 2 * kv),
                          input_sets=input_set_count(self.cache_mode, self.fused_min_bytes, device),
                          output_bytes=2 * bpe * q, workspace_bytes=FLOAT32_BYTES * max(q, kv) + scores,
                          host_check_bytes=FLOAT64_BYTES * (2 * self.seq_k * self.head_dim + rows * self.seq_k
                                                            + 2 * rows * self.head_dim))

    def make_inputs(self, device: Device) -> list[tuple[Any, Any, Any]]:
        """Input sets (Q, K, V) on ``device``: one warm, enough to outgrow the cache cold."""
        storage, dev = torch_dtype(dtype_info(self.dtype)), device.torch_device
        q_shape = (self.batch, self.heads, self.seq_q, self.head_dim)
        kv_shape = (self.batch, self.kv_heads, self.seq_k, self.head_dim)
        inputs = []
        for i in range(input_set_count(self.cache_mode, self.fused_min_bytes, device)):
            base = self.seed * 1000 + 3 * i
            inputs.append((seeded_uniform(q_shape, storage, dev, seed=base),
                           seeded_uniform(kv_shape, storage, dev, seed=base + 1),
                           seeded_uniform(kv_shape, storage, dev, seed=base + 2)))
        return inputs


@dataclass(frozen=True, kw_only=True)
class AttentionCase(AttentionShape):
    """Attention through PyTorch's ``scaled_dot_product_attention`` with one forced ``backend``."""

    backend: str = "math"

    implementation = "torch.sdpa"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in BACKENDS:
            raise InvalidInputError(f"unknown attention backend {self.backend!r}: use one of {', '.join(BACKENDS)}")

    @property
    def fused(self) -> bool:
        """Fused for flash, efficient and cuDNN; the math backend materialises the scores."""
        return self.backend in FUSED_BACKENDS

    def config_columns(self) -> dict[str, Any]:
        """The configuration columns, with the SDPA backend."""
        return {**super().config_columns(), "backend": self.backend}

    def build(self, device: Device) -> Workload:
        """Inputs on ``device`` and one probe call under the forced backend, so that a backend
        that refuses this input becomes ``UnsupportedConfigError`` with torch's reason.

        The backend stays forced (``sdpa_kernel`` entered) from here until the workload's
        ``release()``: entering it around each call costs ~25 us on a CPU, more than a small
        attention call, and would be timed with it.
        """
        import torch  # optional, slow to import; only measuring needs it
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        info = dtype_info(self.dtype)
        check_dtype_supported(info, device, "attention")
        if is_tf32(self.dtype) and self.backend != "math":
            raise UnsupportedConfigError(f"tf32 is a matmul setting only the math backend honours; "
                                         f"the {self.backend} backend runs fp32 as fp32")
        member = getattr(SDPBackend, BACKENDS[self.backend], None)
        if member is None:
            raise UnsupportedConfigError(f"torch {torch.__version__} has no SDPA backend {BACKENDS[self.backend]}")
        inputs = self.make_inputs(device)
        sets = len(inputs)
        causal, gqa = self.causal, self.kv_heads < self.heads

        def call(i: int) -> Any:
            q, k, v = inputs[i % sets]
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

        forced = sdpa_kernel(member)
        forced.__enter__()
        matmul = torch.backends.cuda.matmul
        tf32_before = torch_fp32_math("cuda") == "tf32"  # the legacy getter raises after the new API was used
        if device.kind == "cuda":
            matmul.allow_tf32 = is_tf32(self.dtype)  # the math backend's matmuls

        outputs: list[Any] = []  # the probe's result, which is call 0's, for the check

        def release() -> None:
            inputs.clear()
            outputs.clear()
            matmul.allow_tf32 = tf32_before
            forced.__exit__(None, None, None)

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                first = call(0)  # the probe; torch explains a refusal in warnings, then raises
                device.synchronize()
        except (RuntimeError, NotImplementedError) as exc:
            release()
            if type(exc).__name__ == "OutOfMemoryError" or not _is_refusal(exc):
                raise
            said = [one_line(w.message, 200) for w in caught if issubclass(w.category, UserWarning)]
            raise UnsupportedConfigError(one_line(
                f"torch sdpa backend {self.backend} refused this input on {device.kind}: "
                + "; ".join(dict.fromkeys(said + [one_line(exc, 200)])), 500)) from None
        except BaseException:
            release()
            raise
        outputs.append(first)

        def check() -> float:
            out = outputs.pop() if outputs else call(0)
            device.synchronize()
            q, k, v = inputs[0]
            return _normalised_error(q, k, v, out, causal)

        # only the math backend multiplies through torch.matmul; the fused kernels run fp32 as fp32
        fp32_math = torch_fp32_math(device.kind) if self.backend == "math" else "ieee"
        return Workload(kernel=call, check=check, check_tolerance=info.check_tolerance, flops=self.flops,
                        min_bytes=self.min_bytes, input_sets=sets, release=release, fp32_math=fp32_math)


def _is_refusal(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, NotImplementedError) or any(pattern in text for pattern in _REFUSALS)


def _normalised_error(q: Any, k: Any, v: Any, out: Any, causal: bool) -> float:
    """max |out - ref| / max |V| over the first batch item's first and last query rows.

    The reference is the formula in float64 on the CPU. Each output row is a convex
    combination of V's rows, so dividing by max |V| gives an error independent of the
    sequence length and head dim (unlike GEMM's sqrt(k) normalisation); the dtype's
    tolerance then applies as it is.
    """
    import torch  # optional, slow to import; only measuring needs it

    seq_q, seq_k, head_dim = q.shape[-2], k.shape[-2], q.shape[-1]
    rows = sorted(set(range(min(CHECK_EDGE_ROWS, seq_q))) | set(range(max(0, seq_q - CHECK_EDGE_ROWS), seq_q)))
    index = torch.tensor(rows)
    q_index, out_index = index.to(q.device), index.to(out.device)
    group = q.shape[1] // k.shape[1]
    keys = torch.arange(seq_k)
    worst = 0.0
    for h in range(q.shape[1]):  # one head at a time keeps the float64 scores small
        qh = q[0, h].index_select(0, q_index).double().cpu()
        kh = k[0, h // group].double().cpu()
        vh = v[0, h // group].double().cpu()
        scores = qh @ kh.T / math.sqrt(head_dim)
        if causal:  # top-left aligned: query i sees keys 0..i
            scores = scores.masked_fill(keys[None, :] > index[:, None], float("-inf"))
        ref = scores.softmax(-1) @ vh
        got = out[0, h].index_select(0, out_index).double().cpu()
        scale = float(vh.abs().max()) or 1.0
        worst = max(worst, float((got - ref).abs().max()) / scale)
    return worst


# the grid keys of the fields every attention implementation shares (AttentionShape)
ATTENTION_SHAPE_AXES = ("batch", "heads", "kv_heads", "seq_q", "seq_k", "seq", "head_dim", "causal", "dtype", "cache")
ATTENTION_SHAPE_DEFAULTS = {"batch": [1], "causal": [False], "dtype": ["fp32"], "cache": ["warm"]}
# the order of the keys is the order in which the grid varies, slowest first
_ATTENTION_AXES = ("batch", "heads", "kv_heads", "seq_q", "seq_k", "seq", "head_dim", "causal", "backend", "dtype",
                   "cache")
_ATTENTION_DEFAULTS = {"batch": [1], "causal": [False], "backend": list(BACKENDS), "dtype": ["fp32"],
                       "cache": ["warm"]}


def attention_shape_fields(point: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AttentionShape`` fields (all but the seed) of one point of an attention grid
    (``expand_axes`` with ``ATTENTION_SHAPE_DEFAULTS``): seq sets seq_q and seq_k unless they
    are given; a missing size is a ``InvalidInputError``."""
    seq_q, seq_k = point.get("seq_q", point.get("seq")), point.get("seq_k", point.get("seq"))
    missing = [name for name, value in (("heads", point.get("heads")), ("head_dim", point.get("head_dim")),
                                        ("seq_q (or seq)", seq_q), ("seq_k (or seq)", seq_k)) if value is None]
    if missing:
        raise InvalidInputError(f"attention grid needs {', '.join(missing)} (as axes or in every shape)")
    return {"batch": point["batch"], "heads": point["heads"], "kv_heads": point.get("kv_heads"), "seq_q": seq_q,
            "seq_k": seq_k, "head_dim": point["head_dim"], "causal": point["causal"], "dtype": point["dtype"],
            "cache_mode": point["cache"]}


def cases_from_axes(axes: Mapping[str, Any], *, seed: int = 0) -> list[AttentionCase]:
    """Attention cases: the cartesian product of ``axes``.

    Keys: batch, heads, kv_heads, seq_q, seq_k, seq (sets both; seq_q and seq_k win over
    it), head_dim, causal, backend (math, flash, efficient, cudnn), dtype, cache; and
    ``shapes``, a list of dicts of fixed fields (those keys) that the other axes multiply.
    heads, head_dim and the sequence lengths are required; the defaults are batch 1,
    kv_heads = heads, causal false, every backend (those that refuse become unsupported
    rows saying why), dtype fp32, cache warm.
    """
    cases = []
    for point in expand_axes("attention", axes, axis_keys=_ATTENTION_AXES, shape_keys=_ATTENTION_AXES,
                             defaults=_ATTENTION_DEFAULTS):
        fields = attention_shape_fields(point)
        try:
            case = AttentionCase(**fields, backend=point["backend"], seed=seed)
        except InvalidInputError as exc:
            raise InvalidInputError(f"attention grid point {describe_point(point)}: {exc}") from None
        cases.append(case)
    return list(dict.fromkeys(cases))
