"""RaplMeter against a real fake powercap tree: deltas, wrap-around, discovery, permission."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from perfscope.errors import MeterUnavailableError
from perfscope.meters.rapl import RaplMeter, counter_delta_uj, rapl_available
from perfscope.testing.clock import FakeClock
from perfscope.testing.fake_powercap import FakePowercap

REPO = Path(__file__).resolve().parents[1]


def test_energy_is_sum_of_package_deltas_without_subzones(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add_package(0, energy_uj=5_000_000)
    fake.add_package(1, energy_uj=7_000_000, subzones=("core", "uncore", "dram"))
    fake.add_zone("intel-rapl:2", "psys", energy_uj=1)  # platform zone: not a package
    clock = FakeClock()
    meter = RaplMeter(root=tmp_path, clock=clock)
    assert meter.zone_names == ["package-0", "package-1"]

    token = meter.begin()
    fake.add_energy(0, 2_000_000)
    fake.add_energy(1, 500_000)
    clock.advance(0.5)
    reading = meter.end(token)

    assert reading.energy_j == pytest.approx(2.5)
    assert reading.duration_s == pytest.approx(0.5)
    assert reading.power_avg_w == pytest.approx(5.0)


def test_subzones_really_advance_so_double_counting_would_show(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    zone = fake.add_package(0)
    fake.add_energy(0, 1_000_000)
    core = int((zone / "intel-rapl:0:0" / "energy_uj").read_text())
    assert core > 0
    assert (tmp_path / "intel-rapl:0:0").is_symlink()  # linked at the top, as in sysfs


def test_wrap_around_uses_max_energy_range(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add_package(0, energy_uj=999_000, max_range_uj=1_000_000)
    clock = FakeClock()
    meter = RaplMeter(root=tmp_path, clock=clock)
    token = meter.begin()
    fake.add_energy(0, 3_000)  # 999_000 + 3_000 wraps to 2_000
    assert fake.energy_uj(0) == 2_000
    clock.advance(1.0)
    assert meter.end(token).energy_j == pytest.approx(0.003)


def test_counter_delta_formula() -> None:
    assert counter_delta_uj(10, 25, 100) == 15
    assert counter_delta_uj(90, 5, 100) == 15


def test_amd_rapl_names_are_accepted(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.add_package(0, prefix="amd-rapl")
    assert RaplMeter(root=tmp_path).zone_names == ["package-0"]


@pytest.mark.parametrize("make_root", ["empty", "missing", "only-psys"])
def test_no_package_zones_is_unavailable_and_names_the_root(tmp_path: Path, make_root: str) -> None:
    root = tmp_path / "powercap"
    if make_root != "missing":
        fake = FakePowercap(root)
        if make_root == "only-psys":
            fake.add_zone("intel-rapl:0", "psys")
    with pytest.raises(MeterUnavailableError, match=str(root)):
        RaplMeter(root=root)
    ok, reason = rapl_available(root)
    assert not ok
    assert str(root) in reason


def test_rapl_available_when_readable(tmp_path: Path) -> None:
    FakePowercap(tmp_path).add_package(0)
    assert rapl_available(tmp_path) == (True, "")


# As root a chmod 000 file stays readable, so the child imports perfscope as root and then
# drops to nobody (65534) before reading. (subprocess.run(user=65534) cannot be used:
# the venv's interpreter lives under /root, which nobody may not enter.)
_READ_AS_NOBODY = """
import os, sys
from perfscope.errors import MeterUnavailableError
from perfscope.meters.rapl import RaplMeter
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
try:
    RaplMeter(sys.argv[1])
except MeterUnavailableError as exc:
    print("UNAVAILABLE:", exc)
    sys.exit(3)
print("READ")
"""


@pytest.fixture
def world_traversable_dir():
    # pytest's tmp_path sits under a 0700 directory that nobody cannot enter.
    path = Path(tempfile.mkdtemp(prefix="perfscope-rapl-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unreadable_energy_file_says_how_to_allow_it(world_traversable_dir: Path) -> None:
    root = world_traversable_dir / "powercap"
    fake = FakePowercap(root)
    fake.add_package(0)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o444)
    fake.energy_path(0).chmod(0o000)

    if os.geteuid() == 0:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(
            [sys.executable, "-c", _READ_AS_NOBODY, str(root)],
            capture_output=True, text=True, env=env, cwd=world_traversable_dir, timeout=60,
        )
        assert proc.returncode == 3, proc.stdout + proc.stderr
        message = proc.stdout
    else:
        with pytest.raises(MeterUnavailableError) as info:
            RaplMeter(root)
        message = str(info.value)

    assert str(fake.energy_path(0)) in message
    assert "readable only by root" in message
    assert "chmod o+r" in message
