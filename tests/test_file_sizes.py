"""Small modules with one job: no source file over 400 lines without a stated reason.

The library, collectors, models, dashboards, scripts and benches are checked; tests are
exempt (a test module grows with the behaviour it pins down). A file that must stay
longer goes into ``LONG_FILES`` with its reason (kept empty or nearly so; see
docs/development.md); an entry whose file has come back under the limit fails too, so the
list does not outlive its reasons.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED_DIRS = ("perfscope", "collectors", "models", "dashboards", "scripts", "bench")
MAX_LINES = 400

LONG_FILES: dict[str, str] = {}
"""Repository-relative path -> why the file is longer than ``MAX_LINES``."""


def _line_count(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _source_files() -> list[Path]:
    return sorted(p for d in CHECKED_DIRS for p in (ROOT / d).rglob("*.py")
                  if "__pycache__" not in p.parts and not any(part.startswith(".") for part in p.parts))


def test_the_checked_directories_hold_the_sources():
    files = {p.relative_to(ROOT).as_posix() for p in _source_files()}
    assert {"perfscope/store.py", "models/persistence.py", "dashboards/app.py"} <= files


def test_no_source_file_is_longer_than_the_limit_without_a_reason():
    too_long = {p.relative_to(ROOT).as_posix(): n for p in _source_files() if (n := _line_count(p)) > MAX_LINES}
    unexplained = {path: n for path, n in too_long.items() if path not in LONG_FILES}
    assert unexplained == {}, (f"over {MAX_LINES} lines: split into modules with one job each, or add the "
                               f"file to LONG_FILES with the reason: {unexplained}")


def test_every_exemption_is_still_needed_and_says_why():
    unneeded = [path for path in LONG_FILES if _line_count(ROOT / path) <= MAX_LINES]
    unexplained = [path for path, reason in LONG_FILES.items() if not reason.strip()]
    assert unneeded == [], f"under {MAX_LINES} lines now: drop them from LONG_FILES"
    assert unexplained == [], "give the reason each of these may be long"


def test_the_line_count_counts_every_line(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("a = 1\n\n# c\nb = 2")  # a last line without a newline counts too
    assert _line_count(path) == 4
