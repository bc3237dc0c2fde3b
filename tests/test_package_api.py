"""The package-level Python API, used exactly as the README shows: ``import perfscope``,
then the names called more than once in one fresh process (an imported submodule of the
same name once replaced ``perfscope.estimate`` after its first call)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "cpu-quick"
NAMES = ("estimate", "estimate_many", "ProfileStore", "Measurement", "RooflineModel", "EnergyModel",
         "ForestModel", "ConformalWrapper", "load_bundle")
HEAVY = ("pandas", "torch", "dash", "sklearn", "scipy", "pyarrow", "triton", "plotly")


def _run(code: str, tmp_path: Path) -> dict:
    env = {"PERFSCOPE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", code, str(SAMPLE)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_readme_example_runs_twice_in_one_process(tmp_path):
    code = """
import json, sys
import numpy as np
import perfscope
ms, ns, ks = np.array([256, 512]), np.array([256, 1024]), np.array([128, 64])
out = {"single": [], "many": [], "rows": []}
for _ in range(2):
    out["single"].append(perfscope.estimate("gemm", "h100-sxm", "bf16", m=4096, n=4096, k=4096)["latency_s"])
    frame = perfscope.estimate_many("gemm", {"m": ms, "n": ns, "k": ks}, "h100-sxm", dtype="fp16")
    out["many"].append([type(frame).__name__, len(frame)])
    out["rows"].append(perfscope.ProfileStore(sys.argv[1]).read(["time_median_ms"]).table.num_rows)
    out.setdefault("models", []).append([type(perfscope.RooflineModel()).__name__,
                                         type(perfscope.ForestModel(n_estimators=3)).__name__])
print(json.dumps(out))
"""
    out = _run(code, tmp_path)
    assert out["single"][0] == out["single"][1] > 0
    assert out["many"] == [["DataFrame", 2], ["DataFrame", 2]]
    assert out["rows"][0] == out["rows"][1] > 0
    assert out["models"] == [["RooflineModel", "ForestModel"]] * 2


def test_the_names_are_discoverable_and_importing_perfscope_stays_light(tmp_path):
    code = f"""
import json, pydoc, sys
import perfscope
listed = dir(perfscope)
heavy = sorted({{n.split('.')[0] for n in sys.modules}} & {set(HEAVY)!r})
text = pydoc.render_doc(perfscope, renderer=pydoc.plaintext)
print(json.dumps({{"dir": listed, "all": perfscope.__all__, "heavy_at_import": heavy, "help": text}}))
"""
    out = _run(code, tmp_path)
    assert out["heavy_at_import"] == []
    for name in NAMES:
        assert name in out["dir"] and name in out["all"], name
        assert name in out["help"], name


def test_the_models_package_exports_its_classes(tmp_path):
    code = """
import json
import perfscope.models as models
from perfscope.models import ForestModel, load_bundle
import perfscope.models.forest
print(json.dumps({"dir": dir(models), "same": models.ForestModel is ForestModel is perfscope.models.forest.ForestModel,
                  "callable": callable(models.load_bundle)}))
"""
    out = _run(code, tmp_path)
    assert out["same"] and out["callable"]
    for name in ("RooflineModel", "EnergyModel", "ForestModel", "ConformalWrapper", "save_bundle", "load_bundle"):
        assert name in out["dir"], name
