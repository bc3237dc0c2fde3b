"""Grouped medians and quantiles on integer group keys, in numpy (sort once, index arithmetic).

pandas' groupby on a million rows with categorical keys spends seconds recoding
categories; here every group key is the combination of the columns' category codes, the
values are sorted within groups by one ``np.lexsort``, and each group's quantile is read
at its position (linear interpolation, as ``numpy.quantile`` and pandas default to).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def group_codes(frame: pd.DataFrame, columns: Sequence[str], *,
                labels: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """One group id per row from ``columns`` (missing values form their own group; ids in
    order of first appearance), and a frame of the columns' values for each id.

    A categorical column gives its integer codes as they are (no hashing of a million
    config ids); labels are written for the groups present only, and not at all (an empty
    frame) with ``labels=False``.
    """
    key = np.zeros(len(frame), dtype=np.int64)
    uniques: list[pd.Index] = []
    for column in columns:
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            codes, values = series.cat.codes.to_numpy().astype(np.int64), series.cat.categories
        else:
            codes, values = pd.factorize(series, use_na_sentinel=True)
            values = pd.Index(values)
        codes = np.where(codes < 0, len(values), codes).astype(np.int64)
        key = key * (len(values) + 1) + codes
        uniques.append(values)
    inverse, distinct = pd.factorize(key)  # hashing: no sort of a million keys
    if not labels:
        return inverse.astype(np.int64), pd.DataFrame()
    texts = {}
    remaining = np.asarray(distinct).copy()
    for column, values in reversed(list(zip(columns, uniques, strict=True))):
        size = len(values) + 1
        code = remaining % size
        remaining //= size
        text = np.full(len(code), "", dtype=object)
        present = code < len(values)
        text[present] = values[code[present]].astype(str).to_numpy(dtype=object)
        texts[column] = text
    table = pd.DataFrame({c: texts[c] for c in columns})
    return inverse.astype(np.int64), table


FEW_GROUPS = 16  # up to this many groups, quantiles per group by selection instead of one sort


def group_quantiles(groups: np.ndarray, values: np.ndarray, quantiles: Sequence[float],
                    n_groups: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows per group, array [group, quantile]) of the finite ``values`` per group id."""
    ok = np.isfinite(values)
    groups, values = groups[ok], values[ok]
    n_groups = int(groups.max()) + 1 if n_groups is None and groups.size else (n_groups or 0)
    counts = np.bincount(groups, minlength=n_groups)
    out = np.full((n_groups, len(quantiles)), np.nan)
    if not groups.size:
        return counts, out
    if n_groups <= FEW_GROUPS:
        # a handful of groups (a summary by device, dtype and regime): one selection per group and
        # numpy's partition-based quantile, instead of sorting every value (3x faster at 500k rows)
        for group in np.flatnonzero(counts):
            out[group] = np.quantile(values[groups == group], quantiles)
        return counts, out
    # one integer sort: the group, then the value's rank within all values (cheaper than lexsort)
    rank = np.empty(values.size, dtype=np.int64)
    rank[np.argsort(values)] = np.arange(values.size)
    order = np.argsort(groups.astype(np.int64) * values.size + rank)
    ordered = values[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = counts > 0
    for j, q in enumerate(quantiles):
        position = starts[present] + q * (counts[present] - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, starts[present] + counts[present] - 1)
        weight = position - low
        out[present, j] = ordered[low] * (1 - weight) + ordered[high] * weight
    return counts, out
