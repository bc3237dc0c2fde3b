"""Group labels of profile rows, for grouped splits and ranking contexts: one integer per
distinct shape, per context (shape and device), or per combination of tunable parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.columns import group_codes
from perfscope.errors import InvalidInputError
from perfscope.models.param_features import parameters

if TYPE_CHECKING:
    import pandas as pd

SHAPE_COLUMNS = (
    "kernel", "dtype", "batch", "m", "n", "k",
    "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s",
    "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups",
    "heads", "kv_heads", "seq_q", "seq_k", "head_dim", "causal",
)
"""What identifies a shape. Tile, layout, implementation, cache mode, params_json and
the device are left out on purpose: all variants of a shape are held out together."""


def shape_groups(rows: Any) -> np.ndarray:
    """One integer label per distinct shape (``SHAPE_COLUMNS`` present in ``rows``: columns or a DataFrame)."""
    columns = [c for c in SHAPE_COLUMNS if c in rows]
    if not columns:
        raise InvalidInputError("rows have none of the shape columns (kernel, m, n, k, ...)")
    return group_codes(rows, columns)


def context_labels(rows: pd.DataFrame) -> np.ndarray:
    """One integer per context: shape (``shape_groups``) and device."""
    device = rows["device_key"].astype(str).to_numpy() if "device_key" in rows else np.zeros(len(rows), dtype=str)
    return group_codes({"shape": shape_groups(rows), "device": device}, ["shape", "device"])


class ParameterGroups:
    """``parameter_groups`` of the named tunable parameters as a callable ``rows -> labels``:
    a ``ConformalWrapper``'s grouping that a saved model keeps (by the names)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = [str(n) for n in names]

    def __call__(self, rows: Any) -> np.ndarray:
        """The rows' group labels."""
        return parameter_groups(rows, self.names)

    def __repr__(self) -> str:
        return f"ParameterGroups({self.names!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParameterGroups) and other.names == self.names

    def __hash__(self) -> int:
        return hash(tuple(self.names))


def parameter_groups(rows: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """One integer per distinct combination of the tunable parameters ``names`` (``--group-by``)."""
    params = parameters(rows)
    missing = [n for n in names if n not in params]
    if missing:
        known = ", ".join(sorted(params)) or "none"
        raise InvalidInputError(f"--group-by names {', '.join(missing)}, which the rows do not have as parameters "
                             f"(they have: {known})")
    # values compared as text: 1 and "1" are one group, 1 and 1.0 two, a list is a value too
    return group_codes({n: [str(v) for v in params[n]] for n in names}, names)
