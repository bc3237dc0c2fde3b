"""A compiled, cache-blocked CPU GEMM with a runtime tile size (numba).

The CPU counterpart of a naive shared-memory tiled SGEMM: on a machine without a
GPU it still shows what tiling does, because the tile decides how much of A, B and
C stays in the L1/L2 caches while it is reused, and how much loop overhead each
multiply-add carries.

Loop order of ``tiled_matmul`` (C = A @ B, A m x k, B k x n, all C-contiguous):

* over output tiles (i-block, j-block), flattened into one ``prange`` loop: each
  output tile is owned by one thread, which zeroes it and then marches along k in
  tile-sized steps, as one GPU thread block does in the tiled kernel. Threads never
  write the same element, so there are no races and no reductions across threads;
* inside one (i, j, k) tile the order is i, k, j: the innermost loop runs along a
  contiguous row of B and of C with A[i, k] held in a register, so LLVM can
  vectorise it and every cache line fetched is used in full.

With ``tile = 1`` every inner loop has length one and the order degenerates to the
textbook i, j, k triple loop (one dot product per output element, B read down a
column with a stride of n elements): the naive baseline. Sizes that are not a
multiple of the tile get partial tiles at the right and bottom edges.

Every tile sums each output element over k in increasing order, in the output's
precision, so all tiles and thread counts give bit-identical results.

What the tile changes (bench/bench_cpu_tiles.py on this project's shared 2-core AMD
EPYC: 32 KiB L1d and 512 KiB L2 per core, 32 MiB L3): from tile 1 to 64 the time per
call fell 33-137 fold (1024^3 and 512x2048x1024, four runs on a loaded machine),
mostly because per-tile loop overhead shrinks (the vectorised inner loop is ``tile``
long). Cache effects proper are smaller: at 1024^3 all of B (4 MiB) fits the L3, and
in one informal run the unblocked loop (tile 1024) was as fast as any tile; blocking
pays once the operands outgrow the caches.

Parallel or not: the output-tile loop is a ``numba.prange`` over all numba threads
(2 on this project's development machines), because the reference line,
``torch.matmul``, uses all cores too; a single-thread comparison is one
``threads=1`` away. Only output tiles are shared out, so a tile as large as both m
and n leaves one thread working. The thread count is part of the configuration
(``params_json``: ``numba_threads``) and is set before every call
(``numba.set_num_threads`` is per calling thread). The row's ``threads`` provenance
column is torch's intra-op count, not numba's.

Accumulation is in the output's precision (fp32 for fp32 inputs). The kernel is
generic over the element type, so float64 arrays work as well (a separate
specialisation, compiled on first use); perfscope has no fp64 dtype, so cases are
fp32 only.

numba is imported lazily: importing this module does not import it, only compiling
the kernel (``compiled_kernel()`` or the module attribute ``tiled_matmul``) does.
The kernel is compiled with ``cache=True``: the first process pays the compilation
(a few seconds), later processes load it from numba's on-disk cache.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from perfscope.collectors.inputs import input_set_count, seeded_uniform, torch_dtype
from perfscope.collectors.memory_guard import MemoryNeed, gemm_memory_need
from perfscope.collectors.protocol import Case, Workload, check_cache_mode, restore_torch_threads, torch_threads
from perfscope.devices.base import Device
from perfscope.dtypes import bytes_per_element, check_dtype, dtype_info
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.features import gemm_flops, gemm_min_bytes

IMPLEMENTATION = "numba.tiled"
CHECK_ROWS = 64  # rows of C compared with the float64 reference (keeps the check cheap)
DEFAULT_TILES = (1, 2, 4, 8, 16, 32, 64)
SUPPORTED_DTYPES = ("fp32",)
_NUMBA_HINT = "the numba.tiled CPU GEMM needs numba: pip install numba"

# Replaced by numba.prange just before compiling (see compiled_kernel); as plain
# ``range`` the function below also runs, slowly, as ordinary Python.
prange = range


def _tiled_matmul_source(a, b, c, tile):  # noqa: ANN001 - compiled by numba, typed by its arguments
    m, kk = a.shape
    n = b.shape[1]
    if b.shape[0] != kk or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("tiled_matmul: shapes do not agree (need a m x k, b k x n, c m x n)")
    if tile < 1:
        raise ValueError("tiled_matmul: tile must be >= 1")
    tiles_m = (m + tile - 1) // tile
    tiles_n = (n + tile - 1) // tile
    for t in prange(tiles_m * tiles_n):
        i0 = (t // tiles_n) * tile
        j0 = (t % tiles_n) * tile
        i1 = min(i0 + tile, m)
        j1 = min(j0 + tile, n)
        for i in range(i0, i1):
            c_row = c[i, j0:j1]
            for j in range(c_row.shape[0]):
                c_row[j] = 0
        for k0 in range(0, kk, tile):
            k1 = min(k0 + tile, kk)
            for i in range(i0, i1):
                c_row = c[i, j0:j1]
                for p in range(k0, k1):
                    a_ip = a[i, p]
                    b_row = b[p, j0:j1]
                    # a 0-based loop over contiguous 1-d views is what LLVM vectorises
                    # (indexing c[i, j] over range(j0, j1) stays scalar: ~3x slower)
                    for j in range(c_row.shape[0]):
                        c_row[j] += a_ip * b_row[j]


@functools.lru_cache(maxsize=1)
def compiled_kernel() -> Any:
    """The numba dispatcher of the tiled GEMM, ``kernel(a, b, c, tile)`` (see the module doc).

    Each element type (fp32, fp64) is compiled on its first call, or loaded from
    numba's on-disk cache. There is deliberately one build only (parallel): numba's
    cache does not key on compile options, so a serial build of the same function
    could load the parallel one's code; ``numba.set_num_threads(1)`` runs it serially.
    """
    try:
        import numba  # a JIT, slow to import; only the CPU tiled GEMM needs it
    except ImportError as exc:  # optional dependency: say how to get it
        raise ImportError(_NUMBA_HINT) from exc
    globals()["prange"] = numba.prange  # numba recognises prange by identity at compile time
    return numba.njit(parallel=True, cache=True, nogil=True)(_tiled_matmul_source)


def __getattr__(name: str) -> Any:
    # ``from perfscope.collectors.cpu_tiled import tiled_matmul`` compiles (or loads) lazily
    if name == "tiled_matmul":
        return compiled_kernel()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def numba_default_threads() -> int:
    """Size of numba's thread pool (``NUMBA_NUM_THREADS``, by default the CPU count)."""
    try:
        import numba  # a JIT, slow to import; only the CPU tiled GEMM needs it
    except ImportError as exc:
        raise ImportError(_NUMBA_HINT) from exc
    return int(numba.config.NUMBA_NUM_THREADS)


