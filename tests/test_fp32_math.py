"""The fp32 math mode column: what collectors record, and how old files read."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest
import torch

from perfscope.collectors.conv import ConvCase
from perfscope.collectors.fp32_math import row_fp32_math, torch_fp32_math
from perfscope.collectors.gemm import GemmCase
from perfscope.collectors.protocol import RunContext, Workload, measure_case
from perfscope.devices.base import Device
from perfscope.devices.cpu import CpuDevice
from perfscope.devices.cuda import CudaDevice
from perfscope.dtypes import check_fp32_math, peak_dtype
from perfscope.errors import InvalidInputError
from perfscope.meters import NullMeter
from perfscope.testing import FakeClock, FakeCuda, FakeDeviceProperties, FakeNvml
from perfscope.timing import TimingPolicy

FAST = TimingPolicy(warmup_s=0.01, min_time_s=0.01, budget_s=0.05, target_ci_rel=0.05)


@pytest.fixture
def torch_switches():
    """Put torch's fp32 switches back after a test changes them."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision(),
              torch.backends.cudnn.allow_tf32)
    yield
    torch.backends.cuda.matmul.allow_tf32 = before[0]
    torch.set_float32_matmul_precision(before[1])
    torch.backends.cudnn.allow_tf32 = before[2]


def test_cpu_rows_record_ieee_for_fp32_and_nothing_for_other_dtypes():
    ctx = RunContext(run_id="t", device=CpuDevice(), meter=NullMeter("test"), policy=FAST)
    fp32, _ = measure_case(GemmCase(batch=1, m=16, n=16, k=16, dtype="fp32"), ctx)
    bf16, _ = measure_case(GemmCase(batch=1, m=16, n=16, k=16, dtype="bf16"), ctx)
    conv, _ = measure_case(ConvCase(n=1, c=4, h=8, w=8, k=4, r=3, s=3, dtype="fp32"), ctx)
    assert fp32.status == conv.status == bf16.status == "ok"
    assert fp32.fp32_math == "ieee" and conv.fp32_math == "ieee"
    assert bf16.fp32_math is None


def test_a_refused_row_has_no_math_mode():
    ctx = RunContext(run_id="t", device=CpuDevice(), meter=NullMeter("test"), policy=FAST)
    row, _ = measure_case(GemmCase(batch=1, m=8, n=8, k=8, dtype="tf32"), ctx)  # tf32 needs CUDA
    assert row.status == "unsupported" and row.fp32_math is None


def test_torch_switches_decide_the_mode_on_cuda(torch_switches):
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True
    assert torch_fp32_math("cuda") == "ieee" and torch_fp32_math("cuda", "conv") == "tf32"
    torch.set_float32_matmul_precision("high")  # what users write to get TF32 matmuls
    assert torch_fp32_math("cuda") == "tf32"
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = False
    assert torch_fp32_math("cuda") == "tf32" and torch_fp32_math("cuda", "conv") == "ieee"
    assert torch_fp32_math("cpu") == "ieee"  # switches do not apply to CPU kernels


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9: one API")
def test_mixed_legacy_and_new_torch_apis_are_read_without_raising(torch_switches):
    matmul = torch.backends.cuda.matmul
    torch.set_float32_matmul_precision("high")  # a user's setting ...
    matmul.allow_tf32 = False  # ... then a collector's legacy switch
    assert torch_fp32_math("cuda") == "ieee"
    matmul.fp32_precision = "tf32"  # the new API: torch now refuses legacy reads
    with pytest.raises(RuntimeError):
        _ = matmul.allow_tf32
    assert torch_fp32_math("cuda") == "tf32"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    assert torch_fp32_math("cuda", "conv") == "ieee"


CLOCK = FakeClock()


@dataclass(frozen=True)
class _SwitchReadingCase(GemmCase):
    """A GEMM whose "kernel" advances the fake clock; its mode is read from torch as GemmCase does."""

    def build(self, device: Device) -> Workload:
        return Workload(kernel=lambda i: CLOCK.advance(1e-3), check=lambda: 0.0, check_tolerance=1e-4,
                        flops=self.flops, min_bytes=1, fp32_math=torch_fp32_math(device.kind))


def test_a_row_measured_on_a_fake_gpu_records_the_switch_state(torch_switches):
    device = CudaDevice(0, nvml=FakeNvml(clock=CLOCK), cuda=FakeCuda(CLOCK, [FakeDeviceProperties()]))
    ctx = RunContext(run_id="t", device=device, meter=NullMeter("test"), policy=FAST)
    torch.set_float32_matmul_precision("high")
    row, _ = measure_case(_SwitchReadingCase(batch=1, m=64, n=64, k=64, dtype="fp32"), ctx)
    assert row.status == "ok", row.reason
    assert row.fp32_math == "tf32"
    torch.set_float32_matmul_precision("highest")
    row, _ = measure_case(_SwitchReadingCase(batch=1, m=64, n=64, k=64, dtype="fp32"), ctx)
    assert row.fp32_math == "ieee"
    row, _ = measure_case(_SwitchReadingCase(batch=1, m=64, n=64, k=64, dtype="fp16"), ctx)
    assert row.fp32_math is None


def test_vocabulary_and_the_peak_it_selects():
    assert check_fp32_math("tf32") == "tf32"
    with pytest.raises(InvalidInputError, match="ieee or tf32"):
        check_fp32_math("fast")
    assert peak_dtype("fp32", "tf32") == "tf32"
    assert peak_dtype("fp32", None) == peak_dtype("fp32", "ieee") == "fp32"
    assert peak_dtype("bf16", "tf32") == "bf16"
    assert row_fp32_math("tf32", "tf32") == "tf32" and row_fp32_math("fp16", "ieee") is None


def test_a_file_written_before_the_column_reads_it_as_null(tmp_path, make_row):
    from perfscope.store import ProfileStore

    store = ProfileStore(tmp_path / "ds", create=True)
    (path,) = store.append([make_row()])
    old = pq.read_table(path)
    assert "fp32_math" in old.column_names
    pq.write_table(old.drop_columns(["fp32_math", "declared_peak_flops_per_s"]), path)  # as older perfscope wrote
    table = store.read().table
    assert table.num_rows == 1
    assert table.column("fp32_math").to_pylist() == [None]
    assert table.column("declared_peak_flops_per_s").to_pylist() == [None]
