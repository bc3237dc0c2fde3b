"""Numeric expressions of imports over a configuration: ``--flops``, ``--bytes`` and T1 launch sizes.

The bounded evaluator of ``perfscope.expressions`` (the one sweep filters use): literals,
names, arithmetic, comparisons and boolean operators only; a file or an option can
neither run code nor exhaust the machine. ``ProblemSize[i]`` (the T1 spelling) and
``problem_size[i]`` are read as ``problem_size_i``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from perfscope.errors import InvalidInputError
from perfscope.expressions import Expression, number_of

_SUBSCRIPT = re.compile(r"\b(?:ProblemSize|problem_size)\s*\[\s*(\d)\s*\]")
MAX_INT64 = 2**63 - 1


class NumericExpression:
    """A compiled expression; ``expr(names) -> float`` (``InvalidInputError`` when it is not a finite number)."""

    def __init__(self, text: str, what: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(f"{what}: empty expression")
        self.text = text
        self.what = what
        self._expression = Expression(_SUBSCRIPT.sub(r"problem_size_\1", text), what)

    def __call__(self, names: Mapping[str, Any]) -> float:
        """The value over ``names`` as a finite float."""
        return number_of(self._expression, names)

    def count(self, names: Mapping[str, Any]) -> int:
        """The value as a count (FLOPs, bytes, threads): a non-negative integer that fits int64."""
        value = self(names)
        if value < 0 or value > MAX_INT64:
            raise InvalidInputError(f"{self.what} {self.text!r} gives {value:g}: a count must be between 0 and 2**63-1")
        return round(value)
