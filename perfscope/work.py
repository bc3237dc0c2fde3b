"""Work and traffic of configuration rows: FLOPs and minimum bytes per row.

The row's own ``flops``/``min_bytes`` are kept where present; missing ones are computed
from the configuration columns by ``perfscope.features`` (docs/formulas.md), one
vectorised call per kernel family and dtype (see ``perfscope.roofline`` for the list).
``RowColumns`` reads rows once (kernel and dtype factorised, other columns converted to
float on first use) for this module and for the roofline features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from perfscope import features
from perfscope.columns import as_columns, columns_size, float_column, is_missing
from perfscope.dtypes import DTYPES

Rows = Mapping[str, Any]
"""Configuration rows as columns (``perfscope.columns``); the public functions also take
anything ``perfscope.columns.as_columns`` reads (a DataFrame, a list of dicts)."""

_SMALL_ROWS = 256  # below this, kernel and dtype are factorised in plain Python


# What a missing configuration cell means: a number, or the name of the column to copy.
_COLUMN_DEFAULTS: dict[str, int | str] = {
    "batch": 1, "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0, "dil_h": 1, "dil_w": 1, "groups": 1,
    "kv_heads": "heads",  # no kv_heads: one KV head per query head
}


class RowColumns:
    """Columns read once: ``kernel`` and ``dtype`` factorised (string comparisons on 1M
    rows are slow), other columns converted to float64 on first use and shared (the work
    and the grid read the same)."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.size = columns_size(rows)
        self.kernel_codes, self.kernels = self._factorize("kernel")
        self.dtype_codes, self.dtypes = self._factorize("dtype")
        self._floats: dict[str, np.ndarray] = {}

    def _factorize(self, name: str) -> tuple[np.ndarray, list[Any]]:
        if name not in self.rows:
            return np.full(self.size, -1, dtype=np.intp), []
        values = self.objects(name)
        if self.size <= _SMALL_ROWS:
            uniques = list(dict.fromkeys(v for v in values if isinstance(v, str)))
            index = {v: i for i, v in enumerate(uniques)}
            return np.array([index.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.intp), uniques
        # a long column mapping: one comparison pass per distinct value (few: kernel families, dtypes)
        uniques = [v for v in dict.fromkeys(values.tolist()) if isinstance(v, str)]
        codes = np.full(self.size, -1, dtype=np.intp)
        for i, value in enumerate(uniques):
            codes[values == value] = i
        return codes, uniques

    def objects(self, name: str, at: np.ndarray | None = None) -> np.ndarray:
        """Column ``name`` (at positions ``at``, default all) as an object array of its cells."""
        values = np.asarray(self.rows[name], dtype=object)
        return values if at is None else values[at]

    def floats(self, name: str, default: float = math.nan) -> np.ndarray:
        """Column ``name`` as float64 (missing column or cell -> ``default``). Read-only."""
        if name not in self._floats:
            values = float_column(self.rows, name, self.size)
            values.flags.writeable = False
            self._floats[name] = values
        values = self._floats[name]
        return values if math.isnan(default) else np.where(np.isnan(values), default, values)

    def integers(self, name: str) -> np.ndarray | None:
        """Column ``name`` as int64 when it is stored as signed integers (no missing cells), else None."""
        if name not in self.rows:
            return None
        values = np.asarray(self.rows[name])
        return values if values.dtype.kind == "i" else None

    def flags(self, name: str, default: bool, at: np.ndarray) -> np.ndarray:
        """Column ``name`` at positions ``at`` as bool (missing cells -> ``default``)."""
        values = np.asarray(self.rows[name])[at]
        if values.dtype.kind == "b":
            return values
        if values.dtype.kind == "f":
            return np.where(np.isnan(values), default, values != 0)
        return np.array([default if is_missing(v) else bool(v) for v in values.tolist()], dtype=bool)

    def is_kernel(self, kernel: str) -> np.ndarray:
        """Rows of kernel family ``kernel``."""
        if kernel not in self.kernels:
            return np.zeros(self.size, dtype=bool)
        return self.kernel_codes == self.kernels.index(kernel)

    def per_dtype(self, mapping: dict[str, float]) -> np.ndarray:
        """``mapping[dtype]`` per row (NaN where the dtype is missing or unmapped)."""
        table = np.array([float(mapping.get(d, math.nan)) for d in self.dtypes] + [math.nan])
        return table[self.dtype_codes]  # code -1 (missing) picks the trailing NaN

    def work_and_traffic(self) -> tuple[np.ndarray, np.ndarray]:
        """(flops, min_bytes) of every row (see ``work_and_traffic``)."""
        return _work_and_traffic(self)


class _Config:
    """Configuration columns of the rows at ``target`` (one kernel family and dtype).

    ``valid`` returns the named columns as int64 arrays (missing cells filled from
    ``_COLUMN_DEFAULTS``), restricted to the rows where every one is known and an integer
    and that the family's ``*_is_valid`` accepts; ``used`` marks those rows (the others
    get NaN work). ``flag`` and ``text`` return other columns restricted to the same rows,
    so call them after ``valid``.
    """

    def __init__(self, columns: RowColumns, target: np.ndarray) -> None:
        self.columns, self.rows, self.target = columns, columns.rows, target
        self.used = np.ones(len(target), dtype=bool)

    def size(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(int64 values, usable) of column ``name`` at the target rows, defaults applied."""
        stored = self.columns.integers(name)
        if stored is not None:
            return stored[self.target].astype(np.int64, copy=False), np.ones(len(self.target), bool)
        values = self.columns.floats(name)[self.target]  # missing -> NaN
        usable = (np.abs(values) < 2.0**63) & (values == np.floor(values))  # False for NaN, inf, 2.5
        ints = np.where(usable, values, 1).astype(np.int64)  # 1: a placeholder, never used
        default = _COLUMN_DEFAULTS.get(name)
        missing = np.isnan(values)
        if default is not None and missing.any():
            fill, fill_usable = self.size(default) if isinstance(default, str) else (default, True)
            ints = np.where(missing, fill, ints)
            usable = np.where(missing, fill_usable, usable)
        return ints, usable

    def valid(self, is_valid: Callable[..., Any], *names: str) -> list[np.ndarray]:
        sizes = []
        for name in names:
            ints, usable = self.size(name)
            self.used &= usable
            sizes.append(ints)
        self.used &= is_valid(*sizes)
        return [s[self.used] for s in sizes]

    def flag(self, name: str, default: bool) -> np.ndarray:
        if name not in self.rows:
            return np.full(int(self.used.sum()), default)
        return self.columns.flags(name, default, self.target[self.used])

    def text(self, name: str) -> np.ndarray:
        if name not in self.rows:
            return np.full(int(self.used.sum()), None, dtype=object)
        return self.columns.objects(name, self.target[self.used])


def _gemm_work(config: _Config, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    batch, m, n, k = config.valid(features.gemm_is_valid, "batch", "m", "n", "k")
    return np.asarray(features.gemm_flops(batch, m, n, k)), np.asarray(features.gemm_min_bytes(batch, m, n, k, dtype))


def _conv_work(config: _Config, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    args = config.valid(features.conv2d_is_valid, "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r",
                        "conv_s", "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups")
    return np.asarray(features.conv2d_flops(*args)), np.asarray(features.conv2d_min_bytes(*args, dtype=dtype))


def _attention_work(config: _Config, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    batch, heads, kv_heads, seq_q, seq_k, head_dim = config.valid(
        features.attention_is_valid, "batch", "heads", "kv_heads", "seq_q", "seq_k", "head_dim")
    causal = config.flag("causal", default=False)
    fused = config.text("backend") != "math"  # torch's math backend materialises the scores; the others fuse
    return (np.asarray(features.attention_flops(batch, heads, seq_q, seq_k, head_dim, causal)),
            np.asarray(features.attention_min_bytes(batch, heads, kv_heads, seq_q, seq_k, head_dim, dtype, fused)))


_WORK: dict[str, Callable[[_Config, str], tuple[np.ndarray, np.ndarray]]] = {
    "gemm": _gemm_work, "conv": _conv_work, "attention": _attention_work,
}


def work_and_traffic(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(flops, min_bytes) per row as float arrays (``rows``: columns, or what ``as_columns`` reads).

    The row's own ``flops``/``min_bytes`` are kept where present; missing ones are
    computed by the ``perfscope.features`` functions of the row's kernel family (NaN for
    an unknown family or dtype, a missing size, or a configuration the family rejects).
    """
    return RowColumns(rows if isinstance(rows, dict) else as_columns(rows)).work_and_traffic()


def _work_and_traffic(columns: RowColumns) -> tuple[np.ndarray, np.ndarray]:
    flops = columns.floats("flops").copy()
    min_bytes = columns.floats("min_bytes").copy()
    missing = np.isnan(flops) | np.isnan(min_bytes)
    if not missing.any():
        return flops, min_bytes
    stride = len(columns.dtypes) + 1
    group = (columns.kernel_codes + 1) * stride + (columns.dtype_codes + 1)  # >= 0; 0 codes "missing"
    keys = np.flatnonzero(np.bincount(group[missing]))
    for key in keys:
        kcode, dcode = divmod(int(key), stride)
        if kcode == 0 or dcode == 0:
            continue  # no kernel or no dtype: nothing to compute from
        kernel, dtype = columns.kernels[kcode - 1], columns.dtypes[dcode - 1]
        if kernel not in _WORK or dtype not in DTYPES:
            continue  # a family or dtype perfscope has no formula for: not guessed
        target = np.flatnonzero(missing if len(keys) == 1 else missing & (group == key))
        config = _Config(columns, target)
        f, b = _WORK[kernel](config, dtype)
        done = target[config.used]
        flops[done] = np.where(np.isnan(flops[done]), f, flops[done])
        min_bytes[done] = np.where(np.isnan(min_bytes[done]), b, min_bytes[done])
    return flops, min_bytes
