"""Sweep filters: small arithmetic/boolean expressions over a case's configuration.

``"m * n * k <= 2**27 and dtype != 'fp16'"`` is evaluated with the configuration
columns as names. Only literals, names, arithmetic, comparisons and boolean
operators are allowed: a spec file cannot run code.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

from perfscope.errors import UserInputError

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}


class Filter:
    """A compiled filter expression; ``Filter(text)(columns) -> bool``."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self._tree = ast.parse(text, mode="eval").body
        except SyntaxError as exc:
            raise UserInputError(f"bad filter {text!r}: {exc.msg}") from None
        self._check(self._tree)

    def __call__(self, columns: dict[str, Any]) -> bool:
        return bool(self._eval(self._tree, columns))

    def _check(self, node: ast.AST) -> None:
        allowed = (ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Name, ast.Constant, ast.Load,
                   ast.And, ast.Or, ast.Tuple, ast.List, *_BINARY, *_COMPARE, *_UNARY)
        for child in ast.walk(node):
            if not isinstance(child, allowed):
                raise UserInputError(f"bad filter {self.text!r}: {type(child).__name__} is not allowed")

    def _eval(self, node: ast.AST, columns: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in columns:
                raise UserInputError(f"filter {self.text!r} names {node.id!r}, which this sweep's "
                                     f"configurations do not have ({', '.join(sorted(columns))})")
            return columns[node.id]
        if isinstance(node, (ast.Tuple, ast.List)):
            return [self._eval(e, columns) for e in node.elts]
        if isinstance(node, ast.BoolOp):
            values = (self._eval(v, columns) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, columns))
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, columns), self._eval(node.right, columns))
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, columns)
            for op, right_node in zip(node.ops, node.comparators):
                right = self._eval(right_node, columns)
                try:
                    if not _COMPARE[type(op)](left, right):
                        return False
                except TypeError:  # e.g. None < 4 for a column this case lacks
                    return False
                left = right
            return True
        raise UserInputError(f"bad filter {self.text!r}")
