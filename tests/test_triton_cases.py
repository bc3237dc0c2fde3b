"""Triton sweep cases on the CPU: refused as rows, tile failures mapped, grids expanded.

No kernel runs here (see test_triton_kernels.py for that, under the interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources, PTXASError

from perfscope.collectors.protocol import RunContext, measure_case
from perfscope.collectors.spec import expand, load_spec
from perfscope.collectors.triton_kernels.cases import (
    CPU_REASON,
    DEFAULT_TILES,
    TritonAttentionCase,
    TritonConvCase,
    TritonGemmCase,
    cases_from_axes,
    launch_once,
    tile_failure_reason,
)
from perfscope.devices.cpu import CpuDevice
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.meters.null import NullMeter
from perfscope.schema import CONFIG_COLUMNS, config_id
from perfscope.timing import TimingPolicy

FAST = TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05)
TILES = {"tile_m": 64, "tile_n": 32, "num_warps": 4, "num_stages": 2}


def _ctx():
    return RunContext(run_id="t", device=CpuDevice(), meter=NullMeter("test: no meter"), policy=FAST)


def _gemm(**kw):
    return TritonGemmCase(**{"m": 100, "n": 60, "k": 40, "dtype": "fp16", "tile_k": 32, "group_m": 8, **TILES, **kw})


def _attention(**kw):
    return TritonAttentionCase(**{"batch": 2, "heads": 4, "kv_heads": 2, "seq_q": 100, "seq_k": 90, "head_dim": 64,
                                  "causal": True, "dtype": "bf16", **TILES, **kw})


def _conv(**kw):
    return TritonConvCase(**{"n": 2, "c": 8, "h": 14, "w": 14, "k": 16, "r": 3, "s": 3, "pad_h": 1, "pad_w": 1,
                             "dtype": "fp16", "tile_k": 32, "group_m": 8, **TILES, **kw})


@pytest.mark.parametrize("case", [_gemm(), _attention(), _conv(layout="channels_last")], ids=lambda c: c.kernel)
def test_on_the_cpu_a_triton_case_is_an_unsupported_row_saying_why(case):
    row, timing = measure_case(case, _ctx())
    assert row.status == "unsupported" and row.reason == CPU_REASON and timing is None
    assert row.time_median_ms is None and row.flops is None
    assert row.implementation.startswith("triton.") and row.kernel == case.kernel
    assert (row.tile_m, row.tile_n, row.tile_num_warps, row.tile_num_stages) == (64, 32, 4, 2)


def test_limits_of_the_kernels_are_rows_on_any_device():
    row, _ = measure_case(_attention(head_dim=96), _ctx())
    assert row.status == "unsupported" and "head_dim" in row.reason and "96" in row.reason
    row, _ = measure_case(_conv(c=8, k=8, groups=2), _ctx())
    assert row.status == "unsupported" and "groups = 1" in row.reason


def test_config_columns_are_schema_columns_and_tiles_tell_cases_apart():
    cases = [_gemm(), _gemm(tile_k=64), _gemm(group_m=1), _gemm(num_stages=3), _attention(), _attention(tile_n=64),
             _conv(), _conv(layout="channels_last")]
    ids = {config_id(c.config_columns()) for c in cases}  # raises on a non-schema column
    assert len(ids) == len(cases)
    gemm = _gemm().config_columns()
    assert {k: gemm[k] for k in ("tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages")} \
        == {"tile_m": 64, "tile_n": 32, "tile_k": 32, "tile_group_m": 8, "tile_num_warps": 4, "tile_num_stages": 2}
    assert gemm["implementation"] == "triton.matmul" and gemm["batch"] == 1
    attention = _attention().config_columns()
    assert attention["implementation"] == "triton.flash_fwd" and attention["tile_k"] is None
    assert attention["kv_heads"] == 2 and attention["causal"] is True
    assert _conv().config_columns()["implementation"] == "triton.implicit_gemm"
    assert set(_conv().config_columns()) <= set(CONFIG_COLUMNS)


def test_a_triton_case_has_the_shape_columns_of_the_torch_case_of_its_shape():
    from perfscope.collectors.attention import AttentionCase
    from perfscope.collectors.conv import ConvCase
    from perfscope.collectors.gemm import GemmCase

    tile_columns = {"implementation", "tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps",
                    "tile_num_stages"}
    pairs = [(_gemm(cache_mode="cold"), GemmCase(batch=1, m=100, n=60, k=40, dtype="fp16", cache_mode="cold"), set()),
             (_attention(), AttentionCase(batch=2, heads=4, kv_heads=2, seq_q=100, seq_k=90, head_dim=64, causal=True,
                                          dtype="bf16"), {"backend"}),
             (_conv(stride_w=2), ConvCase(n=2, c=8, h=14, w=14, k=16, r=3, s=3, pad_h=1, pad_w=1, stride_w=2,
                                          dtype="fp16"), {"params_json"})]
    for triton_case, torch_case, torch_only in pairs:
        triton_columns, torch_columns = triton_case.config_columns(), torch_case.config_columns()
        assert set(triton_columns) - tile_columns == set(torch_columns) - {"implementation"} - torch_only
        assert all(triton_columns[k] == torch_columns[k] for k in set(triton_columns) - tile_columns)
        assert triton_case.flops == torch_case.flops
        assert triton_case.for_device("cpu") is triton_case  # the Case protocol's default


def test_shared_memory_out_of_resources_becomes_a_one_line_reason():
    exc = OutOfResources(required=262144, limit=232448, name="shared memory")
    reason = tile_failure_reason(exc, _gemm().tiles)
    assert reason == ("tile 64x32x32 group_m=8 num_warps=4 num_stages=2 does not fit: needs 262144 bytes of "
                      "shared memory per block, the GPU allows 232448")


def test_register_pressure_ptxas_and_compile_errors_become_reasons():
    threads = tile_failure_reason(OutOfResources(required=256, limit=128, name="threads"), "128x128")
    assert "at most 128 threads" in threads and "asks for 256" in threads
    ptxas = tile_failure_reason(PTXASError("ptxas fatal: Ptx assembly aborted\nline two: too many registers"), "t")
    assert ptxas.startswith("ptxas rejected tile t:") and "\n" not in ptxas and "too many registers" in ptxas
    node = ast.parse("tl.dot(a, b)").body[0]
    compile_error = CompilationError("tl.dot(a, b)", node, "First input shape (16, 8) must be >= 16")
    reason = tile_failure_reason(compile_error, "16x16x8")
    assert reason == "Triton cannot compile tile 16x16x8: First input shape (16, 8) must be >= 16"
    launch = RuntimeError("Triton Error [CUDA]: too many resources requested for launch")
    assert tile_failure_reason(launch, "t") == \
        "CUDA refused to launch tile t: Triton Error [CUDA]: too many resources requested for launch"


def test_other_errors_are_not_tile_failures():
    assert tile_failure_reason(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "t") is None
    assert tile_failure_reason(ValueError("shared memory"), "t") is None
    assert tile_failure_reason(RuntimeError("Triton Error [CUDA]: an illegal memory access"), "t") is None


def test_launch_once_maps_tile_failures_and_releases_inputs():
    released = []

    def too_big(i):
        raise OutOfResources(required=300000, limit=232448, name="shared memory")

    with pytest.raises(UnsupportedConfigError, match="does not fit: needs 300000 bytes"):
        launch_once(too_big, CpuDevice(), "256x256x64", lambda: released.append("a"))

    def broken(i):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        launch_once(broken, CpuDevice(), "t", lambda: released.append("b"))
    calls = []
    launch_once(calls.append, CpuDevice(), "t", lambda: released.append("c"))
    assert calls == [0] and released == ["a", "b"]


def test_grids_multiply_shapes_by_tiles():
    cases = cases_from_axes("gemm", {"sizes": [64, 128], "shapes": [[32, 48, 16]], "dtype": ["fp16", "bf16"],
                                     "tile_m": [32, 64], "tile_k": [16, 32], "num_stages": [2, 3]})
    assert len(cases) == 3 * 2 * 2 * 2 * 2
    assert all(isinstance(c, TritonGemmCase) for c in cases)
    assert {(c.tile_n, c.group_m, c.num_warps) for c in cases} == {(128, 8, 4)}  # defaults
    assert {(c.m, c.n, c.k) for c in cases} == {(64, 64, 64), (128, 128, 128), (32, 48, 16)}

    conv = cases_from_axes("conv", {"n": [1], "c": [4], "h": [10], "w": [12], "k": [8], "r": [3], "s": [3],
                                    "pad": [0, 1], "stride": [1, 2], "layout": ["nchw", "channels_last"],
                                    "tile_m": [32, 64]})
    assert len(conv) == 2 * 2 * 2 * 2 and all(c.tile_k == DEFAULT_TILES["conv"]["tile_k"][0] for c in conv)
    assert {(c.pad_h, c.pad_w, c.stride_h, c.stride_w) for c in conv} == {(p, p, s, s) for p in (0, 1) for s in (1, 2)}

    attention = cases_from_axes("attention", {"batch": [2], "heads": [8], "kv_heads": [8, 2], "seq": [128, 200],
                                              "head_dim": [64], "causal": [False, True], "tile_n": [32, 64]})
    assert len(attention) == 2 * 2 * 2 * 2
    assert {(c.seq_q, c.seq_k) for c in attention} == {(128, 128), (200, 200)}


@pytest.mark.parametrize("axes, message", [
    ({"sizes": [64], "tile_m": [48]}, "tile_m must be a power of two"),
    ({"sizes": [64], "tile_k": [8]}, "tile_k must be a power of two >= 16"),
    ({"sizes": [64], "num_warps": [3]}, "num_warps"),
    ({"sizes": [64], "num_stages": [0]}, "num_stages"),
    ({"sizes": [64], "group_m": [0]}, "group_m"),
    ({"sizes": [64], "batch": [2]}, "batch must be 1"),
    ({"sizes": [64], "dtype": ["fp8_e4m3"]}, "fp32, tf32, fp16, bf16"),
    ({"sizes": [64], "tile": [16]}, "unknown gemm axes"),
])
def test_gemm_tiles_that_can_never_compile_are_refused_at_expansion(axes, message):
    with pytest.raises(InvalidInputError, match=message):
        cases_from_axes("gemm", axes)


def test_attention_has_no_tile_k_or_group_m_and_unknown_kernels_are_refused():
    axes = {"heads": [4], "seq": [64], "head_dim": [64]}
    for extra in ({"tile_k": [32]}, {"group_m": [8]}, {"backend": ["flash"]}):
        with pytest.raises(InvalidInputError, match="unknown attention grid key"):
            cases_from_axes("attention", {**axes, **extra})
    with pytest.raises(InvalidInputError, match="no Triton kernel"):
        cases_from_axes("softmax", {})
    with pytest.raises(InvalidInputError, match="needs c"):
        cases_from_axes("conv", {"n": [1], "h": [8], "w": [8], "k": [4], "r": [3], "s": [3]})


def _preset_triton_cases(name):
    spec = load_spec(name)
    sweeps = tuple(s for s in spec.sweeps if s.implementation == "triton")
    return expand(spec.model_copy(update={"sweeps": sweeps}))


def test_the_shipped_presets_expand_their_triton_sweeps():
    for preset in ("default", "gpperf"):  # full's 25,920 Triton GEMM cases take ~3 s to expand
        cases = _preset_triton_cases(preset)
        assert cases and all(c.implementation.startswith("triton.") for c in cases), preset
    default = _preset_triton_cases("default")
    assert {c.kernel for c in default} == {"gemm", "conv", "attention"}
    gpperf = _preset_triton_cases("gpperf")
    assert {c.tile_m for c in gpperf} == {16, 32} and all(c.tile_m == c.tile_n == c.tile_k for c in gpperf)


def test_planning_a_triton_sweep_imports_neither_torch_nor_triton():
    code = ("import sys; from perfscope.collectors.triton_kernels.cases import cases_from_axes; "
            "cases_from_axes('gemm', {'sizes': [64]}); print([m for m in ('torch', 'triton') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
