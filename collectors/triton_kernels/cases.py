"""Sweep cases for the Triton kernels: one configuration = one shape x one tile setting.

Timed on CUDA GPUs only (on any other device a case is an ``unsupported`` row). ``build``
launches the kernel once, so a tile that does not fit the GPU (shared memory, registers)
or does not compile becomes an ``unsupported`` row with the reason in one line, and the
sweep goes on. Importing this module imports neither torch nor triton.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from perfscope.collectors.attention import _normalised_error
from perfscope.collectors.conv import check_dtype_supported, expand_axes
from perfscope.collectors.gemm import cases_from_axes as gemm_grid
from perfscope.collectors.inputs import input_set_count, seeded_uniform, torch_dtype
from perfscope.collectors.protocol import Workload
from perfscope.collectors.triton_kernels import ATTENTION_HEAD_DIMS, check_block, check_launch
from perfscope.devices.base import Device
from perfscope.dtypes import dtype_info
from perfscope.errors import UnsupportedConfigError, UserInputError
from perfscope.features import (
    attention_flops, attention_min_bytes, conv2d_flops, conv2d_min_bytes, conv2d_output_hw, gemm_flops,
    gemm_min_bytes,
)

CPU_REASON = ("Triton kernels are timed on CUDA GPUs only; correctness is tested on the CPU "
              "under TRITON_INTERPRET=1")
DTYPES = ("fp32", "tf32", "fp16", "bf16")
CHECK_ROWS = 64  # GEMM rows compared with the float64 reference
CHECK_FILTERS = 64  # conv output channels (of the first image) compared with the reference
TILE_AXES = ("tile_m", "tile_n", "tile_k", "group_m", "num_warps", "num_stages")
ATTENTION_TILE_AXES = ("tile_m", "tile_n", "num_warps", "num_stages")
DEFAULT_TILES: dict[str, dict[str, list[int]]] = {
    "gemm": {"tile_m": [128], "tile_n": [128], "tile_k": [32], "group_m": [8], "num_warps": [4], "num_stages": [3]},
    "conv": {"tile_m": [128], "tile_n": [64], "tile_k": [32], "group_m": [8], "num_warps": [4], "num_stages": [3]},
    "attention": {"tile_m": [64], "tile_n": [64], "num_warps": [4], "num_stages": [2]},
}


def _check_common(dtype: str, cache_mode: str, num_warps: int, num_stages: int, group_m: int | None) -> None:
    dtype_info(dtype)
    if dtype not in DTYPES:
        raise UserInputError(f"the Triton kernels run {', '.join(DTYPES)}; got {dtype!r}")
    if cache_mode not in ("warm", "cold"):
        raise UserInputError(f"cache mode must be warm or cold, got {cache_mode!r}")
    check_launch(num_warps, num_stages, group_m)


def _tile_columns(tile_m: int, tile_n: int, tile_k: int | None, group_m: int | None, num_warps: int,
                  num_stages: int) -> dict[str, Any]:
    return {"tile_m": tile_m, "tile_n": tile_n, "tile_k": tile_k, "tile_group_m": group_m,
            "tile_num_warps": num_warps, "tile_num_stages": num_stages}


def _tile_text(tile_m: int, tile_n: int, tile_k: int | None, group_m: int | None, num_warps: int,
               num_stages: int) -> str:
    blocks = "x".join(str(v) for v in (tile_m, tile_n, tile_k) if v is not None)
    group = f" group_m={group_m}" if group_m is not None else ""
    return f"{blocks}{group} num_warps={num_warps} num_stages={num_stages}"


@dataclass(frozen=True, kw_only=True)
class TritonGemmCase:
    """C = A @ B, A (m x k), B (k x n), row-major, through ``triton_matmul`` with explicit tiles."""

    m: int
    n: int
    k: int
    dtype: str
    tile_m: int
    tile_n: int
    tile_k: int
    group_m: int
    num_warps: int
    num_stages: int
    batch: int = 1
    cache_mode: str = "warm"
    seed: int = 0
    kernel: str = "gemm"

    implementation = "triton.matmul"

    def __post_init__(self) -> None:
        for name in ("m", "n", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"gemm {name} must be a positive integer, got {value!r}")
        if self.batch != 1:
            raise UserInputError(f"the Triton GEMM multiplies one pair of matrices: batch must be 1, "
                                 f"got {self.batch!r}")
        for name in ("tile_m", "tile_n", "tile_k"):
            check_block(name, getattr(self, name))
        _check_common(self.dtype, self.cache_mode, self.num_warps, self.num_stages, self.group_m)

    @property
    def tiles(self) -> str:
        return _tile_text(self.tile_m, self.tile_n, self.tile_k, self.group_m, self.num_warps, self.num_stages)

    def config_columns(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "implementation": self.implementation, "dtype": self.dtype,
                "cache_mode": self.cache_mode, "batch": self.batch, "m": self.m, "n": self.n, "k": self.k,
                **_tile_columns(self.tile_m, self.tile_n, self.tile_k, self.group_m, self.num_warps,
                                self.num_stages)}

    def build(self, device: Device) -> Workload:
        """Inputs on the GPU, one launch (tile failures -> ``UnsupportedConfigError``)."""
        _require_cuda(device, self.dtype)
        import torch

        from perfscope.collectors.triton_kernels.gemm import prepare_matmul

        info = dtype_info(self.dtype)
        storage = torch_dtype(info)
        m, n, k = self.m, self.n, self.k
        min_bytes = gemm_min_bytes(1, m, n, k, self.dtype)
        sets = input_set_count(self.cache_mode, min_bytes, device)
        dev = device.torch_device
        inputs = []
        for s in range(sets):
            a = seeded_uniform((m, k), storage, dev, seed=self.seed * 1000 + 2 * s)
            b = seeded_uniform((k, n), storage, dev, seed=self.seed * 1000 + 2 * s + 1)
            inputs.append((a, b, torch.empty((m, n), dtype=storage, device=dev)))
        options = {"block_m": self.tile_m, "block_n": self.tile_n, "block_k": self.tile_k, "group_m": self.group_m,
                   "num_warps": self.num_warps, "num_stages": self.num_stages,
                   "input_precision": "tf32" if self.dtype == "tf32" else "ieee"}
        launchers = [prepare_matmul(a, b, out=c, **options) for a, b, c in inputs]

        def call(i: int) -> None:
            launchers[i % sets]()

        def check() -> float:
            a, b, c = inputs[0]
            call(0)
            device.synchronize()
            rows = min(m, CHECK_ROWS)
            ref = a[:rows].double().cpu() @ b.double().cpu()
            return float((c[:rows].double().cpu() - ref).abs().max()) / math.sqrt(k)

        release = _clearer(inputs, launchers)
        launch_once(call, device, self.tiles, release)
        return Workload(kernel=call, check=check, check_tolerance=info.check_tolerance,
                        flops=gemm_flops(1, m, n, k), min_bytes=min_bytes, input_sets=sets, release=release)


@dataclass(frozen=True, kw_only=True)
class TritonAttentionCase:
    """Fused attention forward (``triton_attention_fwd``): Q (B, H, Nq, d), K and V (B, Hkv, Nk, d).

    Causal masking is top-left aligned, as torch's ``is_causal``. The check is the torch
    attention collector's: max |out - ref| / max |V| over the first batch item's first and
    last query rows, every head, against float64 on the CPU.
    """

    batch: int
    heads: int
    seq_q: int
    seq_k: int
    head_dim: int
    dtype: str
    tile_m: int
    tile_n: int
    num_warps: int
    num_stages: int
    kv_heads: int | None = None
    causal: bool = False
    cache_mode: str = "warm"
    seed: int = 0
    kernel: str = "attention"

    implementation = "triton.flash_fwd"

    def __post_init__(self) -> None:
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        # validates the sizes and heads % kv_heads (UserInputError)
        attention_min_bytes(self.batch, self.heads, self.kv_heads, self.seq_q, self.seq_k, self.head_dim, self.dtype)
        if not isinstance(self.causal, bool):
            raise UserInputError(f"attention causal must be true or false, got {self.causal!r}")
        check_block("tile_m", self.tile_m)
        check_block("tile_n", self.tile_n)
        _check_common(self.dtype, self.cache_mode, self.num_warps, self.num_stages, None)

    @property
    def tiles(self) -> str:
        return _tile_text(self.tile_m, self.tile_n, None, None, self.num_warps, self.num_stages)

    def config_columns(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "implementation": self.implementation, "dtype": self.dtype,
                "cache_mode": self.cache_mode, "batch": self.batch, "heads": self.heads,
                "kv_heads": self.kv_heads, "seq_q": self.seq_q, "seq_k": self.seq_k, "head_dim": self.head_dim,
                "causal": self.causal,
                **_tile_columns(self.tile_m, self.tile_n, None, None, self.num_warps, self.num_stages)}

    def build(self, device: Device) -> Workload:
        """Inputs on the GPU, one launch (tile failures -> ``UnsupportedConfigError``)."""
        if self.head_dim not in ATTENTION_HEAD_DIMS:
            raise UnsupportedConfigError(f"the Triton attention kernel takes head_dim "
                                         f"{', '.join(map(str, ATTENTION_HEAD_DIMS))}; got {self.head_dim}")
        _require_cuda(device, self.dtype)
        from perfscope.collectors.triton_kernels.attention import prepare_attention_fwd

        info = dtype_info(self.dtype)
        storage = torch_dtype(info)
        min_bytes = attention_min_bytes(self.batch, self.heads, self.kv_heads, self.seq_q, self.seq_k,
                                        self.head_dim, self.dtype, fused=True)
        sets = input_set_count(self.cache_mode, min_bytes, device)
        dev = device.torch_device
        q_shape = (self.batch, self.heads, self.seq_q, self.head_dim)
        kv_shape = (self.batch, self.kv_heads, self.seq_k, self.head_dim)
        inputs = []
        for i in range(sets):
            base = self.seed * 1000 + 3 * i
            q = seeded_uniform(q_shape, storage, dev, seed=base)
            inputs.append((q, seeded_uniform(kv_shape, storage, dev, seed=base + 1),
                           seeded_uniform(kv_shape, storage, dev, seed=base + 2), q.new_empty(q_shape)))
        options = {"causal": self.causal, "block_m": self.tile_m, "block_n": self.tile_n,
                   "num_warps": self.num_warps, "num_stages": self.num_stages,
                   "input_precision": "tf32" if self.dtype == "tf32" else "ieee"}
        launchers = [prepare_attention_fwd(q, k, v, out=o, **options) for q, k, v, o in inputs]

        def call(i: int) -> None:
            launchers[i % sets]()

        def check() -> float:
            q, k, v, o = inputs[0]
            call(0)
            device.synchronize()
            return _normalised_error(q, k, v, o, self.causal)

        release = _clearer(inputs, launchers)
        launch_once(call, device, self.tiles, release)
        flops = attention_flops(self.batch, self.heads, self.seq_q, self.seq_k, self.head_dim, self.causal)
        return Workload(kernel=call, check=check, check_tolerance=info.check_tolerance, flops=flops,
                        min_bytes=min_bytes, input_sets=sets, release=release)


@dataclass(frozen=True, kw_only=True)
class TritonConvCase:
    """conv2d forward as an implicit GEMM (``triton_conv2d``): x (N, C, H, W), w (K, C, R, S).

    ``layout`` is the memory format of input and output: nchw or channels_last (NHWC).
    The kernel has no groups: ``groups`` other than 1 is an ``unsupported`` row. The check
    is the torch conv collector's: the first image and first 64 filters against float64,
    max error over sqrt(C*R*S).
    """

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    dtype: str
    tile_m: int
    tile_n: int
    tile_k: int
    group_m: int
    num_warps: int
    num_stages: int
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dil_h: int = 1
    dil_w: int = 1
    groups: int = 1
    layout: str = "nchw"
    cache_mode: str = "warm"
    seed: int = 0
    kernel: str = "conv"

    implementation = "triton.implicit_gemm"

    def __post_init__(self) -> None:
        conv2d_flops(self.n, self.c, self.h, self.w, self.k, self.r, self.s, *self._geometry, self.groups)
        if self.layout not in ("nchw", "channels_last"):
            raise UserInputError(f"conv layout must be nchw or channels_last, got {self.layout!r}")
        for name in ("tile_m", "tile_n", "tile_k"):
            check_block(name, getattr(self, name))
        _check_common(self.dtype, self.cache_mode, self.num_warps, self.num_stages, self.group_m)

    @property
    def _geometry(self) -> tuple[int, int, int, int, int, int]:
        return self.stride_h, self.stride_w, self.pad_h, self.pad_w, self.dil_h, self.dil_w

    @property
    def tiles(self) -> str:
        return _tile_text(self.tile_m, self.tile_n, self.tile_k, self.group_m, self.num_warps, self.num_stages)

    def config_columns(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "implementation": self.implementation, "dtype": self.dtype,
                "cache_mode": self.cache_mode, "batch": self.n,
                "conv_n": self.n, "conv_c": self.c, "conv_h": self.h, "conv_w": self.w,
                "conv_k": self.k, "conv_r": self.r, "conv_s": self.s,
                "stride_h": self.stride_h, "stride_w": self.stride_w, "pad_h": self.pad_h, "pad_w": self.pad_w,
                "dil_h": self.dil_h, "dil_w": self.dil_w, "groups": self.groups, "layout": self.layout,
                **_tile_columns(self.tile_m, self.tile_n, self.tile_k, self.group_m, self.num_warps,
                                self.num_stages)}

    def build(self, device: Device) -> Workload:
        """Inputs on the GPU, one launch (tile failures -> ``UnsupportedConfigError``)."""
        if self.groups != 1:
            raise UnsupportedConfigError(f"the Triton implicit-GEMM conv has no groups (groups = 1 only); "
                                         f"got groups = {self.groups}")
        _require_cuda(device, self.dtype)
        import torch
        import torch.nn.functional as F

        from perfscope.collectors.triton_kernels.conv import prepare_conv2d

        info = dtype_info(self.dtype)
        storage = torch_dtype(info)
        fmt = torch.channels_last if self.layout == "channels_last" else torch.contiguous_format
        min_bytes = conv2d_min_bytes(self.n, self.c, self.h, self.w, self.k, self.r, self.s, *self._geometry,
                                     dtype=self.dtype)
        sets = input_set_count(self.cache_mode, min_bytes, device)
        dev = device.torch_device
        out_shape = (self.n, self.k, *conv2d_output_hw(self.h, self.w, self.r, self.s, *self._geometry))
        inputs = []
        for i in range(sets):
            x = seeded_uniform((self.n, self.c, self.h, self.w), storage, dev, seed=self.seed * 1000 + 2 * i)
            wt = seeded_uniform((self.k, self.c, self.r, self.s), storage, dev, seed=self.seed * 1000 + 2 * i + 1)
            out = torch.empty(out_shape, dtype=storage, device=dev, memory_format=fmt)
            inputs.append((x.contiguous(memory_format=fmt), wt.contiguous(memory_format=fmt), out))
        geometry = {"stride": (self.stride_h, self.stride_w), "padding": (self.pad_h, self.pad_w),
                    "dilation": (self.dil_h, self.dil_w)}
        options = {**geometry, "block_m": self.tile_m, "block_n": self.tile_n, "block_k": self.tile_k,
                   "group_m": self.group_m, "num_warps": self.num_warps, "num_stages": self.num_stages,
                   "input_precision": "tf32" if self.dtype == "tf32" else "ieee"}
        launchers = [prepare_conv2d(x, wt, out=out, **options) for x, wt, out in inputs]

        def call(i: int) -> None:
            launchers[i % sets]()

        def check() -> float:
            x, wt, out = inputs[0]
            call(0)
            device.synchronize()
            filters = min(self.k, CHECK_FILTERS)
            ref = F.conv2d(x[:1].double().cpu(), wt[:filters].double().cpu(), **geometry)
            got = out[:1, :filters].double().cpu()
            return float((got - ref).abs().max()) / math.sqrt(self.c * self.r * self.s)

        release = _clearer(inputs, launchers)
        launch_once(call, device, self.tiles, release)
        flops = conv2d_flops(self.n, self.c, self.h, self.w, self.k, self.r, self.s, *self._geometry)
        return Workload(kernel=call, check=check, check_tolerance=info.check_tolerance, flops=flops,
                        min_bytes=min_bytes, input_sets=sets, release=release)


# ---------------------------------------------------------------- building helpers

def _require_cuda(device: Device, dtype: str) -> None:
    if device.kind != "cuda":
        raise UnsupportedConfigError(CPU_REASON)
    check_dtype_supported(dtype_info(dtype), device, "Triton kernel")  # tf32 needs compute capability 8.0


def _clearer(*lists: list[Any]) -> Callable[[], None]:
    """A workload's ``release``: drop the inputs and the launchers that hold them."""

    def clear() -> None:
        for items in lists:
            items.clear()

    return clear


