"""Sweep filters: small arithmetic/boolean expressions over a case's configuration.

``"m * n * k <= 2**27 and dtype != 'fp16'"`` is evaluated with the configuration
columns as names by perfscope's bounded expression evaluator (``perfscope.expressions``):
only literals, names, arithmetic, comparisons and boolean operators are allowed, and
every result is size-bounded, so a spec file can neither run code nor exhaust the
machine. A comparison with a column the case lacks (None) is false; any other
evaluation error (``m / 0``, ``dtype + 1``) is a one-line ``InvalidInputError``.
"""

from __future__ import annotations

from typing import Any

from perfscope.expressions import Expression


class Filter:
    """A compiled filter expression; ``Filter(text)(columns) -> bool``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._expression = Expression(text, "filter")

    def __call__(self, columns: dict[str, Any]) -> bool:
        """Whether the configuration ``columns`` passes; ``InvalidInputError`` if it cannot be evaluated."""
        return bool(self._expression(columns))
