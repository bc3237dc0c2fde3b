"""The ``perfscope`` command: thin Typer commands over the library.

Each command lives in ``perfscope/commands/``; importing them registers them on the
app. User errors (``PerfscopeError``) become one line on stderr and a non-zero exit;
heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import sys

from perfscope.cli_app import app
from perfscope.commands import calibrate, collect, dashboard, doctor, estimate, imports, ls, train  # noqa: F401  (registers)
from perfscope.errors import (
    DeviceUnavailableError,
    Interrupted,
    InvalidInputError,
    MeterUnavailableError,
    ModelFileError,
    PerfscopeError,
    StateError,
    StoreError,
)

__all__ = ["EXIT_CODES", "app", "exit_code", "main"]

EXIT_CODES: tuple[tuple[type[PerfscopeError], int], ...] = (
    (Interrupted, 130),
    # what the user asked for cannot be done as asked: a usage error, like Click's own
    (InvalidInputError, 2),
    (DeviceUnavailableError, 2),
    (StateError, 2),
    (StoreError, 2),
    (ModelFileError, 2),
    (MeterUnavailableError, 2),  # a meter was asked for (--energy) and cannot be honoured
)
"""Exit status per perfscope error class, first match wins; any other ``PerfscopeError`` exits 1."""


def exit_code(error: PerfscopeError) -> int:
    """The exit status the command line uses for ``error``."""
    return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)


def main() -> None:
    """Console entry point: run the app, mapping perfscope errors to exit codes.

    Click (inside Typer) handles usage errors itself (exit status 2); perfscope's own
    errors propagate out of it and become one line here.
    """
    try:
        app()
    except PerfscopeError as exc:
        _fail(cli_message(exc), exit_code(exc))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except SystemExit as exc:  # Typer turns Ctrl-C into a silent exit 130: say so
        if exc.code == 130 and _caused_by_interrupt(exc):
            print("perfscope: error: interrupted", file=sys.stderr)
        raise


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def cli_message(error: PerfscopeError) -> str:
    """The error's message, naming the option of the argument at fault where it has one."""
    message = str(error)
    if error.parameter:
        option = "--" + error.parameter.replace("_", "-")
        if option not in message:
            message += f" (option {option})"
    return message


def _fail(message: str, code: int) -> None:
    print(f"perfscope: error: {message}", file=sys.stderr)
    sys.exit(code)
