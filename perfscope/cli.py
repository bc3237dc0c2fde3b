"""The ``perfscope`` command: thin Typer commands over the library.

Each command lives in ``perfscope/commands/``; importing them registers them on the
app. User errors (``PerfscopeError``) become one line on stderr and a non-zero exit;
heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import sys

from perfscope.cli_app import app
from perfscope.commands import calibrate, collect, dashboard, doctor, estimate, imports, ls, train  # noqa: F401  (registers)
from perfscope.errors import PerfscopeError

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: run the app, mapping perfscope errors to exit codes.

    Click (inside Typer) handles usage errors itself (exit status 2); perfscope's own
    errors propagate out of it and become one line here.
    """
    try:
        app()
    except PerfscopeError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted: rows measured so far are saved", 130)


def _fail(message: str, code: int) -> None:
    print(f"perfscope: error: {message}", file=sys.stderr)
    sys.exit(code)