@dataclass(frozen=True)
class CpuTiledGemmCase(Case):
    """C = A @ B (A m x k, B k x n, uniform in [-1, 1]) by the numba tiled kernel with a square tile.

    ``threads``: numba threads for the call; None means numba's whole pool.
    """

    m: int
    n: int
    k: int
    tile: int
    dtype: str = "fp32"
    cache_mode: str = "warm"
    seed: int = 0
    threads: int | None = None
    kernel: str = "gemm"

    def __post_init__(self) -> None:
        for name in ("m", "n", "k", "tile"):
            _positive_int(name, getattr(self, name))
        if self.threads is not None:
            _positive_int("threads", self.threads)
        check_dtype(self.dtype)  # unknown names are user errors; known but unsupported ones become rows
        check_cache_mode(self.cache_mode)

    @property
    def implementation(self) -> str:
        """The implementation name recorded in profile rows."""
        return IMPLEMENTATION

    def resolved_threads(self) -> int:
        """The numba thread count the kernel runs with."""
        return self.threads if self.threads is not None else numba_default_threads()

    def config_columns(self) -> dict[str, Any]:
        """The configuration columns of this case's profile row."""
        return {"kernel": self.kernel, "implementation": self.implementation, "dtype": self.dtype,
                "cache_mode": self.cache_mode, "batch": 1, "m": self.m, "n": self.n, "k": self.k,
                "tile_m": self.tile, "tile_n": self.tile, "tile_k": self.tile,
                "params_json": json.dumps({"numba_threads": self.resolved_threads()}, sort_keys=True)}

    def memory_need(self, device: Device) -> MemoryNeed:
        """What measuring this shape allocates (the memory guard compares it with free memory)."""
        return gemm_memory_need(1, self.m, self.n, self.k, bytes_per_element(self.dtype),
                                self.cache_mode, device, CHECK_ROWS)

    def build(self, device: Device) -> Workload:
        """Inputs and the tiled numba kernel on ``device`` (the CPU only)."""
        if device.kind != "cpu":
            raise UnsupportedConfigError(f"{IMPLEMENTATION} runs on the CPU only; this is a {device.kind} device")
        if self.dtype not in SUPPORTED_DTYPES:
            raise UnsupportedConfigError(f"{IMPLEMENTATION} supports {', '.join(SUPPORTED_DTYPES)} only, "
                                         f"not {self.dtype}")
        import numba  # a JIT, slow to import; only the CPU tiled GEMM needs it
        import torch  # noqa: F401  (the inputs are torch's; imported here so its thread count can be read)

        torch_before = torch_threads()
        threads = self.resolved_threads()
        pool = numba_default_threads()
        if threads > pool:
            raise UnsupportedConfigError(f"{threads} numba threads asked for; the pool has {pool} "
                                         "(set NUMBA_NUM_THREADS before starting Python)")
        kernel = compiled_kernel()
        info = dtype_info(self.dtype)
        storage = torch_dtype(info)
        m, n, k, tile = self.m, self.n, self.k, self.tile
        sets = input_set_count(self.cache_mode, info.bytes_per_element * (m * k + k * n + m * n), device)
        inputs = []
        for s in range(sets):
            # the same values as GemmCase's torch inputs for the same seed (numpy views share memory)
            a = seeded_uniform((m, k), storage, "cpu", seed=self.seed * 1000 + 2 * s).numpy()
            b = seeded_uniform((k, n), storage, "cpu", seed=self.seed * 1000 + 2 * s + 1).numpy()
            c = np.empty((m, n), dtype=a.dtype)
            inputs.append((a, b, c))
        set_threads = numba.set_num_threads

        def call(i: int) -> None:
            a, b, c = inputs[i % sets]
            set_threads(threads)
            kernel(a, b, c, tile)

        def check() -> float:
            a, b, c = inputs[0]
            call(0)
            rows = min(m, CHECK_ROWS)
            ref = a[:rows].astype(np.float64) @ b.astype(np.float64)
            return float(np.abs(c[:rows].astype(np.float64) - ref).max()) / math.sqrt(k)

        def release() -> None:
            inputs.clear()
            # numba's OpenMP pool, started by the first call, resets libgomp's thread count,
            # which torch shares: leave torch's as this case found it
            restore_torch_threads(torch_before)

        return Workload(kernel=call, check=check, check_tolerance=info.check_tolerance,
                        flops=gemm_flops(1, m, n, k), min_bytes=gemm_min_bytes(1, m, n, k, self.dtype),
                        input_sets=sets, release=release, fp32_math="ieee")  # numba: plain fp32 on the CPU


