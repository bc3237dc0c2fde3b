"""The memory guard: refuse a configuration whose inputs would not fit, before allocating.

A case that can say what it needs (``memory_need(device)``) is compared with what the
device has free now (CPU: ``MemAvailable``; GPU: ``torch.cuda.mem_get_info``) and, for
the float64 check that runs on the host, with the host's ``MemAvailable``. When the
need is above ``max_share`` of what is free, the row gets status ``too_large`` with
the figures in its reason and nothing is allocated; the sweep goes on.

All sizes are Python integers, so a size of 10^8 or 2^40 gives a large number, never
an overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perfscope.collectors.inputs import input_set_count
from perfscope.devices.base import Device
from perfscope.devices.cpu import mem_available_bytes
from perfscope.errors import InvalidInputError

DEFAULT_MAX_MEMORY_SHARE = 0.5
TOO_LARGE_STATUS = "too_large"
FLOAT32_BYTES = 4
FLOAT64_BYTES = 8


@dataclass(frozen=True)
class MemoryNeed:
    """What measuring one configuration allocates, in bytes (an estimate from the shapes).

    ``operand_bytes`` is one input set (inputs and the output buffer written in place),
    of which ``input_sets`` are built; ``output_bytes`` results a call allocates;
    ``workspace_bytes`` other device memory (float32 staging of the seeded inputs,
    unfused attention scores); ``host_check_bytes`` the float64 reference of the check,
    always on the host.
    """

    operand_bytes: int
    input_sets: int
    output_bytes: int = 0
    workspace_bytes: int = 0
    host_check_bytes: int = 0

    @property
    def device_bytes(self) -> int:
        """Bytes on the measuring device: the input sets, the outputs and the workspace."""
        return self.operand_bytes * self.input_sets + self.output_bytes + self.workspace_bytes


def gemm_memory_need(batch: int, m: int, n: int, k: int, bytes_per_element: int, cache_mode: str,
                     device: Device, check_rows: int) -> MemoryNeed:
    """A GEMM's need: (A, B, C) per input set, float32 staging of the larger input, and the
    float64 check of ``check_rows`` rows of C against A @ B."""
    set_bytes = bytes_per_element * batch * (m * k + k * n + m * n)
    rows = min(m, check_rows)
    return MemoryNeed(operand_bytes=set_bytes, input_sets=input_set_count(cache_mode, set_bytes, device),
                      workspace_bytes=FLOAT32_BYTES * batch * max(m * k, k * n),
                      host_check_bytes=FLOAT64_BYTES * batch * (rows * k + k * n + 2 * rows * n))


def parse_max_memory(text: str | float | None) -> float:
    """``--max-memory``: a share of free memory, ``0.5`` or ``50%``, in (0, 1]."""
    if text is None:
        return DEFAULT_MAX_MEMORY_SHARE
    raw = str(text).strip()
    try:
        share = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise InvalidInputError(f"bad memory limit {text!r}: give a share of free memory, e.g. 0.5 or 50%",
                                parameter="max_memory") from None
    if not 0 < share <= 1:
        raise InvalidInputError(f"the memory limit must be above 0 and at most 1 (100%), got {text!r}",
                                parameter="max_memory")
    return share


def too_large_reason(case: Any, device: Device, max_share: float = DEFAULT_MAX_MEMORY_SHARE,
                     host_free_bytes: int | None = None) -> str | None:
    """Why ``case`` must not be built on ``device`` (the figures), or None when it fits or
    its need or the free memory is unknown. ``host_free_bytes`` defaults to MemAvailable."""
    need_of = getattr(case, "memory_need", None)
    if need_of is None:
        return None
    need: MemoryNeed | None = need_of(device)
    if need is None:
        return None
    host_free = mem_available_bytes() if host_free_bytes is None else host_free_bytes
    if device.kind == "cpu":  # inputs and the check share one memory
        checks = [("memory", need.device_bytes + need.host_check_bytes, device.free_memory_bytes())]
    else:
        checks = [(f"{device.kind} memory", need.device_bytes, device.free_memory_bytes()),
                  ("host memory (float64 check)", need.host_check_bytes, host_free)]
    for where, needed, free in checks:
        if free is not None and needed > max_share * free:
            return (f"needs ~{_size(needed)} of {where} ({need.input_sets} input set(s) of "
                    f"{_size(need.operand_bytes)}, {_size(need.output_bytes)} output, "
                    f"{_size(need.workspace_bytes)} workspace, {_size(need.host_check_bytes)} check); "
                    f"{_size(free)} free, limit {max_share:.0%} of free memory: not allocated")
    return None


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover
