"""The import contracts see the whole installed package and catch a layer violation.

``scripts/lint_imports.py`` lays models/, collectors/ and dashboards/ out under perfscope
as installed; without that, import-linter would see only perfscope/ and every contract
on the models would hold vacuously. (tests/test_lint.py runs the script on the sources.)
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("lint_imports", ROOT / "scripts" / "lint_imports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=tree, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tree)}, timeout=300)


def test_the_contracts_cover_the_mapped_packages_and_catch_an_upward_import(tmp_path):
    package = _script().build_tree(tmp_path)
    assert (package / "models" / "forest.py").is_file() and (package / "dashboards" / "app.py").is_file()
    assert _lint(tmp_path).returncode == 0
    with (package / "roofline.py").open("a") as source:  # the core reaching up into the models
        source.write("\nimport perfscope.models.forest  # noqa\n")
    broken = _lint(tmp_path)
    assert broken.returncode != 0
    assert "perfscope.roofline -> perfscope.models.forest" in broken.stdout
