"""The numba tiled CPU GEMM: correctness for every tile, rows through the protocol, the grid."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from perfscope.collectors.cpu_tiled import CpuTiledGemmCase, cases_from_axes, compiled_kernel
from perfscope.collectors.protocol import RunContext, case_config_id, measure_case
from perfscope.devices.cpu import CpuDevice
from perfscope.devices.cuda import CudaDevice
from perfscope.errors import InvalidInputError
from perfscope.meters.null import NullMeter
from perfscope.testing import FakeClock, FakeCuda, FakeDeviceProperties, FakeNvml
from perfscope.timing import TimingPolicy

FAST = TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05)
TILES = (1, 2, 3, 7, 8, 16, 64)


@pytest.fixture(scope="module")
def kernel():
    """The compiled kernel, compiled (or loaded from numba's cache) once for this module."""
    k = compiled_kernel()
    k(*_operands(2, 2, 2, seed=0), 1)  # first call compiles the fp32 specialisation
    return k


def _operands(m: int, n: int, k: int, seed: int, dtype=np.float32):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (k, n)).astype(dtype)
    return a, b, np.full((m, n), np.nan, dtype=dtype)  # NaN: an unwritten element cannot pass


def _shapes(tile: int) -> list[tuple[int, int, int]]:
    """Multiples of the tile, one more than multiples, and sizes below one tile."""
    small = (5, 3, 11) if tile > 11 else (13, 9, 17)
    return [(2 * tile, 3 * tile, tile), (2 * tile + 1, tile + 1, 3 * tile + 1), small]


@pytest.mark.parametrize("tile", TILES)
def test_every_tile_matches_float64_numpy_on_aligned_and_ragged_shapes(kernel, tile):
    for m, n, k in _shapes(tile):
        a, b, c = _operands(m, n, k, seed=tile)
        kernel(a, b, c, tile)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        assert c.dtype == np.float32
        assert np.abs(c - ref).max() / math.sqrt(k) <= 1e-5, (tile, m, n, k)


def test_all_tiles_and_thread_counts_give_the_same_bits_as_sequential_fp32_accumulation(kernel):
    # every output element sums k in increasing order in fp32 whatever the tile or thread
    # count (one thread owns each output tile), so results agree bit for bit
    import numba

    m, n, k = 37, 70, 123
    a, b, _ = _operands(m, n, k, seed=1)
    expected = np.zeros((m, n), np.float32)
    for p in range(k):
        expected += a[:, p:p + 1] * b[p]
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            for tile in (*TILES, 200):
                c = np.full((m, n), np.nan, np.float32)
                kernel(a, b, c, tile)
                assert np.array_equal(c, expected), (tile, threads)
    finally:
        numba.set_num_threads(before)


def test_the_kernel_also_runs_in_float64(kernel):
    a, b, c = _operands(19, 23, 29, seed=3, dtype=np.float64)
    kernel(a, b, c, 8)
    assert c.dtype == np.float64
    np.testing.assert_allclose(c, a @ b, rtol=0, atol=1e-12)


def test_the_kernel_refuses_disagreeing_shapes_and_a_zero_tile(kernel):
    from perfscope.collectors.cpu_tiled import tiled_matmul

    assert tiled_matmul is kernel
    a, b, c = _operands(4, 5, 6, seed=0)
    with pytest.raises(ValueError, match="shapes"):
        kernel(a, b[:5].copy(), c, 2)
    with pytest.raises(ValueError, match="tile"):
        kernel(a, b, c, 0)


def test_importing_the_collector_does_not_import_numba():
    code = "import sys, perfscope.collectors.cpu_tiled; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _ctx(device=None):
    return RunContext(run_id="t", device=device or CpuDevice(), meter=NullMeter("test: no meter"), policy=FAST)


def test_measure_case_gives_an_ok_row_with_tile_columns_and_the_thread_count(kernel):
    import numba

    case = CpuTiledGemmCase(m=40, n=24, k=33, tile=16)
    row, timing = measure_case(case, _ctx())
    assert row.status == "ok", row.reason
    assert row.implementation == "numba.tiled" and row.kernel == "gemm" and row.batch == 1
    assert (row.tile_m, row.tile_n, row.tile_k) == (16, 16, 16)
    assert json.loads(row.params_json) == {"numba_threads": numba.config.NUMBA_NUM_THREADS}
    assert row.check_max_abs_err <= row.check_tolerance
    assert row.flops == 2 * 40 * 24 * 33 and row.min_bytes == 4 * (40 * 33 + 33 * 24 + 40 * 24)
    assert row.samples_n == len(timing.samples_s) and row.time_median_ms > 0
    assert row.device_kind == "cpu" and row.timing_method == "perf_counter_ns-batched"


