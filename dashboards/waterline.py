"""Waterlines of kernel sequences: sum of roofline bounds, measured sum, bound if fused.

A sequence is a list of layers (a kernel family and its configuration), from
``sequences.yaml`` shipped here or picked among measured configurations on the page.
For a device and dtype:

* each layer's bound is ``perfscope.roofline`` max(FLOPs/peak, bytes/bandwidth, launch);
* the measured sum adds the median time of each layer's matching rows (same family,
  dtype and shape on that device; layers without one are reported, not guessed);
* the fused bound treats the sequence as one kernel: all FLOPs, all minimum bytes minus
  the intermediate tensors (each written by layer i and read by layer i+1, counted as
  2·min(output of i, input of i+1)), and one launch floor.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

from perfscope.dashboards.figures.common import seconds
from perfscope.dtypes import DTYPES
from perfscope.errors import InvalidInputError
from perfscope.roofline import feature_columns, roofline_bound
from perfscope.schema import CONFIG_COLUMNS

SEQUENCES_FILE = "sequences.yaml"
_LAYER_DEFAULTS = {"batch": 1, "groups": 1, "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0,
                   "dil_h": 1, "dil_w": 1}
_SHAPE_KEYS = tuple(c for c in CONFIG_COLUMNS if c not in ("kernel", "implementation", "dtype", "cache_mode",
                                                          "params_json", "layout", "backend"))


@dataclass(frozen=True)
class Layer:
    """One kernel of a sequence: its name, family and configuration columns."""

    name: str
    kernel: str
    config: tuple[tuple[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        """The layer's configuration columns, as a new dict."""
        return dict(self.config)


@dataclass(frozen=True)
class KernelSequence:
    """A named sequence of layers."""

    name: str
    description: str
    layers: tuple[Layer, ...]


def load_sequences(text: str | None = None) -> list[KernelSequence]:
    """Sequences from YAML text, or from the ``sequences.yaml`` shipped with the dashboard
    (parsed once: pages ask for it on every render and waterline)."""
    if text is None:
        return list(_shipped_sequences())
    return _parse_sequences(text)


@functools.lru_cache(maxsize=1)
def _shipped_sequences() -> tuple[KernelSequence, ...]:
    text = resources.files("perfscope.dashboards").joinpath(SEQUENCES_FILE).read_text(encoding="utf-8")
    return tuple(_parse_sequences(text))


def _parse_sequences(text: str) -> list[KernelSequence]:
    data = yaml.safe_load(text) or {}
    out = []
    for i, raw in enumerate(data.get("sequences") or []):
        name = str(raw.get("name") or f"sequence {i + 1}")
        layers = []
        for j, layer in enumerate(raw.get("layers") or []):
            layer = dict(layer)
            kernel = layer.pop("kernel", None)
            lname = str(layer.pop("name", f"layer {j + 1}"))
            if kernel not in ("gemm", "conv", "attention"):
                raise InvalidInputError(f"sequence {name!r} layer {lname!r}: kernel must be gemm, conv or attention")
            unknown = sorted(set(layer) - set(_SHAPE_KEYS))
            if unknown:
                raise InvalidInputError(f"sequence {name!r} layer {lname!r}: unknown configuration keys {unknown}")
            layers.append(Layer(lname, kernel, tuple(sorted(layer.items()))))
        if not layers:
            raise InvalidInputError(f"sequence {name!r} has no layers")
        out.append(KernelSequence(name, str(raw.get("description") or ""), tuple(layers)))
    return out


