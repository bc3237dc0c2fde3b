"""The fp32 math mode a measurement ran under, read from the framework's switches.

Read while the case's switches are set (in ``build``, before ``release`` restores them):
torch's ``backends.cuda.matmul.allow_tf32`` (which ``set_float32_matmul_precision("high")``
also turns on) for matmuls, ``backends.cudnn.allow_tf32`` for convolutions. A CPU
multiplies fp32 as fp32 (``ieee``).
"""

from __future__ import annotations

from perfscope.dtypes import row_fp32_math

__all__ = ["row_fp32_math", "torch_fp32_math"]


def torch_fp32_math(device_kind: str, op: str = "matmul") -> str:
    """``tf32`` when torch may multiply fp32 ``op`` (``matmul`` or ``conv``) on tensor cores
    on a ``device_kind`` device now, else ``ieee``."""
    if device_kind != "cuda":
        return "ieee"
    import torch

    if op == "conv":
        return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"
    allowed = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    return "tf32" if allowed else "ieee"
