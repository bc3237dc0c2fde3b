"""Reading datasets for the dashboard: only the columns the pages use, strings as categoricals.

``read_datasets`` returns the rows of every readable dataset (with a ``dataset`` column),
the datasets read, the problems met and notes for the header; an unreadable dataset is
reported, not raised, so one bad path does not keep the others from the dashboard.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from perfscope.errors import PerfscopeError
from perfscope.schema import COLUMN_NAMES
from perfscope.store import ProfileStore, find_datasets
from perfscope.store_files import is_param_column

# The columns the pages read (everything but raw samples and free-form extras).
DASHBOARD_COLUMNS: tuple[str, ...] = (
    "run_id", "config_id", "measured_at", "device_key", "source",
    "kernel", "implementation", "dtype", "fp32_math", "cache_mode", "batch", "m", "n", "k",
    "conv_n", "conv_c", "conv_h", "conv_w", "conv_k", "conv_r", "conv_s",
    "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups",
    "heads", "kv_heads", "seq_q", "seq_k", "head_dim", "causal", "backend",
    "tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages",
    "status", "reason", "timing_method", "time_median_ms", "time_p10_ms", "time_p90_ms",
    "time_ci_low_ms", "time_ci_high_ms", "time_ci_rel", "noisy",
    "flops", "min_bytes", "achieved_flops_per_s",
    "energy_method", "energy_is_estimate", "energy_gross_j", "energy_net_j", "power_avg_w",
    "energy_reason", "energy_quality",
    "host", "cpu_model", "threads", "perfscope_version", "torch_version", "cuda_version", "triton_version",
    "device_kind", "device_name", "driver_version", "sm_count", "power_limit_w", "throttled",
    "declared_peak_flops_per_s", "declared_bandwidth_bytes_per_s",
)
assert set(DASHBOARD_COLUMNS) <= set(COLUMN_NAMES), "dashboard columns must be schema columns"



def read_datasets(datasets: Iterable[str | Path] | None) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    """(rows, dataset names, problems, notes) of ``datasets``, or of the shipped sample when none."""
    paths = [Path(p) for p in datasets] if datasets else find_sample_datasets()
    notes: list[str] = []
    if not datasets:
        notes.append("no dataset given: showing the sample profile shipped with perfscope" if paths else
                     "no data: start the dashboard with a dataset (perfscope dashboard DATASET); "
                     "collect one with `perfscope collect`")
    tables, problems, names = [], [], []
    for path in paths:
        try:
            store = ProfileStore(path)
            result = store.read([*DASHBOARD_COLUMNS, *_param_columns(store)])
        except PerfscopeError as exc:
            problems.append(f"{path}: {exc}")
            continue
        problems.extend(str(p) for p in result.problems)
        if result.table.num_rows:
            label = pa.DictionaryArray.from_arrays(pa.array(np.zeros(result.table.num_rows, dtype=np.int32)),
                                                   pa.array([str(path)]))
            tables.append(result.table.append_column("dataset", label))
        names.append(str(path))
    if tables:
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        rows = table.to_pandas(strings_to_categorical=True, self_destruct=True, split_blocks=True)
    else:
        rows = pd.DataFrame({c: pd.Series(dtype=float) for c in DASHBOARD_COLUMNS})
        if paths:
            notes.append("the datasets hold no rows")
    return rows, names, problems, notes


def find_sample_datasets() -> list[Path]:
    """Datasets shipped under ``perfscope.data/samples`` (directories with the dataset marker)."""
    try:
        root = resources.files("perfscope.data").joinpath("samples")
        base = Path(str(root))
    except (ModuleNotFoundError, TypeError):
        return []
    if not base.is_dir():
        return []
    return find_datasets(base)


def _param_columns(store: Any) -> list[str]:
    """The tunable-parameter columns (``param_<name>``) of a dataset's files, from their schemas."""
    names: dict[str, None] = {}
    for path in store.files():
        try:
            names.update(dict.fromkeys(n for n in pq.read_schema(path).names if is_param_column(n)))
        except (OSError, ValueError):
            continue  # an unreadable file: read() reports it
    return list(names)


def release_freed_memory(*, collect: bool = True, freeze: bool = False) -> None:
    """Give memory freed while loading back to the operating system (Arrow's pool and, on
    glibc, malloc's free lists), so the server's RSS is what the data holds, not its peak.

    ``collect=False`` skips the garbage collector's full pass (0.3-0.5 s with a page cache
    of figures): a callback's temporaries are numpy arrays freed by reference counting.
    ``freeze=True`` (after loading a large dataset) keeps what survives out of later full
    passes, which would otherwise walk it (a million config-id strings) during callbacks.
    """
    if collect:
        gc.collect()
        if freeze:
            gc.freeze()
    try:
        pa.default_memory_pool().release_unused()
    except (ImportError, AttributeError):
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim
