"""perfscope installs collectors/, models/ and dashboards/ under its own namespace."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_namespaced_packages_import_from_the_editable_install():
    code = ("import perfscope.collectors.gemm, perfscope.models, perfscope.dashboards, "
            "perfscope.collectors.specs as s; print(s.preset_names())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert "quick" in out.stdout


def test_importing_perfscope_and_the_store_does_not_import_torch_or_nvml():
    code = ("import sys, perfscope, perfscope.store, perfscope.cli; "
            "print([m for m in ('torch', 'pynvml', 'dash', 'triton') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_regular_wheel_holds_the_namespaced_packages_and_presets(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("perfscope-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("perfscope/cli.py", "perfscope/collectors/gemm.py", "perfscope/collectors/specs/quick.yaml",
                     "perfscope/models/__init__.py", "perfscope/dashboards/__init__.py",
                     "perfscope/testing/fake_nvml.py", "perfscope/data/devices.csv"):
        assert expected in names
    # every package in the source tree is in the wheel, under the perfscope namespace
    for top, prefix in (("perfscope", "perfscope"), ("collectors", "perfscope/collectors"),
                        ("models", "perfscope/models"), ("dashboards", "perfscope/dashboards")):
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.relative_to(ROOT / top).as_posix()
            assert f"{prefix}/{relative}" in names, f"{top}/{relative} is not packaged"
    assert not any(n.startswith(("collectors/", "models/", "dashboards/")) for n in names)
    # a regular (non-editable) install of that wheel imports them too
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = "import perfscope.collectors.gemm as g, perfscope.collectors.specs as s; print(g.__file__, s.preset_names())"
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); "
                          "import site; site.main(); " + code], capture_output=True, text=True, cwd="/", check=True)
    assert str(target) in out.stdout and "quick" in out.stdout
