"""perfscope: performance modelling and profiling of GPU kernels.

Importing perfscope is light: names load on first use (pyarrow with the store,
pandas only with ``estimate_many``, whose result is a DataFrame; a single ``estimate``
is numpy only), and torch, triton and dash only where they are needed.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Measurement": ("perfscope.schema", "Measurement"),
    "SCHEMA_VERSION": ("perfscope.schema", "SCHEMA_VERSION"),
    "ProfileStore": ("perfscope.store", "ProfileStore"),
    "estimate": ("perfscope.estimate", "estimate"),
    "estimate_many": ("perfscope.estimate", "estimate_many"),
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'perfscope' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    return getattr(importlib.import_module(module_name), attribute)