def test_the_tile_and_thread_count_change_the_config_id():
    ids = {case_config_id(CpuTiledGemmCase(m=8, n=8, k=8, tile=t, threads=th)) for t in (4, 8) for th in (1, 2)}
    assert len(ids) == 4


def test_one_call_runs_with_the_cases_thread_count(kernel):
    import numba

    before = numba.get_num_threads()
    workload = CpuTiledGemmCase(m=16, n=16, k=16, tile=4, threads=1).build(CpuDevice())
    try:
        workload.kernel(0)
        assert numba.get_num_threads() == 1
        assert workload.check() <= workload.check_tolerance
    finally:
        numba.set_num_threads(before)


def test_more_threads_than_numbas_pool_is_unsupported(kernel):
    import numba

    row, _ = measure_case(CpuTiledGemmCase(m=8, n=8, k=8, tile=4, threads=numba.config.NUMBA_NUM_THREADS + 1), _ctx())
    assert row.status == "unsupported" and "NUMBA_NUM_THREADS" in row.reason


def test_inputs_are_seeded_like_the_torch_gemm(kernel):
    same = [CpuTiledGemmCase(m=32, n=32, k=32, tile=8, seed=s).build(CpuDevice()) for s in (0, 0, 1)]
    errors = [w.check() for w in same]
    assert errors[0] == errors[1]
    assert errors[0] != errors[2]


def test_cold_mode_rotates_enough_input_sets_to_cover_twice_the_cache(kernel, tmp_path):
    index = tmp_path / "cpu0" / "cache" / "index3"  # a fake sysfs: a 1 MiB last-level cache
    index.mkdir(parents=True)
    (index / "level").write_text("3\n")
    (index / "size").write_text("1024K\n")
    device = CpuDevice(sys_root=tmp_path)
    workload = CpuTiledGemmCase(m=64, n=64, k=64, tile=32, cache_mode="cold").build(device)
    set_bytes = 4 * 3 * 64 * 64
    assert workload.input_sets == math.ceil(2 * 2**20 / set_bytes)
    for i in range(workload.input_sets + 1):  # every set is written, and the rotation wraps
        workload.kernel(i)
    assert workload.check() <= workload.check_tolerance
    workload.release()


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "tf32"])
def test_dtypes_other_than_fp32_are_unsupported_rows(dtype):
    row, timing = measure_case(CpuTiledGemmCase(m=8, n=8, k=8, tile=4, dtype=dtype), _ctx())
    assert row.status == "unsupported" and "fp32" in row.reason and timing is None
    assert row.tile_m == 4 and row.time_median_ms is None


def test_an_unknown_dtype_or_bad_tile_is_a_user_error():
    with pytest.raises(InvalidInputError, match="dtype"):
        CpuTiledGemmCase(m=8, n=8, k=8, tile=4, dtype="fp64x")
    for tile in (0, -1, 2.5, True):
        with pytest.raises(InvalidInputError, match="tile"):
            CpuTiledGemmCase(m=8, n=8, k=8, tile=tile)


def test_a_cuda_device_is_an_unsupported_row():
    clock = FakeClock()
    device = CudaDevice(0, nvml=FakeNvml(clock=clock), cuda=FakeCuda(clock, [FakeDeviceProperties()]),
                        cuda_version="12.4")
    row, timing = measure_case(CpuTiledGemmCase(m=8, n=8, k=8, tile=4), _ctx(device))
    assert row.status == "unsupported" and "CPU only" in row.reason and timing is None
    assert row.device_kind == "cuda"