def layers_from_rows(rows: pd.DataFrame, labels: Sequence[str] | None = None) -> list[Layer]:
    """Layers from measured rows (in order): each row's family and non-null shape columns."""
    layers = []
    for i, (_, row) in enumerate(rows.iterrows()):
        config = {}
        for key in _SHAPE_KEYS:
            if key in row and not _is_missing(row[key]):
                value = row[key]
                config[key] = bool(value) if key == "causal" else int(value)
        name = labels[i] if labels is not None and i < len(labels) else f"layer {i + 1}"
        layers.append(Layer(str(name), str(row["kernel"]), tuple(sorted(config.items()))))
    return layers


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def layer_frame(layers: Sequence[Layer], dtype: str) -> pd.DataFrame:
    """One configuration row per layer (defaults filled), ready for ``feature_columns``."""
    if dtype not in DTYPES:
        raise InvalidInputError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    records = []
    for layer in layers:
        record: dict[str, Any] = {"layer": layer.name, "kernel": layer.kernel, "dtype": dtype}
        record.update({k: v for k, v in _LAYER_DEFAULTS.items()})
        record.update(layer.as_dict())
        records.append(record)
    return pd.DataFrame.from_records(records)


def matched_columns(layers: Sequence[Layer]) -> tuple[str, ...]:
    """The columns ``match_measured`` compares for ``layers``: the family, the time and the
    sizes some layer sets (a size no layer sets is never compared, so it need not be read)."""
    base = layer_frame(layers, next(iter(DTYPES)))
    used = [key for key in _SHAPE_KEYS if key in base and base[key].map(lambda v: not _is_missing(v)).any()]
    return ("kernel", "time_s", *used)


def output_input_bytes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(output bytes, main input bytes) per layer: GEMM C and A, conv output and input
    image, attention O and Q, at the dtype's storage size."""
    size = np.array([DTYPES[d].bytes_per_element for d in frame["dtype"]], dtype=float)
    col = lambda c, d=math.nan: pd.to_numeric(frame[c], errors="coerce").fillna(d).to_numpy(dtype=float) \
        if c in frame else np.full(len(frame), d)  # noqa: E731
    kernel = frame["kernel"].to_numpy()
    out = np.full(len(frame), np.nan)
    inp = np.full(len(frame), np.nan)
    gemm = kernel == "gemm"
    out[gemm] = (col("batch", 1) * col("m") * col("n"))[gemm]
    inp[gemm] = (col("batch", 1) * col("m") * col("k"))[gemm]
    conv = kernel == "conv"
    if conv.any():
        p = np.floor((col("conv_h") + 2 * col("pad_h", 0) - col("dil_h", 1) * (col("conv_r") - 1) - 1)
                     / col("stride_h", 1)) + 1
        q = np.floor((col("conv_w") + 2 * col("pad_w", 0) - col("dil_w", 1) * (col("conv_s") - 1) - 1)
                     / col("stride_w", 1)) + 1
        out[conv] = (col("conv_n") * col("conv_k") * p * q)[conv]
        inp[conv] = (col("conv_n") * col("conv_c") * col("conv_h") * col("conv_w"))[conv]
    attn = kernel == "attention"
    out[attn] = (col("batch", 1) * col("heads") * col("seq_q") * col("head_dim"))[attn]
    inp[attn] = out[attn]
    return out * size, inp * size


