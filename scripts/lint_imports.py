#!/usr/bin/env python
"""Check the import contracts of pyproject.toml (``[tool.importlinter]``) with import-linter.

perfscope's ``models/``, ``collectors/`` and ``dashboards/`` live at the top of the
repository and are installed as ``perfscope.models`` and so on (``package-dir`` in
pyproject.toml). import-linter (grimp) finds a package's modules by walking its one
directory, so it would see only ``perfscope/``. This script copies the sources into one
``perfscope`` tree in a temporary directory, as they are installed, and runs
``lint-imports`` there against the repository's pyproject.toml. Exit status: lint-imports'.

Run:  python scripts/lint_imports.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# installed name -> source directory (pyproject.toml [tool.setuptools] package-dir)
MAPPED = {"models": "models", "collectors": "collectors", "dashboards": "dashboards"}


def build_tree(target: Path) -> Path:
    """One ``perfscope`` package under ``target`` laid out as installed; returns its root."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    package = target / "perfscope"
    shutil.copytree(ROOT / "perfscope", package, ignore=ignore)
    for name, source in MAPPED.items():
        shutil.copytree(ROOT / source, package / name, ignore=ignore)
    return package


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="perfscope-imports-") as tmp:
        build_tree(Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp}
        lint = Path(sys.executable).parent / "lint-imports"
        command = [str(lint) if lint.exists() else "lint-imports", "--no-cache", str(ROOT / "pyproject.toml")]
        return subprocess.run(command, cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