def launch_once(call: Callable[[int], None], device: Device, tiles: str, release: Callable[[], None]) -> None:
    """Launch once (compiling the kernel); a tile that cannot run becomes ``UnsupportedConfigError``."""
    try:
        call(0)
        device.synchronize()
    except Exception as exc:
        release()
        reason = tile_failure_reason(exc, tiles)
        if reason is None:
            raise
        raise UnsupportedConfigError(reason) from exc


def tile_failure_reason(exc: BaseException, tiles: str) -> str | None:
    """One line saying why tile setting ``tiles`` cannot run, when ``exc`` means that.

    Triton's ``OutOfResources`` (shared memory; "threads" when the registers a thread
    needs leave room for fewer threads than ``num_warps`` asks), ``PTXASError`` and
    compilation errors, and CUDA refusing the launch for lack of resources; None for
    anything else (a real error, or out of memory, which the protocol records itself).
    """
    try:
        from triton.compiler.errors import CompilationError
        from triton.runtime.errors import OutOfResources, PTXASError
    except ImportError:
        return None
    if isinstance(exc, OutOfResources):
        if exc.name == "shared memory":
            text = f"needs {exc.required} bytes of shared memory per block, the GPU allows {exc.limit}"
        elif exc.name == "threads":
            text = (f"its register use allows at most {exc.limit} threads per block, "
                    f"num_warps asks for {exc.required}")
        else:
            text = f"out of {exc.name}: needs {exc.required}, the limit is {exc.limit}"
        reason = f"tile {tiles} does not fit: {text}"
    elif isinstance(exc, PTXASError):
        reason = f"ptxas rejected tile {tiles}: {_first_line(exc.error_message or str(exc))}"
    elif isinstance(exc, CompilationError):
        reason = f"Triton cannot compile tile {tiles}: {_first_line(exc.error_message or str(exc))}"
    elif isinstance(exc, RuntimeError) and "Triton Error [CUDA]" in str(exc) and "resources" in str(exc):
        reason = f"CUDA refused to launch tile {tiles}: {_first_line(str(exc))}"
    else:
        return None
    return reason if len(reason) <= 400 else reason[:397] + "..."


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