def test_cases_from_axes_builds_the_grid_in_order():
    cases = cases_from_axes({"sizes": [64], "shapes": [[32, 16, 8]], "m": [4], "n": [5, 6], "k": [7],
                             "tile": [1, 8], "dtype": "fp32", "cache": ["warm", "cold"]}, seed=3)
    shapes = list(dict.fromkeys((c.m, c.n, c.k) for c in cases))
    assert shapes == [(64, 64, 64), (32, 16, 8), (4, 5, 7), (4, 6, 7)]
    assert len(cases) == 4 * 2 * 2
    assert [(c.tile, c.cache_mode) for c in cases[:4]] == [(1, "warm"), (1, "cold"), (8, "warm"), (8, "cold")]
    assert all(c.seed == 3 and c.dtype == "fp32" and c.threads is None for c in cases)


def test_cases_from_axes_defaults_drops_repeats_and_takes_threads():
    cases = cases_from_axes({"sizes": [16, 16], "threads": [1]})
    assert [c.tile for c in cases] == [1, 2, 4, 8, 16, 32, 64]
    assert {c.threads for c in cases} == {1}


@pytest.mark.parametrize("axes,match", [
    ({"sizes": [8], "tiles": [4]}, "unknown"),
    ({"sizes": [8], "tile": [0]}, "tile"),
    ({"m": [8], "n": [8]}, "together"),
    ({"shapes": [[8, 8]]}, "three"),
    ({"tile": [4]}, "no GEMM shapes"),
    ({"sizes": [8], "tile": []}, "empty"),
    ({"sizes": [8], "cache": ["hot"]}, "cache"),
    ({"sizes": [8], "dtype": ["int3"]}, "dtype"),
])
def test_cases_from_axes_rejects_bad_axes(axes, match):
    with pytest.raises(InvalidInputError, match=match):
        cases_from_axes(axes)


def test_a_numba_case_leaves_torch_thread_count_as_it_found_it():
    """numba's OpenMP pool resets libgomp's thread count; rows after it must keep --threads."""
    import torch

    from perfscope.collectors.cpu_tiled import CpuTiledGemmCase
    from perfscope.collectors.gemm import GemmCase
    from perfscope.collectors.protocol import RunContext, measure_case
    from perfscope.devices.cpu import CpuDevice
    from perfscope.meters.null import NullMeter
    from perfscope.timing import TimingPolicy

    before = torch.get_num_threads()
    ctx = RunContext(run_id="t", device=CpuDevice(), meter=NullMeter("test"),
                     policy=TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.03))
    torch.set_num_threads(1)
    try:
        measure_case(CpuTiledGemmCase(m=64, n=64, k=64, tile=8), ctx)
        row, _ = measure_case(GemmCase(batch=1, m=64, n=64, k=64, dtype="fp32"), ctx)
        assert torch.get_num_threads() == 1 and row.threads == 1
    finally:
        torch.set_num_threads(before)


def test_release_puts_torchs_thread_count_back_as_the_build_found_it(kernel):
    """The case keeps the invariant itself, not only through measure_case: whatever set
    libgomp's (torch's) thread count while the workload lived, its release restores it."""
    import torch

    before = torch.get_num_threads()
    workload = CpuTiledGemmCase(m=16, n=16, k=16, tile=4).build(CpuDevice())
    try:
        workload.kernel(0)
        torch.set_num_threads(1 if before != 1 else 2)  # what numba's OpenMP pool does when it starts
        workload.release()
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_in_a_fresh_process_a_case_started_numbas_pool_and_its_release_undid_the_reset():
    """Where numba's pool starts (the first call in a process), the reset happens between
    build and release, so release alone keeps torch's thread count (~8 s: a fresh process)."""
    code = ("import torch; torch.set_num_threads(1)\n"
            "from perfscope.collectors.cpu_tiled import CpuTiledGemmCase, numba_default_threads\n"
            "from perfscope.devices.cpu import CpuDevice\n"
            "w = CpuTiledGemmCase(m=16, n=16, k=16, tile=4).build(CpuDevice())\n"
            "w.kernel(0)\n"
            "during = torch.get_num_threads()\n"
            "w.release()\n"
            "import numba; print(numba_default_threads(), during, torch.get_num_threads(), numba.threading_layer())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pool, during, after, layer = out.stdout.split()
    assert int(after) == 1
    if layer == "omp" and int(pool) > 1:  # the reset shows with the OpenMP layer and a pool of several threads
        assert int(during) == int(pool)
