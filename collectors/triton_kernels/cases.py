"""Sweep cases for the Triton kernels: one configuration = one shape x one tile setting.

Timed on CUDA GPUs only (on any other device a case is an ``unsupported`` row). ``build``
launches the kernel once, so a tile that does not fit the GPU (shared memory, registers)
or does not compile becomes an ``unsupported`` row with the reason in one line, and the
sweep goes on. Importing this module imports neither torch nor triton.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from perfscope.collectors.attention import (
    ATTENTION_SHAPE_AXES,
    ATTENTION_SHAPE_DEFAULTS,
    AttentionShape,
    _normalised_error,
    attention_shape_fields,
)
from perfscope.collectors.conv import (
    CONV_SHAPE_AXES,
    CONV_SHAPE_DEFAULTS,
    PER_DIMENSION_KEYS,
    ConvShape,
    check_dtype_supported,
    conv_shape_fields,
    expand_axes,
)
from perfscope.collectors.gemm import GemmShape
from perfscope.collectors.gemm import cases_from_axes as gemm_grid
from perfscope.collectors.protocol import Workload
from perfscope.collectors.triton_kernels import ATTENTION_HEAD_DIMS, check_block, check_launch
from perfscope.devices.base import Device
from perfscope.dtypes import check_tolerance, dtype_info, is_tf32
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.features import gemm_min_bytes

CPU_REASON = ("Triton kernels are timed on CUDA GPUs only; correctness is tested on the CPU "
              "under TRITON_INTERPRET=1")
DTYPES = ("fp32", "tf32", "fp16", "bf16")
TILE_AXES = ("tile_m", "tile_n", "tile_k", "group_m", "num_warps", "num_stages")
ATTENTION_TILE_AXES = ("tile_m", "tile_n", "num_warps", "num_stages")
DEFAULT_TILES: dict[str, dict[str, list[int]]] = {
    "gemm": {"tile_m": [128], "tile_n": [128], "tile_k": [32], "group_m": [8], "num_warps": [4], "num_stages": [3]},
    "conv": {"tile_m": [128], "tile_n": [64], "tile_k": [32], "group_m": [8], "num_warps": [4], "num_stages": [3]},
    "attention": {"tile_m": [64], "tile_n": [64], "num_warps": [4], "num_stages": [2]},
}


def _tile_columns(tile_m: int, tile_n: int, tile_k: int | None, group_m: int | None, num_warps: int,
                  num_stages: int) -> dict[str, Any]:
    return {"tile_m": tile_m, "tile_n": tile_n, "tile_k": tile_k, "tile_group_m": group_m,
            "tile_num_warps": num_warps, "tile_num_stages": num_stages}


def _tile_text(tile_m: int, tile_n: int, tile_k: int | None, group_m: int | None, num_warps: int,
               num_stages: int) -> str:
    blocks = "x".join(str(v) for v in (tile_m, tile_n, tile_k) if v is not None)
    group = f" group_m={group_m}" if group_m is not None else ""
    return f"{blocks}{group} num_warps={num_warps} num_stages={num_stages}"


class _Tiled:
    """What a tile setting adds to a family's shape case (``GemmShape``, ``ConvShape``,
    ``AttentionShape``, the next base in the MRO): validation, configuration columns and a
    one-line description. The case has the fields tile_m, tile_n, num_warps, num_stages,
    and tile_k and group_m where its kernel has a K loop (``_KLoopTiles``)."""

    tile_m: int
    tile_n: int
    num_warps: int
    num_stages: int
    dtype: str

    def __post_init__(self) -> None:
        super().__post_init__()  # the shape's checks
        if self.dtype not in DTYPES:
            raise InvalidInputError(f"the Triton kernels run {', '.join(DTYPES)}; got {self.dtype!r}")
        names = {f.name for f in dataclasses.fields(self)}
        for name in ("tile_m", "tile_n", "tile_k"):
            if name in names:
                check_block(name, getattr(self, name))
        check_launch(self.num_warps, self.num_stages, getattr(self, "group_m", None))

    def _tile_values(self) -> tuple[int, int, int | None, int | None, int, int]:
        return (self.tile_m, self.tile_n, getattr(self, "tile_k", None), getattr(self, "group_m", None),
                self.num_warps, self.num_stages)

    @property
    def tiles(self) -> str:
        return _tile_text(*self._tile_values())

    def config_columns(self) -> dict[str, Any]:
        return {**super().config_columns(), **_tile_columns(*self._tile_values())}

    @property
    def input_precision(self) -> str:
        """How ``tl.dot`` multiplies: tf32 on tensor cores for the tf32 dtype, else exactly."""
        return "tf32" if is_tf32(self.dtype) else "ieee"

    def _workload(self, device: Device, launchers: list[Callable[[], Any]], inputs: list[tuple[Any, ...]],
                  error: Callable[..., float]) -> Workload:
        """The workload of ``launchers``, one per input set, launched once here: call i runs
        launcher i % sets; the check runs call 0 and returns ``error(*inputs[0])``, whose
        last item is the output."""
        sets = len(launchers)

        def call(i: int) -> None:
            launchers[i % sets]()

        def check() -> float:
            call(0)
            device.synchronize()
            return error(*inputs[0])

        release = _clearer(inputs, launchers)
        launch_once(call, device, self.tiles, release)
        return Workload(kernel=call, check=check, check_tolerance=check_tolerance(self.dtype),
                        flops=self.flops, min_bytes=self.min_bytes, input_sets=sets, release=release,
                        fp32_math=self.input_precision)


@dataclass(frozen=True, kw_only=True)
class _KLoopTiles(_Tiled):
    """The tile fields of the kernels with a K loop and grouped tile order (GEMM, implicit-GEMM conv)."""

    tile_m: int
    tile_n: int
    tile_k: int
    group_m: int
    num_warps: int
    num_stages: int


@dataclass(frozen=True, kw_only=True)
class TritonGemmCase(_KLoopTiles, GemmShape):
    """C = A @ B, A (m x k), B (k x n), row-major, through ``triton_matmul`` with explicit tiles."""

    batch: int = 1

    implementation = "triton.matmul"

    @property
    def min_bytes(self) -> int:
        """Minimum bytes moved by this GEMM."""
        return gemm_min_bytes(1, self.m, self.n, self.k, self.dtype)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch != 1:
            raise InvalidInputError(f"the Triton GEMM multiplies one pair of matrices: batch must be 1, "
                                 f"got {self.batch!r}")

    def build(self, device: Device) -> Workload:
        """Inputs on the GPU, one launch (tile failures -> ``UnsupportedConfigError``)."""
        _require_cuda(device, self.dtype)
        # defines Triton kernels at import (loads triton, torch)
        from perfscope.collectors.triton_kernels.gemm import prepare_matmul

        inputs = self.make_inputs(device)
        options = {"block_m": self.tile_m, "block_n": self.tile_n, "block_k": self.tile_k, "group_m": self.group_m,
                   "num_warps": self.num_warps, "num_stages": self.num_stages,
                   "input_precision": self.input_precision}
        launchers = [prepare_matmul(a, b, out=c, **options) for a, b, c in inputs]
        return self._workload(device, launchers, inputs, self.normalised_error)


@dataclass(frozen=True, kw_only=True)
class TritonAttentionCase(_Tiled, AttentionShape):
    """Fused attention forward (``triton_attention_fwd``): Q (B, H, Nq, d), K and V (B, Hkv, Nk, d).

    Causal masking is top-left aligned, as torch's ``is_causal``. The check is the torch
    attention collector's: max |out - ref| / max |V| over the first batch item's first and
    last query rows, every head, against float64 on the CPU.
    """

    tile_m: int
    tile_n: int
    num_warps: int
    num_stages: int

    implementation = "triton.flash_fwd"

    def build(self, device: Device) -> Workload:
        """Inputs on the GPU, one launch (tile failures -> ``UnsupportedConfigError``)."""
        if self.head_dim not in ATTENTION_HEAD_DIMS:
            raise UnsupportedConfigError(f"the Triton attention kernel takes head_dim "
                                         f"{', '.join(map(str, ATTENTION_HEAD_DIMS))}; got {self.head_dim}")
        _require_cuda(device, self.dtype)
        # defines Triton kernels at import (loads triton, torch)
        from perfscope.collectors.triton_kernels.attention import prepare_attention_fwd

        inputs = [(q, k, v, q.new_empty(q.shape)) for q, k, v in self.make_inputs(device)]
        options = {"causal": self.causal, "block_m": self.tile_m, "block_n": self.tile_n,
                   "num_warps": self.num_warps, "num_stages": self.num_stages,
                   "input_precision": self.input_precision}
        launchers = [prepare_attention_fwd(q, k, v, out=o, **options) for q, k, v, o in inputs]
        return self._workload(device, launchers, inputs, lambda q, k, v, o: _normalised_error(q, k, v, o, self.causal))


@dataclass(frozen=True, kw_only=True)
class TritonConvCase(_KLoopTiles, ConvShape):
    """conv2d forward as an implicit GEMM (``triton_conv2d``): x (N, C, H, W), w (K, C, R, S).

    ``layout`` is the memory format of input and output: nchw or channels_last (NHWC).
    The kernel has no groups: ``groups`` other than 1 is an ``unsupported`` row. The check
    is the torch conv collector's: the first image and first 64 filters against float64,
    max error over sqrt(C*R*S).
    """

    implementation = "triton.implicit_gemm"

    def build(self, device: Device) -> Workload:
        """Inputs on the GPU, one launch (tile failures -> ``UnsupportedConfigError``)."""
        if self.groups != 1:
            raise UnsupportedConfigError(f"the Triton implicit-GEMM conv has no groups (groups = 1 only); "
                                         f"got groups = {self.groups}")
        _require_cuda(device, self.dtype)
        import torch  # optional, slow to import; only measuring needs it

        from perfscope.collectors.triton_kernels.conv import prepare_conv2d

        out_shape = (self.n, self.k, *self.output_hw)
        inputs = [(x, wt, torch.empty(out_shape, dtype=x.dtype, device=x.device, memory_format=self.memory_format()))
                  for x, wt in self.make_inputs(device)]
        options = {**self.conv2d_options, "block_m": self.tile_m, "block_n": self.tile_n, "block_k": self.tile_k,
                   "group_m": self.group_m, "num_warps": self.num_warps, "num_stages": self.num_stages,
                   "input_precision": self.input_precision}
        launchers = [prepare_conv2d(x, wt, out=out, **options) for x, wt, out in inputs]
        return self._workload(device, launchers, inputs, self.normalised_error)


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
        from triton.compiler.errors import CompilationError  # optional; only the Triton kernels need it
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


def cases_from_axes(kernel: str, axes: Mapping[str, Any], *, seed: int = 0) -> list[Any]:
    """Triton cases of one kernel family: the shape grid times the tile grid.

    Shape axes are those of the torch collector of the family (gemm: sizes, shapes, m, n,
    k, batch (1 only), dtype, cache; conv: n, c, h, w, k, r, s, stride, pad, dil, groups,
    layout, dtype, cache and ``shapes``; attention: batch, heads, kv_heads, seq_q, seq_k,
    seq, head_dim, causal, dtype, cache and ``shapes``), with the same defaults.
    Tile axes: tile_m, tile_n, tile_k, group_m, num_warps, num_stages (attention has no
    tile_k or group_m); a missing tile axis takes ``DEFAULT_TILES[kernel]``. A tile
    setting that can never compile (a block that is not a power of two or below 16,
    num_warps not a power of two up to 32) is a ``InvalidInputError`` here; one that does not
    fit a particular GPU is an ``unsupported`` row when measured.
    """
    if kernel not in DEFAULT_TILES:
        raise InvalidInputError(f"no Triton kernel for {kernel!r}: use {', '.join(DEFAULT_TILES)}")
    if not isinstance(axes, Mapping):
        raise InvalidInputError(f"a {kernel} grid is a mapping of axis names to value lists, got {type(axes).__name__}")
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
    except InvalidInputError as exc:
        raise InvalidInputError(f"triton {kernel} grid: {exc}") from None
    return list(dict.fromkeys(cases))


def _tile_grid(kernel: str, axes: Mapping[str, Any], names: tuple[str, ...]) -> list[dict[str, int]]:
    lists = {}
    for name in names:
        values = axes.get(name, DEFAULT_TILES[kernel][name])
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise InvalidInputError(f"triton {kernel} grid axis {name!r} is empty")
        for value in values:
            if name in ("tile_m", "tile_n", "tile_k"):
                check_block(name, value)
        lists[name] = values
    combos = [dict(zip(lists, combo, strict=True)) for combo in itertools.product(*lists.values())]
    for combo in combos:
        check_launch(combo["num_warps"], combo["num_stages"], combo.get("group_m"))
    return combos


def _gemm_cases(axes: Mapping[str, Any], tiles: list[dict[str, int]], seed: int) -> list[TritonGemmCase]:
    unknown = sorted(set(axes) - set(_GEMM_SHAPE_AXES))
    if unknown:
        raise InvalidInputError(f"unknown gemm axes {unknown}: use {', '.join(_GEMM_SHAPE_AXES + TILE_AXES)}")
    # the torch GEMM's grid: its cases have exactly the GemmShape fields
    return [TritonGemmCase(**dataclasses.asdict(shape), **tile)
            for shape in gemm_grid(dict(axes), seed=seed) for tile in tiles]


def _conv_cases(axes: Mapping[str, Any], tiles: list[dict[str, int]], seed: int) -> list[TritonConvCase]:
    cases = []
    for point in expand_axes("conv", axes, axis_keys=CONV_SHAPE_AXES, shape_keys=CONV_SHAPE_AXES + PER_DIMENSION_KEYS,
                             defaults=CONV_SHAPE_DEFAULTS):
        fields = conv_shape_fields(point)
        cases += [TritonConvCase(**fields, seed=seed, **tile) for tile in tiles]
    return cases


def _attention_cases(axes: Mapping[str, Any], tiles: list[dict[str, int]], seed: int) -> list[TritonAttentionCase]:
    cases = []
    for point in expand_axes("attention", axes, axis_keys=ATTENTION_SHAPE_AXES, shape_keys=ATTENTION_SHAPE_AXES,
                             defaults=ATTENTION_SHAPE_DEFAULTS):
        fields = attention_shape_fields(point)
        cases += [TritonAttentionCase(**fields, seed=seed, **tile) for tile in tiles]
    return cases