# ---------------------------------------------------------------- grids

_GEMM_SHAPE_AXES = ("sizes", "shapes", "m", "n", "k", "batch", "dtype", "cache")
_CONV_AXES = ("n", "c", "h", "w", "k", "r", "s", "stride", "pad", "dil", "groups", "layout", "dtype", "cache")
_CONV_SHAPE_KEYS = _CONV_AXES + ("stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w")
_CONV_DEFAULTS = {"stride": [1], "pad": [0], "dil": [1], "groups": [1], "layout": ["nchw"], "dtype": ["fp32"],
                  "cache": ["warm"]}
_ATTENTION_AXES = ("batch", "heads", "kv_heads", "seq_q", "seq_k", "seq", "head_dim", "causal", "dtype", "cache")
_ATTENTION_DEFAULTS = {"batch": [1], "causal": [False], "dtype": ["fp32"], "cache": ["warm"]}


def cases_from_axes(kernel: str, axes: Mapping[str, Any], *, seed: int = 0) -> list[Any]:
    """Triton cases of one kernel family: the shape grid times the tile grid.

    Shape axes are those of the torch collector of the family (gemm: sizes, shapes, m, n,
    k, batch (1 only), dtype, cache; conv: n, c, h, w, k, r, s, stride, pad, dil, groups,
    layout, dtype, cache and ``shapes``; attention: batch, heads, kv_heads, seq_q, seq_k,
    seq, head_dim, causal, dtype, cache and ``shapes``), with the same defaults.
    Tile axes: tile_m, tile_n, tile_k, group_m, num_warps, num_stages (attention has no
    tile_k or group_m); a missing tile axis takes ``DEFAULT_TILES[kernel]``. A tile
    setting that can never compile (a block that is not a power of two or below 16,
    num_warps not a power of two up to 32) is a ``UserInputError`` here; one that does not
    fit a particular GPU is an ``unsupported`` row when measured.
    """
    if kernel not in DEFAULT_TILES:
        raise UserInputError(f"no Triton kernel for {kernel!r}: use {', '.join(DEFAULT_TILES)}")
    if not isinstance(axes, Mapping):
        raise UserInputError(f"a {kernel} grid is a mapping of axis names to value lists, got {type(axes).__name__}")
    tile_axes = ATTENTION_TILE_AXES if kernel == "attention" else TILE_AXES
    tiles = _tile_grid(kernel, {k: v for k, v in axes.items() if k in tile_axes}, tile_axes)
    shape_axes = {k: v for k, v in axes.items() if k not in tile_axes}
    try:
        if kernel == "gemm":
            cases = _gemm_cases(shape_axes, tiles, seed)
        elif kernel == "conv":
            cases = _conv_cases(shape_axes, tiles, seed)
        else:
            cases = _attention_cases(shape_axes, tiles, seed)
    except UserInputError as exc:
        raise UserInputError(f"triton {kernel} grid: {exc}") from None
    return list(dict.fromkeys(cases))


