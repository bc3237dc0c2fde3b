"""Triton kernels with explicit tiles (GEMM, fused attention, implicit-GEMM conv2d).

The kernel modules (``gemm``, ``attention``, ``conv``) import triton and torch at import;
this package file and ``cases`` do not, so sweeps can be planned without them.

Kernels are timed on CUDA GPUs. Their correctness is tested on the CPU with Triton's
interpreter (``TRITON_INTERPRET=1``). Triton reads that variable whenever ``@triton.jit``
decorates a function, its own library functions (``tl.cdiv``, ``tl.sum``, ...) included,
so it must be set before triton is first imported in the process; ``use_interpreter()``
sets it when that is still possible. Under the interpreter the launchers take CPU
tensors and ignore ``num_warps`` and ``num_stages``. One more difference: the interpreter
multiplies bf16 operands of ``tl.dot`` as raw bit patterns (triton-lang/triton#11584), so
there, and only there, the kernels convert bf16 operands to fp32 before ``tl.dot``
(exact: bf16 products fit in fp32, and the GPU accumulates in fp32 too).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from perfscope.errors import InvalidInputError

MIN_DOT_BLOCK = 16  # tl.dot needs every block dimension >= 16
INPUT_PRECISIONS = ("ieee", "tf32")  # how tl.dot multiplies fp32 inputs
ATTENTION_HEAD_DIMS = (16, 32, 64, 128)  # powers of two: tl.arange needs one, tl.dot needs >= 16


def use_interpreter() -> bool:
    """Ask for Triton's CPU interpreter in this process; True when it is in effect.

    Sets ``TRITON_INTERPRET=1`` unless triton was already imported without it
    (``torch.utils.flop_counter`` imports triton, for one): then it returns False and
    changes nothing, since triton's own library functions are already compiled-mode and
    the kernels can only be interpreted in a fresh process started with the variable set.
    """
    language = sys.modules.get("triton.language")
    if language is not None and type(language.cdiv).__name__ != "InterpretedFunction":
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    return True


def check_device(kernel: object, *tensors: Any) -> bool:
    """Check that ``tensors`` share one device that ``kernel`` can run on; return whether
    ``kernel`` runs under the interpreter (CPU tensors) rather than compiled (CUDA tensors)."""
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise InvalidInputError(f"all tensors must be on one device; got {sorted(map(str, devices))}")
    interpreted = type(kernel).__name__ == "InterpretedFunction"
    if not interpreted and tensors[0].device.type != "cuda":
        raise InvalidInputError(f"Triton kernels run on CUDA tensors (got {tensors[0].device}); to run them "
                             "on the CPU set TRITON_INTERPRET=1 before triton is first imported")
    return interpreted


def bind_launch(kernel: Any, args: tuple[Any, ...], meta: dict[str, Any], out: Any) -> Callable[[], Any]:
    """A function launching ``kernel`` (already indexed by its grid) with ``args`` and
    ``meta``, returning ``out``. Triton launches on the current CUDA device, so for CUDA
    tensors the launch runs with ``out``'s device made current (sweeps on ``cuda:1``)."""
    if out.device.type != "cuda":
        def launch() -> Any:
            kernel(*args, **meta)
            return out

        return launch
    import torch  # optional, slow to import; only measuring needs it

    index = out.device.index

    def launch_on_device() -> Any:
        with torch.cuda.device(index):
            kernel(*args, **meta)
        return out

    return launch_on_device


def is_power_of_two(value: object) -> bool:
    """True for the ints 1, 2, 4, 8, ... (bools excluded)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and value & (value - 1) == 0


def check_block(name: str, value: object, minimum: int = MIN_DOT_BLOCK) -> int:
    """A tile size that Triton can compile in principle: a power of two >= ``minimum``.

    Raises ``InvalidInputError`` otherwise (a tile that is valid in principle but does not
    fit a given GPU is found at launch, not here).
    """
    if not is_power_of_two(value) or value < minimum:
        raise InvalidInputError(f"{name} must be a power of two >= {minimum} (tl.dot blocks), got {value!r}")
    return value


def check_launch(num_warps: object, num_stages: object, group_m: object | None = None) -> None:
    """Validate launch parameters: ``num_warps`` a power of two in 1..32, ``num_stages`` >= 1,
    ``group_m`` (when given) >= 1; ``InvalidInputError`` otherwise."""
    if not is_power_of_two(num_warps) or num_warps > 32:
        raise InvalidInputError(f"num_warps must be a power of two from 1 to 32, got {num_warps!r}")
    if not isinstance(num_stages, int) or isinstance(num_stages, bool) or num_stages < 1:
        raise InvalidInputError(f"num_stages must be a positive integer, got {num_stages!r}")
    if group_m is not None and (not isinstance(group_m, int) or isinstance(group_m, bool) or group_m < 1):
        raise InvalidInputError(f"group_m must be a positive integer, got {group_m!r}")


def check_input_precision(value: str) -> str:
    """``"ieee"`` (true fp32 multiplies) or ``"tf32"`` (tensor cores, 10-bit mantissa)."""
    if value not in INPUT_PRECISIONS:
        raise InvalidInputError(f"input_precision must be one of {', '.join(INPUT_PRECISIONS)}, got {value!r}")
    return value
