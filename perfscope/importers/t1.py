"""The T1 kernel description (the auto-tuning community's input format): launch geometry.

A T1 file (``KernelSpecification``) gives the thread block (``LocalSize`` X/Y/Z) as
expressions over the tunable parameters, and the grid in one of two ways. With
``GridDivX/Y/Z`` (lists of divisor expressions) and a ``ProblemSize``, the grid is what
Kernel Tuner launches: ceil(problem size / product of the divisors) per axis. Else
``GlobalSize`` X/Y/Z: with ``GlobalSizeType`` ``"CUDA"`` it counts blocks, otherwise
(OpenCL) threads, so blocks = ceil(global / local). From these every imported
configuration gets its threads per block and blocks per launch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfscope.errors import InvalidInputError
from perfscope.importers.expressions import NumericExpression

AXES = ("X", "Y", "Z")
MAX_T1_BYTES = 16 * 2**20


@dataclass(frozen=True)
class LaunchGeometry:
    """Block and grid expressions of a T1 kernel, evaluated per configuration."""

    local: tuple[NumericExpression, ...]
    global_: tuple[NumericExpression, ...]
    global_counts_blocks: bool
    kernel_name: str | None
    problem_size: tuple[int, ...] | None
    grid_div: tuple[tuple[NumericExpression, ...], ...] | None = None

    def launch(self, params: dict[str, Any]) -> dict[str, int]:
        """``threads_per_block`` and ``blocks`` of one configuration."""
        block = [expr.count(params) for expr in self.local]
        if min(block) < 1:
            raise InvalidInputError(f"T1 LocalSize gives an empty block {block} for {params}")
        if self.grid_div is not None and self.problem_size:
            sizes = list(self.problem_size) + [1] * (3 - len(self.problem_size))
            divisors = [math.prod(expr.count(params) for expr in axis) for axis in self.grid_div]
            if min(divisors) < 1:
                raise InvalidInputError(f"T1 GridDiv gives a zero divisor for {params}")
            grid = [math.ceil(s / d) for s, d in zip(sizes, divisors, strict=True)]
        else:
            size = [expr.count(params) for expr in self.global_]
            grid = size if self.global_counts_blocks else [math.ceil(g / b) for g, b in zip(size, block, strict=True)]
        return {"threads_per_block": math.prod(block), "blocks": math.prod(grid)}


def read_t1(path: str | Path) -> LaunchGeometry:
    """The launch geometry of a T1 file (``InvalidInputError`` for a file that is not one)."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_T1_BYTES:
            raise InvalidInputError(f"{file.name} is larger than a T1 description can be ({MAX_T1_BYTES} bytes)")
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"cannot read the T1 file {file}: {str(exc).splitlines()[0] if str(exc) else exc!r}") \
            from None
    spec = data.get("KernelSpecification") if isinstance(data, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("LocalSize"), dict) \
            or not isinstance(spec.get("GlobalSize"), dict):
        raise InvalidInputError(f"{file.name} is not a T1 kernel description: no KernelSpecification with LocalSize "
                             "and GlobalSize")
    local = tuple(_expression(spec["LocalSize"], axis, "T1 LocalSize") for axis in AXES)
    global_ = tuple(_expression(spec["GlobalSize"], axis, "T1 GlobalSize") for axis in AXES)
    problem = spec.get("ProblemSize")
    sizes = tuple(problem) if isinstance(problem, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in problem) else None
    name = spec.get("KernelName")
    grid_div = None
    if any(f"GridDiv{axis}" in spec for axis in AXES):
        grid_div = tuple(_divisors(spec.get(f"GridDiv{axis}"), axis) for axis in AXES)
    return LaunchGeometry(local, global_, str(spec.get("GlobalSizeType", "CUDA")).upper() == "CUDA",
                          name if isinstance(name, str) else None, sizes, grid_div)


def _divisors(values: Any, axis: str) -> tuple[NumericExpression, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or len(values) > 16:
        raise InvalidInputError(f"T1 GridDiv{axis} must be a list of expressions, got {str(values)[:60]}")
    return tuple(_expression({axis: v}, axis, f"T1 GridDiv{axis}") for v in values)


def _expression(sizes: dict[str, Any], axis: str, what: str) -> NumericExpression:
    value = sizes.get(axis, "1")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInputError(f"{what} {axis} is {value!r}: expected an expression or an integer")
    return NumericExpression(str(value), f"{what} {axis}")