def _tile_grid(kernel: str, axes: Mapping[str, Any], names: tuple[str, ...]) -> list[dict[str, int]]:
    lists = {}
    for name in names:
        values = axes.get(name, DEFAULT_TILES[kernel][name])
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise UserInputError(f"triton {kernel} grid axis {name!r} is empty")
        for value in values:
            if name in ("tile_m", "tile_n", "tile_k"):
                check_block(name, value)
        lists[name] = values
    combos = [dict(zip(lists, combo)) for combo in itertools.product(*lists.values())]
    for combo in combos:
        check_launch(combo["num_warps"], combo["num_stages"], combo.get("group_m"))
    return combos


def _gemm_cases(axes: Mapping[str, Any], tiles: list[dict[str, int]], seed: int) -> list[TritonGemmCase]:
    unknown = sorted(set(axes) - set(_GEMM_SHAPE_AXES))
    if unknown:
        raise UserInputError(f"unknown gemm axes {unknown}: use {', '.join(_GEMM_SHAPE_AXES + TILE_AXES)}")
    return [TritonGemmCase(batch=g.batch, m=g.m, n=g.n, k=g.k, dtype=g.dtype, cache_mode=g.cache_mode, seed=seed,
                           **tile)
            for g in gemm_grid(dict(axes), seed=seed) for tile in tiles]


