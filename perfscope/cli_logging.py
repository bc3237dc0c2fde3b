"""How the command line shows the library's log records: rich, on stderr.

Library modules log through ``logging.getLogger(__name__)`` and install no handlers;
the ``perfscope`` command attaches one handler to the ``perfscope`` logger, at the level
its global ``--verbose``/``--quiet`` options ask for. rich is imported only when a record
is shown, so a quiet command starts as fast as before.
"""

from __future__ import annotations

import logging

LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)  # by the number of -v


class LazyRichHandler(logging.Handler):
    """A ``rich.logging.RichHandler`` on stderr, built on the first record it shows."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Show ``record`` through rich."""
        if self._rich is None:
            from rich.console import Console  # ~80 ms; loaded only when something is drawn
            from rich.logging import RichHandler

            self._rich = RichHandler(console=Console(stderr=True), show_time=False, show_path=False,
                                     markup=False, rich_tracebacks=False)
            self._rich.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self._rich.emit(record)


def configure_logging(verbose: int = 0, quiet: bool = False) -> int:
    """Route ``perfscope`` log records to rich on stderr; returns the level set.

    Warnings by default, ``verbose`` 1 adds the steps (INFO), 2 every configuration
    (DEBUG); ``quiet`` shows errors only.
    """
    level = logging.ERROR if quiet else LEVELS[min(max(verbose, 0), len(LEVELS) - 1)]
    logger = logging.getLogger("perfscope")
    logger.handlers = [h for h in logger.handlers if not isinstance(h, LazyRichHandler)]
    logger.addHandler(LazyRichHandler())
    logger.setLevel(level)
    logger.propagate = False
    return level
