"""The format of a model bundle's files: markers, versions, sealed JSON and metadata.

Every JSON file of a bundle is ``{"format", "format_version", "kind", "metadata",
"state", "content_sha256"}`` (the manifest: ``"models"`` in place of ``"kind"`` and
``"state"``), where the hash covers the canonical JSON of everything else. Metadata:
model kind, features, training-data fingerprint (a hash of the config ids, device keys
and times used), library versions, evaluation figures, creation time, perfscope and
schema versions.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.errors import ModelFileError
from perfscope.models.bundle_files import load_json, parse_json
from perfscope.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "perfscope-model"
BUNDLE_FORMAT = "perfscope-model-bundle"
FORMAT_VERSION = 2
"""2: forests as numpy arrays (``.npz``); 1 (refused: retrain): forests as skops files."""
MANIFEST = "manifest.json"
FORMAT_KEY = "__perfscope_format__"
METADATA_KEY = "__metadata_json__"


# ---- metadata ---------------------------------------------------------

def library_versions() -> dict[str, str | None]:
    """Versions of the libraries a saved model depends on."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("perfscope", "scikit-learn", "numpy", "scipy", "pandas"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def data_fingerprint(rows: pd.DataFrame) -> str:
    """SHA-256 over the sorted (device_key, config_id, run_id, time_median_ms) of the rows used."""
    columns = [c for c in ("device_key", "config_id", "run_id", "time_median_ms") if c in rows]
    if not columns or len(rows) == 0:
        return hashlib.sha256(b"").hexdigest()
    lines = sorted("\t".join(repr(v) for v in values) for values in rows[columns].astype(object)
                   .where(rows[columns].notna(), None).itertuples(index=False, name=None))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def base_metadata(rows: pd.DataFrame | None = None) -> dict[str, Any]:
    """Metadata every saved file carries: versions, creation time, schema and data fingerprint."""
    meta: dict[str, Any] = {"created_at": datetime.now(timezone.utc).isoformat(), "schema_version": SCHEMA_VERSION,
                            "libraries": library_versions()}
    if rows is not None:
        meta["training_data"] = {"fingerprint": data_fingerprint(rows), "n_rows": int(len(rows))}
    return meta


# ---- sealed JSON ------------------------------------------------------

def to_jsonable(value: Any) -> Any:
    """Plain JSON types (NaN and infinities become None, numpy scalars Python numbers)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, datetime):  # pandas' Timestamp included (a datetime subclass)
        return value.isoformat()
    return str(value)


def canonical_json(data: Any) -> bytes:
    """The canonical JSON bytes of ``data`` (sorted keys, no spaces, no NaN): what hashes cover."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as hex."""
    return hashlib.sha256(data).hexdigest()


def sealed(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` as plain JSON with ``content_sha256``, the hash of its canonical JSON."""
    document = to_jsonable(document)
    document["content_sha256"] = sha256_hex(canonical_json(document))
    return document


def read_sealed(path: Path, expected_format: str, raw: bytes | None = None) -> dict[str, Any]:
    """Read a sealed JSON document (from ``raw`` when its bytes were read already), checking
    that it is ours and untouched; the file must be regular, small enough and shallow."""
    data = load_json(path, ModelFileError) if raw is None else parse_json(raw, path, ModelFileError)
    if not isinstance(data, dict) or data.get("format") != expected_format:
        raise ModelFileError(f"{path} is not a perfscope model file (format is not {expected_format!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format version {version}; this perfscope reads up to "
                             f"{FORMAT_VERSION}: upgrade perfscope")
    if version < FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by an older perfscope (model format {version}, forests saved "
                             f"with skops); this perfscope reads format {FORMAT_VERSION}: retrain the model "
                             "(perfscope train)")
    claimed = data.pop("content_sha256", None)
    if claimed != sha256_hex(canonical_json(data)):
        raise ModelFileError(f"{path} was modified after it was saved (content hash mismatch): retrain the model "
                             "or restore the file")
    return data
