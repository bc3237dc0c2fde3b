"""Predictors of kernel latency and energy, with scikit-learn's estimator interface.

- ``RooflineModel``: the roofline bound over a fitted efficiency per group.
- ``LogLinearModel``: a log-linear fit on the roofline features.
- ``EnergyModel``: idle power x time + energy per FLOP + energy per byte.
- ``ForestModel``: random forests on roofline features (efficiency and log time).
- ``PaperBaselineModel``: the forest on raw shape and tile columns (a published baseline).
- ``ConformalWrapper``: a conformal prediction interval around any of them.
- ``save_bundle`` / ``load_bundle`` / ``ModelBundle``: models saved without pickle.

Names load on first use, so that ``import perfscope.models`` stays light (a loaded
model predicts with numpy alone). docs/models.md describes the models.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule; no submodule shares a name with an attribute here (an imported
# submodule would otherwise replace the attribute on the package)
_LAZY = {
    "RooflineModel": "roofline_model",
    "LogLinearModel": "roofline_model",
    "EnergyModel": "energy_model",
    "ForestModel": "forest",
    "PaperBaselineModel": "forest",
    "ConformalWrapper": "intervals",
    "ModelBundle": "persistence",
    "ModelFileError": "persistence",
    "save_bundle": "persistence",
    "load_bundle": "persistence",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'perfscope.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"perfscope.models.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