_AXES = ("sizes", "shapes", "m", "n", "k", "tile", "dtype", "cache", "threads")


def cases_from_axes(axes: dict[str, list], *, seed: int = 0) -> list[CpuTiledGemmCase]:
    """The grid of tiled CPU GEMM cases.

    Keys: ``sizes`` (square m = n = k), ``shapes`` ([m, n, k] lists), ``m``/``n``/``k``
    (all three, their product), ``tile`` (default 1, 2, 4, ..., 64), ``dtype``
    (default fp32), ``cache`` (warm/cold, default warm), ``threads`` (numba threads,
    default the whole pool). Scalars are taken as one-element lists. Shapes, then
    tiles, then dtypes, then cache modes vary slowest to fastest; repeats are dropped.
    """
    if not isinstance(axes, dict):
        raise InvalidInputError(f"tiled CPU GEMM axes must be a mapping, got {type(axes).__name__}")
    unknown = sorted(set(axes) - set(_AXES))
    if unknown:
        raise InvalidInputError(f"unknown tiled CPU GEMM axis {', '.join(map(repr, unknown))}: "
                             f"use {', '.join(_AXES)}")
    shapes: list[tuple[int, int, int]] = [(s, s, s) for s in _ints("sizes", axes.get("sizes", []))]
    for shape in _as_list(axes.get("shapes", [])):
        if not isinstance(shape, (list, tuple)) or len(shape) != 3:
            raise InvalidInputError(f"a GEMM shape is three sizes [m, n, k]; got {shape!r}")
        shapes.append(tuple(_ints("shapes", shape)))  # type: ignore[arg-type]
    given = [key for key in ("m", "n", "k") if key in axes]
    if given and len(given) != 3:
        raise InvalidInputError(f"give m, n and k together (their product is swept); got only {', '.join(given)}")
    if given:
        shapes += itertools.product(_ints("m", axes["m"]), _ints("n", axes["n"]), _ints("k", axes["k"]))
    if not shapes:
        raise InvalidInputError("no GEMM shapes: give sizes, shapes, or m, n and k")
    tiles = _ints("tile", axes.get("tile", list(DEFAULT_TILES)))
    dtypes = [str(d) for d in _as_list(axes.get("dtype", ["fp32"]))]
    caches = [str(c) for c in _as_list(axes.get("cache", ["warm"]))]
    threads: list[int | None] = list(_ints("threads", axes["threads"])) if "threads" in axes else [None]
    for name, values in (("tile", tiles), ("dtype", dtypes), ("cache", caches), ("threads", threads)):
        if not values:
            raise InvalidInputError(f"the {name} axis is empty")
    grid = [CpuTiledGemmCase(m=m, n=n, k=k, tile=t, dtype=d, cache_mode=c, seed=seed, threads=th)
            for (m, n, k) in shapes for t in tiles for d in dtypes for c in caches for th in threads]
    return list(dict.fromkeys(grid))  # frozen dataclasses hash by value: drop repeats, keep order


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _ints(name: str, values: Iterable[Any]) -> list[int]:
    out = []
    for v in _as_list(values):
        _positive_int(name, v)
        out.append(int(v))
    return out


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"tiled CPU GEMM {name} must be a positive integer, got {value!r}")
