"""Page controls in the URL: a page's own settings beside the shared filters.

The query string holds the shared filters (``filters.py``) and, for the page shown, its
controls (``?dtype=bf16&x=m&group=tile``). A page's ``layout(**query)`` reads its
controls' starting values from the query; ``register_url_state`` writes them back when
they change, keeping the filters. A shared link therefore restores the page as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from perfscope.dashboards.filters import FILTER_NAMES

LIST_SEPARATOR = ","


def merge_query(search: str | None, page_values: Mapping[str, Any], page_keys: Sequence[str],
                defaults: Mapping[str, Any] | None = None) -> str:
    """``search`` with ``page_keys`` replaced by ``page_values`` (empty values and values equal
    to their ``defaults`` dropped: a page at its defaults keeps a clean URL), every other
    parameter (the filters) kept in order; with its leading ``?`` or empty."""
    kept = [(k, v) for k, v in parse_qsl((search or "").lstrip("?"), keep_blank_values=False)
            if k not in page_keys]
    for key in page_keys:
        text = query_value(page_values.get(key))
        if text and (defaults is None or key not in defaults or text != query_value(defaults[key])):
            kept.append((key, text))
    return "?" + urlencode(kept) if kept else ""


def page_params(search: str | None) -> list[tuple[str, str]]:
    """The parameters of ``search`` that are not shared filters (a page's controls)."""
    return [(k, v) for k, v in parse_qsl((search or "").lstrip("?")) if k not in FILTER_NAMES]


def with_page_params(query: str, search: str | None) -> str:
    """A filters query (``?a=1`` or empty) followed by the page parameters of ``search``."""
    extra = page_params(search)
    if not extra:
        return query
    return (query + "&" if query else "?") + urlencode(extra)


def query_value(value: Any) -> str:
    """A control's value as URL text (lists joined by commas, booleans as true/false)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(str(v) for v in value if v is not None and str(v) != "")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 and 1 are one value (the browser sends whole numbers as ints)
    return str(value)


def from_query(query: Mapping[str, Any], key: str, default: Any, *, kind: type = str,
               choices: Sequence[Any] | None = None) -> Any:
    """A control's starting value from the page's query arguments, ``default`` when absent
    or not valid (a wrong type, or not one of ``choices``): a bad link never breaks a page."""
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        if kind is list:
            value: Any = [part for part in str(raw).split(LIST_SEPARATOR) if part]
        elif kind is bool:
            value = str(raw).lower() in ("true", "1", "yes")
        else:
            value = kind(raw)
    except (TypeError, ValueError):
        return default
    if choices is not None:
        if kind is list:
            value = [v for v in value if v in choices]
            if not value:
                return default
        elif value not in choices:
            return default
    return value


def placeholder_options(value: Any) -> list[dict[str, Any]]:
    """Options holding a URL's value for a dropdown whose real options come from a callback:
    a dropdown drops a value that is not among its options, so without them the URL's value
    would be lost before the callback (which keeps it when valid) runs."""
    if value is None or value == "" or value == []:
        return []
    values = value if isinstance(value, list) else [value]
    return [{"label": str(v), "value": v} for v in values]


def register_url_state(app: Any, page_key: str, controls: Mapping[str, tuple[str, str]],
                       defaults: Mapping[str, Any] | None = None) -> Any:
    """Write a page's controls (URL key -> (component id, property)) into the URL when one
    changes, leaving out those at their ``defaults``. Returns the registered function."""
    from dash import Input, Output, State, no_update  # dash: the URL codec above works without it

    keys = list(controls)

    @app.callback(Output("url", "search", allow_duplicate=True),
                  *[Input(cid, prop) for cid, prop in controls.values()], State("url", "search"),
                  prevent_initial_call=True)
    def write_page_controls(*args: Any) -> Any:
        *values, search = args
        merged = merge_query(search, dict(zip(keys, values, strict=True)), keys, defaults)
        return no_update if merged == (search or "") else merged

    write_page_controls.__name__ = f"url_state_{page_key}"
    return write_page_controls