def _conv_cases(axes: Mapping[str, Any], tiles: list[dict[str, int]], seed: int) -> list[TritonConvCase]:
    cases = []
    for point in expand_axes("conv", axes, axis_keys=_CONV_AXES, shape_keys=_CONV_SHAPE_KEYS,
                             defaults=_CONV_DEFAULTS):
        missing = [key for key in ("n", "c", "h", "w", "k", "r", "s") if key not in point]
        if missing:
            raise UserInputError(f"conv grid needs {', '.join(missing)} (as axes or in every shape)")
        fields = {key: point[key] for key in ("n", "c", "h", "w", "k", "r", "s", "groups", "layout", "dtype")}
        for name in ("stride", "pad", "dil"):
            fields[f"{name}_h"] = point.get(f"{name}_h", point[name])
            fields[f"{name}_w"] = point.get(f"{name}_w", point[name])
        cases += [TritonConvCase(**fields, cache_mode=point["cache"], seed=seed, **tile) for tile in tiles]
    return cases


def _attention_cases(axes: Mapping[str, Any], tiles: list[dict[str, int]], seed: int) -> list[TritonAttentionCase]:
    cases = []
    for point in expand_axes("attention", axes, axis_keys=_ATTENTION_AXES, shape_keys=_ATTENTION_AXES,
                             defaults=_ATTENTION_DEFAULTS):
        seq_q, seq_k = point.get("seq_q", point.get("seq")), point.get("seq_k", point.get("seq"))
        missing = [name for name, value in (("heads", point.get("heads")), ("head_dim", point.get("head_dim")),
                                            ("seq_q (or seq)", seq_q), ("seq_k (or seq)", seq_k)) if value is None]
        if missing:
            raise UserInputError(f"attention grid needs {', '.join(missing)} (as axes or in every shape)")
        cases += [TritonAttentionCase(batch=point["batch"], heads=point["heads"], kv_heads=point.get("kv_heads"),
                                      seq_q=seq_q, seq_k=seq_k, head_dim=point["head_dim"], causal=point["causal"],
                                      dtype=point["dtype"], cache_mode=point["cache"], seed=seed, **tile)
                  for tile in tiles]
    return cases

