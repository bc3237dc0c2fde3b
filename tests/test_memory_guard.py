"""The memory guard: configurations that would not fit become ``too_large`` rows, unallocated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from perfscope.collectors.attention import AttentionCase
from perfscope.collectors.conv import ConvCase
from perfscope.collectors.gemm import GemmCase
from perfscope.collectors.memory_guard import MemoryNeed, parse_max_memory, too_large_reason
from perfscope.collectors.protocol import RunContext, measure_case
from perfscope.devices.cpu import CpuDevice, mem_available_bytes
from perfscope.devices.cuda import CudaDevice
from perfscope.errors import InvalidInputError
from perfscope.meters import NullMeter
from perfscope.testing import FakeClock, FakeCuda, FakeDeviceProperties, FakeNvml

GIB = 1024**3


def _fake_gpu(free_bytes: int) -> CudaDevice:
    clock = FakeClock()
    cuda = FakeCuda(clock, [FakeDeviceProperties(total_memory=80 * GIB)])
    cuda.free_memory[0] = free_bytes
    return CudaDevice(0, nvml=FakeNvml(clock=clock), cuda=cuda)


def test_mem_available_is_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n")
    assert mem_available_bytes(str(meminfo)) == 8_000_000 * 1024
    meminfo.write_text("MemTotal: 1 kB\n")
    assert mem_available_bytes(str(meminfo)) is None
    assert mem_available_bytes(str(tmp_path / "missing")) is None


def test_gpu_free_memory_comes_from_mem_get_info_and_decides():
    case = GemmCase(batch=1, m=32768, n=32768, k=32768, dtype="fp16")  # 6 GiB of operands, 4 GiB fp32 staging
    need = case.memory_need(_fake_gpu(80 * GIB))
    assert need.operand_bytes == 2 * 3 * 32768**2 and need.input_sets == 1
    assert too_large_reason(case, _fake_gpu(40 * GIB), 0.5, host_free_bytes=64 * GIB) is None
    reason = too_large_reason(case, _fake_gpu(12 * GIB), 0.5, host_free_bytes=64 * GIB)
    assert reason is not None and "cuda memory" in reason and "12 GiB free" in reason and "50%" in reason
    assert too_large_reason(case, _fake_gpu(12 * GIB), 1.0, host_free_bytes=64 * GIB) is None
    # the float64 check runs on the host: a GPU with room is not enough when the host has none
    host = too_large_reason(case, _fake_gpu(80 * GIB), 0.5, host_free_bytes=1 * GIB)
    assert host is not None and "host memory" in host


def test_every_family_states_its_need_with_python_integers():
    cpu = CpuDevice()
    huge = [GemmCase(batch=1, m=2**40, n=2**40, k=2**40, dtype="fp32"),
            ConvCase(n=2**20, c=2**20, h=2**10, w=2**10, k=2**20, r=3, s=3),
            AttentionCase(batch=2**20, heads=64, seq_q=2**20, seq_k=2**20, head_dim=128)]
    for case in huge:
        need = case.memory_need(cpu)
        assert isinstance(need, MemoryNeed) and need.device_bytes > 2**63  # no int64 wrap-around
        assert "memory" in too_large_reason(case, cpu)
    small = GemmCase(batch=1, m=64, n=64, k=64, dtype="fp32")
    assert too_large_reason(small, cpu) is None


def test_a_too_large_case_is_a_row_and_is_never_built():
    class Refusing(GemmCase):
        def build(self, device):  # pragma: no cover - reaching it fails the test
            raise AssertionError("built a case the guard should have refused")

    ctx = RunContext(run_id="t", device=_fake_gpu(1 * GIB), meter=NullMeter("test"))
    row, timing = measure_case(Refusing(batch=1, m=65536, n=65536, k=65536, dtype="fp32"), ctx)
    assert row.status == "too_large" and timing is None
    assert "GiB" in row.reason and "limit 50% of free memory" in row.reason
    assert row.flops is None  # a 10^8-sized GEMM would not fit int64: nothing is derived


@pytest.mark.parametrize("text, share", [(None, 0.5), ("50%", 0.5), ("0.25", 0.25), ("100%", 1.0)])
def test_max_memory_takes_a_share_or_a_percentage(text, share):
    assert parse_max_memory(text) == share


@pytest.mark.parametrize("text", ["0", "150%", "-1", "lots", "nan"])
def test_bad_max_memory_is_a_user_error(text):
    with pytest.raises(InvalidInputError, match="memory limit") as caught:
        parse_max_memory(text)
    assert caught.value.parameter == "max_memory"  # the CLI names its option, --max-memory


# runs the CLI in-process and prints its own peak RSS (kB) last on stderr
_WITH_PEAK_RSS = ("import resource, sys\nfrom perfscope.cli import main\nsys.argv[0] = 'perfscope'\n"
                  "try:\n    main()\nfinally:\n"
                  "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def test_collect_records_huge_gemms_as_too_large_without_allocating(tmp_path):
    out = tmp_path / "ds"
    done = subprocess.run([sys.executable, "-c", _WITH_PEAK_RSS, "collect", "gemm", "--size", "65536,100000000",
                           "--device", "cpu", "--energy", "none", "-o", str(out), "--json", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    peak_rss_gib = int(done.stderr.split()[-1]) * 1024 / GIB
    assert peak_rss_gib < 2.0  # a 65536^3 fp32 GEMM alone would take 48 GiB of operands
    assert json.loads(done.stdout)["statuses"] == {"too_large": 2}
    import pyarrow.dataset as ds

    rows = ds.dataset(out, format="parquet", partitioning="hive",
                      exclude_invalid_files=True).to_table(columns=["m", "status", "reason"]).to_pylist()
    assert sorted(r["m"] for r in rows) == [65536, 100000000]
    assert all(r["status"] == "too_large" and "free" in r["reason"] for r in rows)


def test_plan_counts_configurations_the_guard_will_refuse():
    done = subprocess.run([sys.executable, "-m", "perfscope", "plan", "gemm", "--size", "100000000,16",
                           "--device", "cpu", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["configurations"] == 2 and plan["too_large"] == 1
    done = subprocess.run([sys.executable, "-m", "perfscope", "plan", "gemm", "--size", "16", "--max-memory", "150%"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--max-memory" in done.stderr and "Traceback" not in done.stderr


_PEAK_GROWTH = """
import sys, torch
from perfscope.collectors.attention import AttentionCase
from perfscope.collectors.conv import ConvCase
from perfscope.collectors.gemm import GemmCase
from perfscope.devices.cpu import CpuDevice
torch.set_num_threads(1)
case = {"gemm": GemmCase(batch=1, m=2048, n=2048, k=2048, dtype="fp32"),
        "conv": ConvCase(n=16, c=64, h=112, w=112, k=64, r=3, s=3, pad_h=1, pad_w=1),
        "attention": AttentionCase(batch=2, heads=8, seq_q=2048, seq_k=2048, head_dim=64)}[sys.argv[1]]
device = CpuDevice()
def status_kb(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = status_kb("VmRSS")
workload = case.build(device)
workload.check()
workload.kernel(0)
grown = (status_kb("VmHWM") - before) * 1024
need = case.memory_need(device)
print(need.device_bytes + need.host_check_bytes, grown)
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's peak-RSS reset")
@pytest.mark.parametrize("family", ["gemm", "conv", "attention"])
def test_the_estimated_need_covers_what_measuring_allocates(family):
    """Peak RSS growth of building, checking and running one case on the CPU (a fresh Linux process)
    against the guard's estimate: the guard must not underestimate by much, nor refuse for nothing."""
    done = subprocess.run([sys.executable, "-c", _PEAK_GROWTH, family], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    estimated, grown = map(int, done.stdout.split())
    assert grown > 50 * 2**20  # the case is large enough to measure
    assert 0.9 * grown <= estimated <= 2.0 * grown, (estimated, grown)
