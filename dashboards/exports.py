"""Row exports served as streamed HTTP downloads (CSV and Parquet), chunk by chunk.

The selected rows are never copied whole: each chunk of row positions is taken from the
loaded frame, written and dropped, so an export of a million rows holds one chunk at a
time beside the data the dashboard already has. CSV cells that a spreadsheet would run
as a formula (text starting with ``= + - @``, tab or carriage return) are prefixed with
``'``, as OWASP's CSV-injection advice says.
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from flask import Response, request, send_file

from perfscope.dashboards.data import DashboardData
from perfscope.dashboards.filters import filters_from_query

CHUNK_ROWS = 50_000
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
EXPORT_ROUTE = "/_perfscope/export"


def escape_formula_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with text cells that start with a formula character prefixed by ``'``.

    Numbers are left alone (a negative number is not a formula); only text columns
    (object, string or categorical) are looked at, categoricals by their categories.
    """
    out = frame
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            categories = series.cat.categories
            if categories.dtype.kind != "O":
                continue
            escaped = [_escape(v) for v in categories]
            if any(a is not b for a, b in zip(escaped, categories, strict=True)):
                out = out.copy() if out is frame else out
                out[column] = series.cat.rename_categories(escaped)
        elif series.dtype.kind == "O" or pd.api.types.is_string_dtype(series.dtype):
            values = series.to_numpy(dtype=object)
            risky = np.fromiter((isinstance(v, str) and v.startswith(FORMULA_PREFIXES) for v in values),
                                dtype=bool, count=len(values))
            if risky.any():
                out = out.copy() if out is frame else out
                values = values.copy()
                values[risky] = ["'" + v for v in values[risky]]
                out[column] = values
    return out


def _escape(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_chunks(data: DashboardData, search: str | None, columns: Sequence[str],
               chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """The rows selected by the URL query ``search`` as CSV text, one chunk at a time."""
    positions = data.index(filters_from_query(search))
    present = [c for c in dict.fromkeys(columns) if c in data.rows.columns]
    header = True
    if not len(positions):
        yield ",".join(present) + "\n"
        return
    for start in range(0, len(positions), chunk_rows):
        chunk = data.rows[present].iloc[positions[start:start + chunk_rows]]
        buffer = io.StringIO()
        escape_formula_cells(chunk).to_csv(buffer, index=False, header=header)
        header = False
        yield buffer.getvalue()


def parquet_file(data: DashboardData, search: str | None, columns: Sequence[str],
                 chunk_rows: int = CHUNK_ROWS) -> str:
    """Write the selected rows to a temporary Parquet file (row group per chunk); its path.

    The caller removes the file once it has been sent.
    """
    positions = data.index(filters_from_query(search))
    present = [c for c in dict.fromkeys(columns) if c in data.rows.columns]
    handle, path = tempfile.mkstemp(prefix="perfscope-export-", suffix=".parquet")
    os.close(handle)
    schema = pa.Schema.from_pandas(data.rows[present].iloc[:0], preserve_index=False)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(positions), chunk_rows):
            chunk = data.rows[present].iloc[positions[start:start + chunk_rows]]
            writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
    return path


def register_export_routes(server: object, data: DashboardData, columns: Sequence[str]) -> None:
    """Add ``/_perfscope/export.csv`` and ``.parquet`` (query string = the page's filters)."""
    def export_csv() -> Response:
        search = request.query_string.decode("utf-8", "replace")
        response = Response(csv_chunks(data, search, columns), mimetype="text/csv")
        response.headers["Content-Disposition"] = 'attachment; filename="perfscope-rows.csv"'
        return response

    def export_parquet() -> Response:
        search = request.query_string.decode("utf-8", "replace")
        path = parquet_file(data, search, columns)
        handle = open(path, "rb")  # noqa: SIM115 - closed by the response
        os.unlink(path)  # the open handle keeps the data readable until it is sent (POSIX)
        return send_file(handle, mimetype="application/vnd.apache.parquet", as_attachment=True,
                         download_name="perfscope-rows.parquet")

    server.add_url_rule(EXPORT_ROUTE + ".csv", "perfscope_export_csv", export_csv)  # type: ignore[attr-defined]
    server.add_url_rule(EXPORT_ROUTE + ".parquet", "perfscope_export_parquet",  # type: ignore[attr-defined]
                        export_parquet)


def plotted_frame(figure: dict) -> pd.DataFrame:
    """What a figure plotted: one row per point of every trace (trace name and type, x, y,
    z, hover text, and ``customdata`` columns such as a binned point's row count)."""
    records: list[dict] = []
    for index, trace in enumerate(figure.get("data") or []):
        name = trace.get("name") or f"trace {index}"
        kind = trace.get("type", "scatter")
        if kind == "parcoords":
            for dim in trace.get("dimensions") or []:
                for i, value in enumerate(_values(dim.get("values"))):
                    records.append({"trace": name, "type": kind, "point": i, "dimension": dim.get("label"),
                                    "value": value})
            continue
        xs, ys = _values(trace.get("x")), _values(trace.get("y"))
        if kind == "heatmap":
            z = trace.get("z") or []
            for i, row in enumerate(z):
                for j, value in enumerate(_values(row)):
                    records.append({"trace": name, "type": kind, "x": xs[j] if j < len(xs) else j,
                                    "y": ys[i] if i < len(ys) else i, "z": value})
            continue
        text = _values(trace.get("text"))
        custom = trace.get("customdata")
        custom_rows = _values(custom) if custom is not None else []
        for i in range(max(len(xs), len(ys))):
            record = {"trace": name, "type": kind, "x": xs[i] if i < len(xs) else None,
                      "y": ys[i] if i < len(ys) else None}
            if i < len(text):
                record["text"] = str(text[i]).replace("<br>", "; ")
            if i < len(custom_rows):
                row = custom_rows[i]
                for k, value in enumerate(row if isinstance(row, (list, tuple)) else [row]):
                    record[f"customdata_{k}"] = value
            records.append(record)
    return pd.DataFrame.from_records(records)


def _values(value: object) -> list:
    """A trace array as a list (plotly's JSON may carry typed arrays as {"dtype", "bdata"})."""
    if value is None:
        return []
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            data = data.reshape([int(s) for s in str(shape).split(",")])
        return data.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [value]
    return list(np.asarray(value).tolist()) if np.ndim(value) else [value]
