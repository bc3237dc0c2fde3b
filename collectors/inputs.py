"""Inputs for measurements: seeded, uniform in [-1, 1], rotated in cold mode."""

from __future__ import annotations

import math
from typing import Any

from perfscope.devices.base import Device
from perfscope.dtypes import DtypeInfo

MAX_INPUT_SETS = 8192  # small shapes need many sets to cover 2x a large LLC
MAX_INPUT_BYTES_SHARE = 0.25  # never use more than this share of device memory for inputs


def torch_dtype(info: DtypeInfo) -> Any:
    """The torch storage dtype for a perfscope dtype."""
    import torch  # optional, slow to import; only measuring needs it

    return getattr(torch, info.torch_name)


def seeded_uniform(shape: tuple[int, ...], dtype: Any, device: str, seed: int) -> Any:
    """A tensor uniform in [-1, 1] from a seeded generator, never zeros (they run faster)."""
    import torch  # optional, slow to import; only measuring needs it

    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.rand(shape, generator=gen, device=device, dtype=torch.float32)
    return x.mul_(2).sub_(1).to(dtype)


def input_set_count(cache_mode: str, set_bytes: int, device: Device) -> int:
    """How many input sets to rotate: 1 when warm; enough to cover twice the
    last-level cache when cold (bounded by ``MAX_INPUT_SETS`` and device memory)."""
    if cache_mode == "warm":
        return 1
    llc = device.describe().last_level_cache_bytes or 64 * 2**20
    wanted = max(2, math.ceil(2 * llc / max(set_bytes, 1)))
    memory = device.describe().memory_bytes
    if memory:
        wanted = min(wanted, max(1, int(memory * MAX_INPUT_BYTES_SHARE // max(set_bytes, 1))))
    return min(wanted, MAX_INPUT_SETS)
