"""Small, bounded expressions over named values: sweep filters and derived columns.

``m * n * k <= 2**27 and dtype != 'fp16'`` or ``2 * m * n * k`` are evaluated by
simpleeval with the names given. Only literals, names, arithmetic, comparisons and
boolean operators are allowed (no calls, attributes or subscripts), and every result
is bounded: an integer result may have at most ``MAX_INT_BITS`` bits, a power is
refused before it is computed when its result would be larger, and a string or list is
never repeated by ``*``. So a spec file or a command-line option can neither run code
nor make the evaluator take seconds or gigabytes. Every failure is a ``InvalidInputError``
(one line, exit status 2).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from typing import Any

import simpleeval

from perfscope.errors import InvalidInputError

MAX_INT_BITS = 256  # far above any real size product (2**256 ~ 1e77), far below a slow one
MAX_TEXT_CHARS = 2_000


class _TooLarge(Exception):
    pass


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise _TooLarge(f"an intermediate result has more than {MAX_INT_BITS} bits")
    if isinstance(value, float) and math.isinf(value):
        raise _TooLarge("an intermediate result overflows to infinity")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(value, bool)


def _numeric(op: Any, symbol: str) -> Any:
    def apply(a: Any, b: Any) -> Any:
        if not (_is_number(a) and _is_number(b)):
            if symbol == "+" and isinstance(a, str) and isinstance(b, str):
                return _bounded_text(a + b)
            raise TypeError(f"{symbol} needs numbers, got {type(a).__name__} and {type(b).__name__}")
        return _bounded(op(a, b))
    return apply


def _bounded_text(text: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise _TooLarge(f"a string result is longer than {MAX_TEXT_CHARS} characters")
    return text


def _power(base: Any, exponent: Any) -> Any:
    if not (_is_number(base) and _is_number(exponent)):
        raise TypeError(f"** needs numbers, got {type(base).__name__} and {type(exponent).__name__}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # bits of the result ~ exponent * log2(|base|): refuse before computing it
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise _TooLarge(f"{base} ** {exponent} has more than {MAX_INT_BITS} bits")
    try:
        return _bounded(operator.pow(base, exponent))
    except OverflowError:
        raise _TooLarge(f"{base} ** {exponent} overflows") from None


def _safe_compare(op: Any) -> Any:
    def compare(a: Any, b: Any) -> bool:
        try:
            return bool(op(a, b))
        except TypeError:  # e.g. None < 4 for a column this case lacks: not kept
            return False
    return compare


_OPERATORS: dict[type, Any] = {
    ast.Add: _numeric(operator.add, "+"), ast.Sub: _numeric(operator.sub, "-"),
    ast.Mult: _numeric(operator.mul, "*"), ast.Div: _numeric(operator.truediv, "/"),
    ast.FloorDiv: _numeric(operator.floordiv, "//"), ast.Mod: _numeric(operator.mod, "%"), ast.Pow: _power,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.Lt: _safe_compare(operator.lt), ast.LtE: _safe_compare(operator.le),
    ast.Gt: _safe_compare(operator.gt), ast.GtE: _safe_compare(operator.ge),
    ast.In: _safe_compare(lambda a, b: a in b), ast.NotIn: _safe_compare(lambda a, b: a not in b),
    ast.USub: lambda a: _bounded(-a) if _is_number(a) else _type_error("-", a),
    ast.UAdd: lambda a: a if _is_number(a) else _type_error("+", a),
    ast.Not: operator.not_,
}
_ALLOWED_NODES = (ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Name, ast.Constant,
                  ast.Load, ast.And, ast.Or, ast.Tuple, ast.List, *_OPERATORS)


def _type_error(symbol: str, value: Any) -> Any:
    raise TypeError(f"unary {symbol} needs a number, got {type(value).__name__}")


class Expression:
    """A parsed, checked expression; ``Expression(text, what)(names)`` evaluates it.

    ``what`` names the expression in messages ("filter", "--flops"). Parsing and the
    check of allowed syntax happen once, here; evaluation can be repeated cheaply.
    """

    def __init__(self, text: str, what: str = "expression") -> None:
        self.text, self.what = text, what
        if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
            raise InvalidInputError(f"bad {what}: give a text of at most {MAX_TEXT_CHARS} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise InvalidInputError(f"bad {what} {text!r}: {exc.msg}") from None
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES):
                raise InvalidInputError(f"bad {what} {text!r}: {type(node).__name__} is not allowed "
                                     "(only names, numbers, strings, arithmetic, comparisons, and/or/not)")
            if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
                raise InvalidInputError(f"bad {what} {text!r}: constant {node.value!r} is not allowed")
        self._tree = tree.body
        self.names = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)})
        self._evaluator = simpleeval.EvalWithCompoundTypes(operators=_OPERATORS, functions={}, names={})

    def __call__(self, names: Mapping[str, Any]) -> Any:
        """The value over ``names``; ``InvalidInputError`` (one line) if it cannot be evaluated."""
        missing = [n for n in self.names if n not in names]
        if missing:
            raise InvalidInputError(f"{self.what} {self.text!r} names {missing[0]!r}, which is not one of the "
                                 f"names it can use ({', '.join(sorted(names))})")
        self._evaluator.names = names
        try:
            return self._evaluator.eval(self.text, previously_parsed=self._tree)  # parsed and checked once
        except (_TooLarge, ArithmeticError, TypeError, ValueError, simpleeval.InvalidExpression) as exc:
            raise InvalidInputError(f"{self.what} {self.text!r} cannot be evaluated: {_describe(exc)}") from None
        except RecursionError:
            raise InvalidInputError(f"{self.what} {self.text!r} is nested too deeply") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    return str(exc) or type(exc).__name__


def evaluate_number(text: str, names: Mapping[str, Any], what: str = "expression") -> float:
    """Evaluate a numeric expression such as ``2 * m * n * k`` over ``names``; a finite float.

    For derived columns of imports (``--flops EXPR``, ``--bytes EXPR``): the same bounded
    evaluator as sweep filters. ``InvalidInputError`` (one line) for bad syntax, unknown
    names, a non-numeric or non-finite result, or a result past the bounds. To evaluate
    one text over many rows, build ``Expression(text, what)`` once and call it per row.
    """
    return number_of(Expression(text, what), names)


def number_of(expression: Expression, names: Mapping[str, Any]) -> float:
    """``expression(names)`` as a finite float (see ``evaluate_number``)."""
    value = expression(names)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{expression.what} {expression.text!r} gives {type(value).__name__} "
                             f"{value!r}, not a number")
    result = float(value)
    if not math.isfinite(result):
        raise InvalidInputError(f"{expression.what} {expression.text!r} gives {result}, not a finite number")
    return result
