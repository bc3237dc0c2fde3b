"""The fp32 math mode a measurement ran under, read from the framework's switches.

Read while the case's switches are set (in ``build``, before ``release`` restores them):
torch's fp32 precision of matmuls (``backends.cuda.matmul``: ``allow_tf32``, which
``set_float32_matmul_precision("high")`` also turns on, or ``fp32_precision``) and of
convolutions (``backends.cudnn``). A CPU multiplies fp32 as fp32 (``ieee``).
"""

from __future__ import annotations

from typing import Any

from perfscope.dtypes import row_fp32_math

__all__ = ["row_fp32_math", "torch_fp32_math"]


def torch_fp32_math(device_kind: str, op: str = "matmul") -> str:
    """``tf32`` when torch may multiply fp32 ``op`` (``matmul`` or ``conv``) on tensor cores
    on a ``device_kind`` device now, else ``ieee``."""
    if device_kind != "cuda":
        return "ieee"
    import torch  # optional, slow to import; only measuring needs it

    backends = torch.backends
    if op == "conv":
        return "tf32" if _allows_tf32(getattr(backends.cudnn, "conv", None), backends.cudnn, backends) else "ieee"
    return "tf32" if _allows_tf32(backends.cuda.matmul, None, backends) else "ieee"


def _allows_tf32(switch: Any, parent: Any, root: Any) -> bool:
    """Read torch's fp32 precision of ``switch`` (the new API, torch >= 2.9: ``ieee``, ``tf32``
    or ``none`` = as ``parent``, then ``root``), else its legacy ``allow_tf32`` flag.

    The new attribute first: it reflects writes through either API, whereas reading the
    legacy flag (or ``get_float32_matmul_precision``) raises once both APIs were used,
    as a user's ``set_float32_matmul_precision`` plus a collector's ``allow_tf32`` do.
    """
    for level in (switch, parent, root):
        precision = getattr(level, "fp32_precision", None) if level is not None else None
        if precision in ("ieee", "tf32"):
            return bool(precision == "tf32")
    if switch is not None and getattr(switch, "fp32_precision", None) is not None:
        return False  # "none" all the way up: torch's default, full fp32
    legacy = switch if switch is not None and hasattr(switch, "allow_tf32") else parent
    return bool(legacy.allow_tf32)
