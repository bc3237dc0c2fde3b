"""The one internal form of rows: columns, a dict of column name -> 1-D numpy array.

Features, the roofline, the models and the estimates all work on columns. Other forms
are accepted only at the public edges and turned into columns once, here
(``as_columns``): a pandas DataFrame (what a reader or a user may hold), a pyarrow Table
(what the store reads), a mapping of column -> arrays, lists or scalars, or a list of
dicts (one per row). Cells are typed as pandas would type them: whole numbers as int64,
numbers with a missing cell as float64 with NaN, text as Python objects, a nullable
(extension) column's missing cells as None. numpy only: pandas and pyarrow are never
imported here (a frame or table can only exist once its library is loaded).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from perfscope.errors import InvalidInputError

Columns = dict[str, np.ndarray]
"""Rows as columns: column name -> 1-D numpy array, every array of one length."""


def as_columns(rows: Any) -> Columns:
    """``rows`` as a new dict of equal-length 1-D arrays (see the module docstring for what
    is accepted). The arrays of a mapping of arrays are shared, not copied."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(rows, pandas.DataFrame):
        # pandas' nullable (extension) columns hold pd.NA, which has no truth value: as objects with None
        return {str(name): (rows[name].to_numpy() if isinstance(rows[name].dtype, np.dtype)
                            else rows[name].to_numpy(dtype=object, na_value=None))
                for name in rows.columns}
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None and isinstance(rows, pyarrow.Table):
        return as_columns(rows.to_pandas())  # Arrow's nulls typed as pandas types them
    if isinstance(rows, Mapping):
        given = {str(name): _as_column(values) for name, values in rows.items()}
        sizes = {len(v) for v in given.values() if v.ndim == 1}
        size = (sizes.pop() if len(sizes) == 1 else
                1 if not sizes else columns_size({k: v for k, v in given.items() if v.ndim == 1}))
        return {name: v if v.ndim == 1 else repeat(v.item(), size) if v.dtype.kind == "O"
                else np.full(size, v.item(), dtype=v.dtype) for name, v in given.items()}
    if isinstance(rows, (list, tuple)) and all(isinstance(c, Mapping) for c in rows):
        names = dict.fromkeys(name for row in rows for name in row)
        return {str(name): _as_column([row.get(name) for row in rows]) for name in names}
    raise InvalidInputError("rows must be a list of dicts, a mapping of column -> values, or a DataFrame")


def columns_size(rows: Mapping[str, Any]) -> int:
    """The number of rows of columns (``InvalidInputError`` when the columns differ in length)."""
    sizes = {len(v) for v in rows.values()}
    if len(sizes) > 1:
        raise InvalidInputError(f"columns of different lengths ({', '.join(map(str, sorted(sizes)))}): one value per "
                             "row in every column")
    return sizes.pop() if sizes else 0


def take(rows: Mapping[str, np.ndarray], where: Any) -> Columns:
    """The rows at ``where`` (a boolean mask or positions) of every column."""
    return {name: np.asarray(values)[where] for name, values in rows.items()}


def group_codes(rows: Any, names: Any) -> np.ndarray:
    """One integer label per distinct combination of the ``names`` columns of ``rows``
    (columns or a DataFrame), numbered in order of first appearance (``pd.factorize``'s
    order); a missing cell is a value of its own."""
    picked = as_columns({name: rows[name] for name in names})
    size = columns_size(picked) if picked else 0
    keys = list(zip(*(values.tolist() for values in picked.values()), strict=True)) if picked else [()] * size
    index: dict[Any, int] = {}
    return np.array([index.setdefault(_hashable(key), len(index)) for key in keys], dtype=np.intp)


def _hashable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("\x00nan" if is_missing(v) else v for v in key)  # NaN != NaN: one label for every missing cell


def float_column(rows: Mapping[str, Any], name: str, size: int | None = None) -> np.ndarray:
    """Column ``name`` as a new float64 array: numbers as they are, numeric text parsed,
    anything else (None, other text) NaN, like ``pd.to_numeric(errors="coerce")``; all NaN
    (of ``size`` rows, default the rows') when there is no such column."""
    size = columns_size(rows) if size is None else size
    if name not in rows:
        return np.full(size, np.nan)
    values = np.asarray(rows[name])
    if values.dtype.kind in "iufb":
        return values.astype(float)
    return np.array([_to_float(v) for v in values.tolist()], dtype=float).reshape(size)


def repeat(value: Any, size: int) -> np.ndarray:
    """An object array holding ``value`` ``size`` times (``np.full`` would convert a string
    into a new str object per cell: ~20 ms per 100,000-row column)."""
    out = np.empty(size, dtype=object)
    out.fill(value)
    return out


def is_missing(value: Any) -> bool:
    """None or a float NaN (a missing cell)."""
    return value is None or (isinstance(value, float) and value != value)


def all_missing(values: np.ndarray) -> bool:
    """True when every cell of a column is missing (and for an empty column)."""
    if values.dtype.kind == "f":
        return bool(np.isnan(values).all())
    if values.dtype.kind == "O":
        return all(is_missing(v) for v in values.tolist())
    return len(values) == 0


def _as_column(values: Any) -> np.ndarray:
    """A list of cells, an array (kept as it is unless it holds text) or a scalar (a 0-d
    array) as a numpy array typed as pandas would type it: text as objects."""
    if not isinstance(values, (list, tuple)):
        if hasattr(values, "to_numpy") and not isinstance(getattr(values, "dtype", None), np.dtype):
            values = values.to_numpy(dtype=object, na_value=None)  # a nullable pandas column
        array = np.asarray(values)
        return array.astype(object) if array.dtype.kind in "US" else array
    missing = [is_missing(v) for v in values]
    if any(missing):
        present = [v for v, gone in zip(values, missing, strict=True) if not gone]
        if present and all(isinstance(v, (int, float, np.integer, np.floating))
                           and not isinstance(v, (bool, np.bool_)) for v in present):
            return np.array([math.nan if gone else float(v) for v, gone in zip(values, missing, strict=True)])
        return np.array([math.nan if gone else v for v, gone in zip(values, missing, strict=True)] + [None],
                        dtype=object)[:-1]  # the None keeps numpy from nesting sequences
    array = np.asarray(values)
    if array.dtype.kind in "USO" or array.ndim != 1:
        return np.array([*values, None], dtype=object)[:-1]
    return array


def _to_float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
