"""Numeric expressions over a configuration: ``--flops``, ``--bytes`` and T1 launch sizes.

The same safe evaluator as sweep filters (``perfscope.collectors.filters``): literals,
names, arithmetic, comparisons and boolean operators only; a file or an option cannot
run code. ``ProblemSize[i]`` (the T1 spelling) is read as ``problem_size_i``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from perfscope.collectors.filters import Filter
from perfscope.errors import UserInputError

_SUBSCRIPT = re.compile(r"\b(?:ProblemSize|problem_size)\s*\[\s*(\d)\s*\]")
MAX_INT64 = 2**63 - 1


class NumericExpression:
    """A compiled expression; ``expr(names) -> float`` (``UserInputError`` when it is not a finite number)."""

    def __init__(self, text: str, what: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise UserInputError(f"{what}: empty expression")
        self.text = text
        self.what = what
        self._filter = Filter(_SUBSCRIPT.sub(r"problem_size_\1", text))

    @property
    def names(self) -> set[str]:
        """The names the expression reads."""
        import ast

        return {node.id for node in ast.walk(self._filter._tree) if isinstance(node, ast.Name)}

    def __call__(self, names: Mapping[str, Any]) -> float:
        try:
            value = self._filter._eval(self._filter._tree, dict(names))
        except UserInputError as exc:
            raise UserInputError(f"{self.what} {self.text!r}: {str(exc).split(': ', 1)[-1]}") from None
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise UserInputError(f"{self.what} {self.text!r} cannot be evaluated: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserInputError(f"{self.what} {self.text!r} gives {value!r}, not a finite number")
        return float(value)

    def count(self, names: Mapping[str, Any]) -> int:
        """The value as a count (FLOPs, bytes, threads): a non-negative integer that fits int64."""
        value = self(names)
        if value < 0 or value > MAX_INT64:
            raise UserInputError(f"{self.what} {self.text!r} gives {value:g}: a count must be between 0 and 2**63-1")
        return round(value)