def match_measured(layers_df: pd.DataFrame, measured: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(median measured time in s, matching row count) per layer among ``measured`` rows
    (already restricted to one device and dtype, status ok)."""
    times = np.full(len(layers_df), np.nan)
    counts = np.zeros(len(layers_df), dtype=int)
    if measured is None or measured.empty or "time_s" not in measured:
        return times, counts
    kernels: dict[str, np.ndarray] = {}  # rows per kernel family, compared on categorical codes
    time_s = pd.to_numeric(measured["time_s"], errors="coerce").to_numpy(dtype=float)
    columns: dict[str, np.ndarray] = {}  # each size column converted once, not once per layer

    def column(key: str) -> np.ndarray:
        if key not in columns:
            if key == "causal":
                columns[key] = measured[key].fillna(False).astype(bool).to_numpy()
            else:
                values = pd.to_numeric(measured[key], errors="coerce").to_numpy(dtype=float)
                default = _LAYER_DEFAULTS.get(key)
                columns[key] = np.where(np.isnan(values), default, values) if default is not None else values
        return columns[key]

    for i, layer in enumerate(layers_df.to_dict("records")):
        family = str(layer["kernel"])
        if family not in kernels:
            kernels[family] = (measured["kernel"] == family).to_numpy(dtype=bool)
        mask = kernels[family].copy()
        for key in _SHAPE_KEYS:
            if key not in layer or _is_missing(layer[key]) or key not in measured:
                continue
            mask &= column(key) == (bool(layer[key]) if key == "causal" else float(layer[key]))
        chosen = time_s[mask & np.isfinite(time_s)]
        counts[i] = chosen.size
        if chosen.size:
            times[i] = float(np.median(chosen))
    return times, counts


def waterline(layers: Sequence[Layer], dtype: str, device: Any,
              measured: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-layer bounds and measured times, and the totals (sum of bounds, measured sum,
    fused bound, intermediate bytes removed) for ``device`` (a ``RooflineDevice``)."""
    if not layers:
        raise InvalidInputError("a waterline needs at least one layer")
    base = layer_frame(layers, dtype)
    features = feature_columns(base, device)
    out_bytes, in_bytes = output_input_bytes(base)
    time_s, matches = match_measured(base, measured if measured is not None else pd.DataFrame())
    frame = pd.DataFrame({
        "layer": base["layer"], "kernel": base["kernel"], "dtype": dtype,
        "flops": np.asarray(features["flops"], dtype=float),
        "min_bytes": np.asarray(features["min_bytes"], dtype=float),
        "bound_time_s": np.asarray(features["bound_time_s"], dtype=float),
        "bound": np.array([str(b) if b is not None else "nan" for b in features["bound"]], dtype=object),
        "output_bytes": out_bytes, "input_bytes": in_bytes,
        "time_s": time_s, "measured_rows": matches,
    })
    removed = 0.0
    for i in range(len(frame) - 1):
        removed += 2.0 * min(out_bytes[i], in_bytes[i + 1])
    total_flops = float(frame["flops"].sum())
    fused_bytes = max(float(frame["min_bytes"].sum()) - removed, 0.0)
    peak = float(features["peak_flops_per_s"][0])
    bandwidth = float(features["mem_bandwidth_bytes_per_s"][0])
    launch = float(features["launch_overhead_s"][0])
    fused = roofline_bound(total_flops, fused_bytes, peak, bandwidth, launch).bound_time_s
    measured_ok = frame["time_s"].dropna()
    totals = {
        "sum_bound_s": float(frame["bound_time_s"].sum(min_count=len(frame))),
        "measured_sum_s": float(measured_ok.sum()) if len(measured_ok) else math.nan,
        "measured_layers": float(len(measured_ok)),
        "fused_bound_s": float(np.asarray(fused).ravel()[0]),
        "intermediate_bytes_removed": removed,
        "total_flops": total_flops,
        "fused_min_bytes": fused_bytes,
    }
    return frame, totals


def sequence_by_name(sequences: Sequence[KernelSequence], name: str) -> KernelSequence:
    """The sequence called ``name``; ``InvalidInputError`` listing the known ones."""
    for sequence in sequences:
        if sequence.name == name:
            return sequence
    raise InvalidInputError(f"no sequence {name!r}: use one of {', '.join(s.name for s in sequences)}")


def describe_totals(totals: Mapping[str, float]) -> str:
    """One line: "Σ bounds 1.2 ms, measured 3.4 ms (2 of 2 layers), fused bound 0.9 ms"."""
    return (f"sum of bounds {seconds(totals.get('sum_bound_s', math.nan))}, "
            f"measured sum {seconds(totals.get('measured_sum_s', math.nan))} "
            f"({int(totals.get('measured_layers', 0))} layer(s) measured), "
            f"fused bound {seconds(totals.get('fused_bound_s', math.nan))} "
            f"({totals.get('intermediate_bytes_removed', 0) / 1e6:.3g} MB of intermediate traffic removed)")
