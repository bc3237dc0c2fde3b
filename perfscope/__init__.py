"""perfscope: performance modelling and profiling of GPU kernels.

The Python API (each name can be called any number of times)::

    import perfscope
    perfscope.estimate("gemm", "h100-sxm", "bf16", m=4096, n=4096, k=4096)     # a dict
    perfscope.estimate_many("gemm", {"m": ms, "n": ns, "k": ks}, "h100-sxm")   # a DataFrame
    store = perfscope.ProfileStore("profiles")                                # the Parquet store
    perfscope.load_bundle("profiles-model")                                   # a trained model bundle

Names:

- ``estimate``, ``estimate_many``: estimates for unmeasured configurations
  (``perfscope.workflows.estimate``).
- ``ProfileStore``, ``Measurement``, ``SCHEMA_VERSION``: the profile store and its row schema.
- ``RooflineModel``, ``EnergyModel``, ``ForestModel``, ``ConformalWrapper``,
  ``load_bundle``: the models (``perfscope.models``).

Importing perfscope is light: names load on first use (pyarrow with the store, pandas
only with ``estimate_many``, whose result is a DataFrame; a single ``estimate`` is numpy
only), and torch, triton and dash only where they are needed. See docs/architecture.md.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

# library modules log through logging.getLogger(__name__); the application decides where
# records go (the perfscope command: rich on stderr, see perfscope/cli_logging.py)
logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> (module, attribute). No module of the package shares a name with an attribute
# here: an imported submodule would otherwise replace the attribute on the package.
_LAZY = {
    "Measurement": ("perfscope.schema", "Measurement"),
    "SCHEMA_VERSION": ("perfscope.schema", "SCHEMA_VERSION"),
    "ProfileStore": ("perfscope.store", "ProfileStore"),
    "estimate": ("perfscope.workflows.estimate", "estimate"),
    "estimate_many": ("perfscope.workflows.estimate", "estimate_many"),
    "RooflineModel": ("perfscope.models.roofline_model", "RooflineModel"),
    "EnergyModel": ("perfscope.models.energy_model", "EnergyModel"),
    "ForestModel": ("perfscope.models.forest", "ForestModel"),
    "ConformalWrapper": ("perfscope.models.intervals", "ConformalWrapper"),
    "load_bundle": ("perfscope.models.persistence", "load_bundle"),
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'perfscope' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
