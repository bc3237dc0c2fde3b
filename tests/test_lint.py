"""The repository passes its linters: ruff, mypy and (where configured) import-linter (docs/development.md).

Each runs as a subprocess from the environment running the tests, with the
configuration in pyproject.toml, so CI runs them through the README's test command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = _run(sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    result = _run(sys.executable, "-m", "mypy")  # files and options: [tool.mypy] in pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_import_contracts_hold() -> None:
    if "[tool.importlinter]" not in (ROOT / "pyproject.toml").read_text():
        pytest.skip("no [tool.importlinter] contracts in pyproject.toml")
    # models/, collectors/ and dashboards/ are installed under perfscope: the script lints
    # the package as installed (see its docstring)
    result = _run(sys.executable, str(ROOT / "scripts" / "lint_imports.py"))
    assert result.returncode == 0, result.stdout + result.stderr
