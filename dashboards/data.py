"""The dashboard's data layer: rows loaded once, features added once, filtered fast.

Loading (``loading``) reads only the columns the pages use, strings as categoricals;
``features`` resolves each device to a roofline device (``roofline_devices``) and adds
the roofline features once. Filtering is a cached index per filter combination, so a
page's several callbacks share one mask and a filter change touches only the columns a
figure needs; page results are cached per selection too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfscope.dashboards.features import MEASURED_STATUSES, UNTILED, add_features, add_gap, prepare_rows
from perfscope.dashboards.filters import FILTER_COLUMNS, FILTER_NAMES, filters_key
from perfscope.dashboards.loading import DASHBOARD_COLUMNS, find_sample_datasets, read_datasets, release_freed_memory
from perfscope.dashboards.roofline_devices import DeviceInfo, NoPeakDevice, ceilings_frame, resolve_device

# names other modules import from here (the data layer's one entry point)
__all__ = ["DASHBOARD_COLUMNS", "MEASURED_STATUSES", "UNTILED", "DashboardData", "DeviceInfo", "NoPeakDevice",
           "add_gap", "ceilings_frame", "distinct", "find_sample_datasets", "param_columns", "release_freed_memory",
           "resolve_device"]

MASK_CACHE_SIZE = 32
RESULT_CACHE_SIZE = 48  # page results (figures, tables) kept per selection
RELEASE_AFTER_ROWS = 200_000


@dataclass
class DashboardData:
    """All rows with their features, the filter options, and notes about how they were read."""

    rows: pd.DataFrame
    datasets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    devices: dict[str, DeviceInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._results: OrderedDict[tuple, Any] = OrderedDict()
        self.options: dict[str, list[str]] = self._filter_options()

    # -- construction ---------------------------------------------------------------
    @classmethod
    def load(cls, datasets: Iterable[str | Path] | None = None) -> DashboardData:
        """Read datasets (or the shipped sample when none) and add features.

        An unreadable dataset is reported in ``problems``, not raised, so one bad path
        does not keep the others from the dashboard.
        """
        rows, names, problems, notes = read_datasets(datasets)
        return cls.from_rows(rows, datasets=names, problems=problems, notes=notes)

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, *, datasets: Sequence[str] = (), problems: Sequence[str] = (),
                  notes: Sequence[str] = ()) -> DashboardData:
        """Dashboard data from a frame of rows (schema columns; missing ones become null)."""
        notes = list(notes)
        rows, devices = add_features(prepare_rows(rows), notes, datasets)
        data = cls(rows=rows, datasets=list(datasets), problems=list(problems), notes=notes, devices=devices)
        release_freed_memory(freeze=len(rows) >= RELEASE_AFTER_ROWS)
        return data

    # -- filtering ----------------------------------------------------------------------
    def index(self, filters: Mapping[str, Sequence[object]] | None) -> np.ndarray:
        """Positions of the rows that pass ``filters`` (cached per filter combination)."""
        key = filters_key(filters)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        mask = np.ones(len(self.rows), dtype=bool)
        for name, values in key:
            if values:
                mask &= self._mask(name, values)
        result = np.flatnonzero(mask)
        self._cache[key] = result
        if len(self._cache) > MASK_CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    def select(self, filters: Mapping[str, Sequence[object]] | None,
               columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The filtered rows, only ``columns`` (those that exist) when given."""
        return self.take(self.index(filters), self.rows.columns if columns is None else columns)

    def take(self, positions: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
        """The rows at ``positions`` (of the whole frame, as ``index`` gives them), only
        ``columns`` (those that exist): one take per column asked for, never a copy of the
        wide frame. The index holds the positions, as ``iloc`` would keep them."""
        names = [c for c in dict.fromkeys(columns) if c in self.rows.columns]
        if len(positions) == len(self.rows):
            return self.rows[names]  # copy-on-write: no copy
        return pd.DataFrame({c: self.rows[c].array.take(positions) for c in names},
                            index=pd.Index(positions), copy=False)

    def is_value(self, column: str, value: object, positions: np.ndarray) -> np.ndarray:
        """Mask over ``positions``: the rows whose ``column`` equals ``value`` (on a
        categorical, one comparison of integer codes)."""
        series = self.rows[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            code = series.cat.categories.get_indexer([value])[0]
            if code < 0:
                return np.zeros(len(positions), dtype=bool)
            return series.cat.codes.to_numpy()[positions] == code
        return series.to_numpy()[positions] == value

    def cached(self, name: str, filters: Mapping[str, Sequence[object]] | None, compute: Any, *extra: Any) -> Any:
        """``compute()``'s result for (``name``, the filters, ``extra``), kept for the last
        ``RESULT_CACHE_SIZE`` calls: going back to a selection is instant."""
        key = (name, filters_key(filters), extra)
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        value = compute()
        if len(self.rows) >= RELEASE_AFTER_ROWS:
            release_freed_memory(collect=False)  # a large selection's temporaries: back to the OS, not in RSS
        self._results[key] = value
        if len(self._results) > RESULT_CACHE_SIZE:
            self._results.popitem(last=False)
        return value

    def count(self, filters: Mapping[str, Sequence[object]] | None) -> int:
        """Number of rows passing ``filters``."""
        return int(len(self.index(filters)))

    def _mask(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        column = FILTER_COLUMNS[name]
        if column not in self.rows:
            return np.zeros(len(self.rows), dtype=bool)
        series = self.rows[column]
        if name == "batch":
            numbers = series.to_numpy(dtype=float)
            mask = np.zeros(len(numbers), dtype=bool)
            for value in values:
                if _is_number(value):
                    mask |= numbers == float(value)
            return mask
        if isinstance(series.dtype, pd.CategoricalDtype):
            # a lookup table over the small integer codes (np.isin sorts: 30x slower here)
            wanted = series.cat.categories.get_indexer(list(values))
            table = np.zeros(len(series.cat.categories) + 1, dtype=bool)  # the last slot: code -1 (missing)
            table[wanted[wanted >= 0]] = True
            return table[series.cat.codes.to_numpy()]
        return series.isin(list(values)).to_numpy()

    def _filter_options(self) -> dict[str, list[str]]:
        options: dict[str, list[str]] = {}
        for name in FILTER_NAMES:
            column = FILTER_COLUMNS[name]
            if column not in self.rows or not len(self.rows):
                options[name] = []
                continue
            series = self.rows[column]
            if isinstance(series.dtype, pd.CategoricalDtype):
                present = series.cat.remove_unused_categories().cat.categories
                values = [str(v) for v in present]
            else:
                values = [str(v) for v in pd.unique(series.dropna())]
            if name == "batch":
                values = [_format_number(float(v)) for v in sorted(float(v) for v in values)]
            else:
                values = sorted(values)
            options[name] = values
        return options

    def summary_line(self) -> str:
        """"12 rows from 1 dataset (cpu-amd-epyc)" for the header."""
        n = len(self.rows)
        devices = ", ".join(self.options.get("device", [])[:4]) or "no device"
        return f"{n:,} rows from {len(self.datasets)} dataset(s) ({devices})"


def param_columns(rows: pd.DataFrame) -> list[str]:
    """The ``param_<name>`` columns of a frame."""
    return [c for c in rows.columns if str(c).startswith("param_")]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def distinct(series: pd.Series) -> list[str]:
    """The distinct non-null values of a column as strings (fast on categoricals)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = np.unique(series.cat.codes.to_numpy())
        categories = series.cat.categories
        return [str(categories[c]) for c in codes if c >= 0]
    return sorted(str(v) for v in pd.unique(series.dropna()))
