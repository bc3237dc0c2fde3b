"""Imports sit at module level (docs/architecture.md): inside a function only for the heavy
optional packages below, each function saying why in a comment. A project module imported
inside a function hides the layering (and cycles) that import-linter checks."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("perfscope", "collectors", "models", "dashboards")

# module (and its submodules) -> why it may be imported inside a function, anywhere
HEAVY = {
    "torch": "optional (a multi-GB install) and seconds to import: only measuring needs it",
    "triton": "optional (cuda extra): only the Triton kernels need it",
    "numba": "a JIT compiler, about a second to import: only the CPU tiled GEMM needs it",
    "ray": "optional (ray extra): only the Ray executor needs it",
    "sklearn": "seconds to import (sklearn.ensemble): only fitting needs it; predictions run on numpy trees",
    "scipy": "only fits and rank statistics need it; perfscope estimate must not load it",
    "pandas": "perfscope estimate must not load it (columns are numpy arrays; frames only at the edges)",
    "pyarrow": "the store's format; perfscope estimate must not load it",
    "dash": "the dashboard only (with plotly and flask)",
    "plotly": "the dashboard only",
    "flask": "the dashboard's server only",
    "rich": "about 80 ms to import: only a command that draws a table, progress or log line loads it",
}
# project modules that load heavy packages at import -> why, and where they may be imported late
HEAVY_PROJECT = {
    "perfscope.collectors.triton_kernels.gemm": ("defines Triton kernels at import (loads triton, torch)", ""),
    "perfscope.collectors.triton_kernels.attention": ("defines Triton kernels at import (loads triton, torch)", ""),
    "perfscope.collectors.triton_kernels.conv": ("defines Triton kernels at import (loads triton, torch)", ""),
    "perfscope.dashboards.app": ("builds the Dash app (loads dash, plotly); `import perfscope.dashboards` "
                                 "stays light", "dashboards/__init__.py"),
    # the CLI imports every command module at start (Typer reads their signatures); a command
    # loads its workflow or package when it runs, so `perfscope estimate` and `--help` stay light
    "perfscope.workflows": ("a command's workflow, loaded when the command runs", "perfscope/commands/"),
    "perfscope.collectors": ("loads pydantic specs and the store (pyarrow)", "perfscope/commands/"),
    "perfscope.importers": ("loads pyarrow", "perfscope/commands/"),
    "perfscope.dashboards": ("loads pandas, dash and plotly", "perfscope/commands/"),
    "perfscope.store": ("loads pyarrow", "perfscope/commands/"),
    "perfscope.summary": ("loads pyarrow", "perfscope/commands/"),
}


@dataclass(frozen=True)
class LateImport:
    """An import statement inside a function."""

    path: str
    line: int
    function: str
    function_line: int
    module: str
    commented: bool  # a comment on the statement's line or the line above


def late_imports(source: str, path: str = "<source>") -> list[LateImport]:
    """Every import statement inside a function of ``source`` (nested functions count as their own)."""
    lines = source.splitlines()
    found: list[LateImport] = []

    def has_comment(lineno: int) -> bool:
        above = lines[lineno - 2].strip() if lineno >= 2 else ""
        return "#" in lines[lineno - 1] or above.startswith("#")

    def visit(node: ast.AST, function: ast.FunctionDef | ast.AsyncFunctionDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child)
                continue
            if function is not None and isinstance(child, (ast.Import, ast.ImportFrom)):
                modules = ([a.name for a in child.names] if isinstance(child, ast.Import)
                           else ["." * child.level + (child.module or "")])
                for module in modules:
                    found.append(LateImport(path, child.lineno, function.name, function.lineno, module,
                                            has_comment(child.lineno)))
            visit(child, function)

    visit(ast.parse(source), None)
    return found


def _under(module: str, name: str) -> bool:
    return module == name or module.startswith(name + ".")


def _allowed(item: LateImport) -> bool:
    if any(_under(item.module, name) for name in HEAVY):
        return True
    return any(_under(item.module, name) and item.path.startswith(place) for name, (_, place) in HEAVY_PROJECT.items())


def problems(imports: list[LateImport]) -> list[str]:
    """Late imports that are not allowed, and functions whose allowed late imports give no reason
    (one comment per function, on or above its first late import)."""
    out: list[str] = []
    first: dict[tuple[str, int], LateImport] = {}
    for item in imports:
        if not _allowed(item):
            out.append(f"{item.path}:{item.line} in {item.function}(): imports {item.module} inside a function "
                       "(move it to the top of the module)")
        else:
            first.setdefault((item.path, item.function_line), item)
    out += [f"{item.path}:{item.line} in {item.function}(): say why {item.module} is imported here"
            for item in first.values() if not item.commented]
    return out


def _all_late_imports() -> list[LateImport]:
    found: list[LateImport] = []
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            found += late_imports(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return found


def test_imports_inside_functions_are_only_heavy_optional_packages_with_a_reason():
    assert problems(_all_late_imports()) == []


def test_the_check_flags_a_project_import_inside_a_function():
    source = "def f():\n    from perfscope.store import ProfileStore  # why not\n    return ProfileStore\n"
    found = problems(late_imports(source, "models/example.py"))
    assert found == ["models/example.py:2 in f(): imports perfscope.store inside a function "
                     "(move it to the top of the module)"]


def test_the_check_allows_a_heavy_import_with_a_reason_and_flags_one_without():
    with_reason = "def f():\n    import torch  # only measuring needs it\n    return torch\n"
    without = "def g():\n    import torch\n\n    return torch\n"
    assert problems(late_imports(with_reason, "collectors/example.py")) == []
    assert problems(late_imports(without, "collectors/example.py")) == [
        "collectors/example.py:2 in g(): say why torch is imported here"]


def test_a_command_may_load_its_workflow_when_it_runs_but_a_library_module_may_not():
    source = "def run():\n    # loaded when the command runs\n    from perfscope.workflows.train import train\n"
    assert problems(late_imports(source, "perfscope/commands/example.py")) == []
    assert problems(late_imports(source, "models/example.py")) != []


def test_the_check_sees_imports_in_nested_functions_and_blocks():
    source = ("def outer():\n    def inner():\n        if True:\n            import json\n        return json\n"
              "    return inner\n")
    [found] = late_imports(source)
    assert (found.function, found.module, found.line) == ("inner", "json", 4)
