"""The shared filters every page respects, and their form in the URL query string.

Filters are a mapping ``name -> list of selected values`` (strings, as they appear in
the URL); an empty list means "all". ``?dtype=fp32&dtype=bf16&device=h100-sxm`` selects
fp32 and bf16 rows on the H100. Pure functions: no Dash, no data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlencode

# (filter name in the URL and component ids, label, column of the dashboard frame)
FILTERS: tuple[tuple[str, str, str], ...] = (
    ("device", "Device", "device_key"),
    ("kernel", "Kernel family", "kernel"),
    ("implementation", "Implementation", "implementation"),
    ("dtype", "Dtype", "dtype"),
    ("batch", "Batch", "batch_size"),
    ("tile", "Tile", "tile"),
)
FILTER_NAMES: tuple[str, ...] = tuple(name for name, _, _ in FILTERS)
FILTER_COLUMNS: dict[str, str] = {name: column for name, _, column in FILTERS}

Filters = dict[str, list[str]]


def empty_filters() -> Filters:
    """Every filter present and empty (all rows)."""
    return {name: [] for name in FILTER_NAMES}


def normalise_filters(filters: Mapping[str, Sequence[object] | object | None] | None) -> Filters:
    """Known filter names only, each a sorted list of unique non-empty strings."""
    out = empty_filters()
    for name, values in (filters or {}).items():
        if name not in out or values is None:
            continue
        if isinstance(values, (str, int, float)):
            values = [values]
        out[name] = sorted({str(v) for v in values if v is not None and str(v) != ""})  # type: ignore[union-attr]
    return out


def filters_from_query(search: str | None) -> Filters:
    """Filters from a query string (``?a=1&a=2`` or ``?a=1,2``); unknown keys are ignored."""
    parsed = parse_qs((search or "").lstrip("?"), keep_blank_values=False)
    raw: dict[str, list[str]] = {}
    for name, values in parsed.items():
        raw[name] = [part for value in values for part in value.split(",") if part]
    return normalise_filters(raw)


def query_from_filters(filters: Mapping[str, Sequence[object]] | None) -> str:
    """The query string (with its leading ``?``, or empty) for ``filters``."""
    clean = normalise_filters(filters)
    pairs = [(name, value) for name in FILTER_NAMES for value in clean[name]]
    return "?" + urlencode(pairs) if pairs else ""


def filters_key(filters: Mapping[str, Sequence[object]] | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A hashable form of ``filters`` (for caches)."""
    clean = normalise_filters(filters)
    return tuple((name, tuple(clean[name])) for name in FILTER_NAMES)


def describe_filters(filters: Mapping[str, Sequence[object]] | None) -> str:
    """One line for titles and file names: "dtype=bf16,fp32; device=h100-sxm" or "all rows"."""
    clean = normalise_filters(filters)
    parts = [f"{name}={','.join(values)}" for name, values in clean.items() if values]
    return "; ".join(parts) if parts else "all rows"
