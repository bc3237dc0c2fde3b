"""Save and load model bundles without pickle: JSON for analytical parts, numpy arrays for forests.

A bundle is one directory::

    MODEL/manifest.json        what the bundle holds, metadata, a SHA-256 of every file
    MODEL/<name>.json          one per model: its JSON state, metadata and content hash
    MODEL/<name>.npz           one per model that holds forests: their trees as arrays

Every JSON file is ``{"format", "format_version", "kind", "metadata", "state",
"content_sha256"}`` where the hash covers the canonical JSON of everything else; the
manifest lists the SHA-256 of each file's bytes, and the npz archive also carries the
format marker and the metadata. Metadata: model kind, features, training-data
fingerprint (a hash of the config ids, device keys and times used), library versions,
evaluation figures, creation time, perfscope and schema versions.

A forest is stored as the arrays of ``perfscope.models.tree_arrays.ForestArrays``
(``<object>/<array>`` in the archive, written by ``np.savez``, read with
``np.load(allow_pickle=False)``: no object is ever unpickled), and loading predicts
through those arrays: neither scikit-learn nor skops is imported (importing them took
seconds). The model classes derive from ``LightEstimator`` (below), scikit-learn's
estimator API without importing scikit-learn, for the same reason.

Loading refuses, with ``ModelFileError``: a directory or file that is not a perfscope
model (foreign), any file whose hash does not match (tampered or corrupted), an older
format (format 1 kept forests in skops files: retrain) or a newer one, an archive with
pickled or unexpected arrays, and trees whose arrays are inconsistent (node indices
out of range, leaves half-marked, split features out of range: ``ForestArrays``
checks them before use). The hashes detect accidental or careless changes; they are
not a signature (whoever can write the files can rewrite the hashes), so load bundles
from sources you trust.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import json
import logging
import math
import os
import platform
import re
import shutil
import zipfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.errors import ModelFileError
from perfscope.store_locks import process_alive

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

# No pandas at import: loading a bundle and predicting on column arrays
# (``perfscope estimate``) must not pay its import time.

FORMAT = "perfscope-model"
BUNDLE_FORMAT = "perfscope-model-bundle"
FORMAT_VERSION = 2
"""2: forests as numpy arrays (``.npz``); 1 (refused: retrain): forests as skops files."""
MANIFEST = "manifest.json"
FORMAT_KEY = "__perfscope_format__"
METADATA_KEY = "__metadata_json__"


_KINDS: dict[str, tuple[str, str]] = {
    "roofline": ("perfscope.models.roofline_model", "RooflineModel"),
    "log_linear": ("perfscope.models.roofline_model", "LogLinearModel"),
    "forest": ("perfscope.models.forest", "ForestModel"),
    "paper_baseline": ("perfscope.models.forest", "PaperBaselineModel"),
    "param_forest": ("perfscope.models.param_forest", "ParameterForestModel"),
    "energy": ("perfscope.models.energy_model", "EnergyModel"),
    "conformal": ("perfscope.models.intervals", "ConformalWrapper"),
}
"""Model kinds by registry name: (module, class), imported only when a bundle holds that kind."""


def _model_class(kind: str) -> type:
    module, name = _KINDS[kind]
    return getattr(importlib.import_module(module), name)


def model_kind(model: Any) -> str:
    """The registry name of a perfscope model's class (``ModelFileError`` for any other object)."""
    cls = type(model)
    for kind, (module, name) in _KINDS.items():
        if cls.__module__ == module and cls.__qualname__ == name and _model_class(kind) is cls:
            return kind
    raise ModelFileError(f"cannot save a {type(model).__name__}: only perfscope's own models are saved")


# ---- a scikit-learn estimator base that does not import scikit-learn -----------------

class LightEstimator:
    """Base of perfscope's models: scikit-learn's estimator API without importing scikit-learn.

    ``get_params`` and ``set_params`` (nested ``name__param`` included), the repr and the
    tags behave as in ``sklearn.base.BaseEstimator``, so scikit-learn's ``clone``, model
    selection and scorers take these models. scikit-learn is imported only by what
    needs it (fitting, the tags, ``score``, raising ``NotFittedError``): a loaded bundle
    predicts without it, and importing it costs seconds.
    """

    @classmethod
    def _get_param_names(cls) -> list[str]:
        if cls.__init__ is object.__init__:
            return []
        parameters = [p for p in inspect.signature(cls.__init__).parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD]
        if any(p.kind == p.VAR_POSITIONAL for p in parameters):
            raise RuntimeError(f"{cls.__name__}: estimators name every parameter in __init__ (no *args)")
        return sorted(p.name for p in parameters)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters by name; with ``deep``, those of nested estimators as ``name__param`` too."""
        out: dict[str, Any] = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params: Any) -> Any:
        """Set parameters (``name__param`` for a nested estimator's); returns self."""
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = defaultdict(dict)
        for key, value in params.items():
            key, delimiter, sub_key = key.partition("__")
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for estimator {type(self).__name__}; valid parameters "
                                 f"are {self._get_param_names()!r}")
            if delimiter:
                nested[key][sub_key] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items() if repr(v) != repr(defaults.get(k))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=None,
                    regressor_tags=None, classifier_tags=None)


class LightRegressorMixin:
    """``sklearn.base.RegressorMixin`` without importing scikit-learn: regressor tags and R² ``score``."""

    _estimator_type = "regressor"  # what scikit-learn before 1.6 reads instead of the tags

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import RegressorTags

        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
        tags.target_tags.required = True
        return tags

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R² of ``predict(X)`` against ``y``."""
        from sklearn.metrics import r2_score

        return float(r2_score(y, self.predict(X), sample_weight=sample_weight))  # type: ignore[attr-defined]


def check_is_fitted(model: Any) -> None:
    """Raise scikit-learn's ``NotFittedError`` unless ``model`` has a fitted attribute (a name ending in ``_``)."""
    if not any(name.endswith("_") and not name.startswith("__") for name in vars(model)):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet: call fit first")


# ---- metadata -------------------------------------------------------------------------

def library_versions() -> dict[str, str | None]:
    """Versions of the libraries a saved model depends on."""
    from importlib.metadata import PackageNotFoundError, version

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
    from perfscope.schema import SCHEMA_VERSION

    meta: dict[str, Any] = {"created_at": datetime.now(timezone.utc).isoformat(), "schema_version": SCHEMA_VERSION,
                            "libraries": library_versions()}
    if rows is not None:
        meta["training_data"] = {"fingerprint": data_fingerprint(rows), "n_rows": int(len(rows))}
    return meta


# ---- JSON helpers ---------------------------------------------------------------------

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


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sealed(document: dict[str, Any]) -> dict[str, Any]:
    document = to_jsonable(document)
    document["content_sha256"] = _sha256(_canonical(document))
    return document


def _read_sealed(path: Path, expected_format: str, raw: bytes | None = None) -> dict[str, Any]:
    """Read a sealed JSON document (from ``raw`` when its bytes were read already), checking
    that it is ours and untouched; the file must be regular, small enough and shallow."""
    from perfscope.models.bundle_files import load_json, parse_json

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
    if claimed != _sha256(_canonical(data)):
        raise ModelFileError(f"{path} was modified after it was saved (content hash mismatch): retrain the model "
                             "or restore the file")
    return data


# ---- model states ---------------------------------------------------------------------

def _model_state(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON state with the kind, forests by dotted name) of a model, nested models included."""
    kind = model_kind(model)
    state, objects = model._to_state()
    state = {"kind": kind, **state}
    inner = getattr(model, "estimator_", None) if kind == "conformal" else getattr(model, "latency_model_", None)
    if inner is not None:
        inner_state, inner_objects = _model_state(inner)
        state["inner"] = inner_state
        objects.update({f"inner.{k}": v for k, v in inner_objects.items()})
    return state, objects


def _model_from_state(state: Mapping[str, Any], objects: Mapping[str, Any]) -> Any:
    kind = state.get("kind")
    if kind not in _KINDS:
        raise ModelFileError(f"unknown model kind {kind!r} in the bundle: upgrade perfscope")
    own = {k: v for k, v in objects.items() if not k.startswith("inner.")}
    inner = None
    if "inner" in state:
        inner = _model_from_state(state["inner"], {k[len("inner."):]: v for k, v in objects.items()
                                                   if k.startswith("inner.")})
    cls = _model_class(kind)
    if kind in ("conformal", "energy"):
        return cls._from_state(state, own, inner)
    return cls._from_state(state, own)


def _npz_bytes(objects: Mapping[str, Any], metadata: Mapping[str, Any]) -> bytes:
    """An npz archive of every forest's arrays (``<object>/<array>``) with the format marker and metadata."""
    from perfscope.models.tree_arrays import ForestArrays

    arrays: dict[str, np.ndarray] = {FORMAT_KEY: np.array(FORMAT),
                                     METADATA_KEY: np.array(json.dumps(to_jsonable(metadata), sort_keys=True))}
    for name, obj in objects.items():
        if not isinstance(obj, ForestArrays):
            raise ModelFileError(f"cannot save {name!r}, a {type(obj).__name__}: only forests as ForestArrays")
        arrays.update({f"{name}/{field}": array for field, array in obj.to_arrays().items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _objects_from_npz(path: Path, data: bytes) -> dict[str, Any]:
    """The forests of an npz archive (the bytes whose hash was checked), each validated."""
    from perfscope.models.tree_arrays import ForestArrays

    grouped: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if FORMAT_KEY not in archive.files or str(archive[FORMAT_KEY]) != FORMAT:
                raise ModelFileError(f"{path} is not a perfscope model file (no {FORMAT} marker)")
            for key in archive.files:
                if key in (FORMAT_KEY, METADATA_KEY):
                    continue
                name, _, field = key.rpartition("/")
                if not name:
                    raise ModelFileError(f"{path} holds an unexpected array {key!r}: it was not written by perfscope")
                grouped[name][field] = archive[key]
    except ModelFileError:
        raise
    except Exception as exc:  # zipfile and numpy raise many types on malformed archives
        raise ModelFileError(f"{path} is not a readable perfscope array archive ({type(exc).__name__}: {exc}); "
                             "pickled objects are never loaded") from None
    return {name: ForestArrays.from_arrays(arrays, name=f"{path.name}: {name}") for name, arrays in grouped.items()}


# ---- bundles --------------------------------------------------------------------------

@dataclass
class ModelBundle:
    """A loaded bundle: the models by name and the manifest's metadata."""

    models: dict[str, Any]
    metadata: dict[str, Any]
    path: Path | None = None
    model_metadata: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        try:
            return self.models[name]
        except KeyError:
            raise ModelFileError(f"the bundle has no model {name!r}; it has {', '.join(self.models)}") from None


def save_bundle(out_dir: str | Path, models: Mapping[str, Any], *, rows: pd.DataFrame | None = None,
                metadata: Mapping[str, Any] | None = None,
                model_metadata: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write fitted ``models`` (name -> model) as a bundle directory; return its path.

    ``rows`` are the training rows (for the fingerprint); ``metadata`` goes into the
    manifest (for example the evaluation table); ``model_metadata[name]`` into that
    model's files (for example its own figures).

    The bundle is written into a hidden directory beside ``out_dir`` and renamed into
    place, so a crash never leaves a half-written bundle; a previous bundle there, or
    the leftovers of a save that was cut short, is replaced as a whole.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ModelFileError(f"{out} exists and is not a directory: choose another place", parameter="out")
    if out.is_dir() and not _replaceable(out):
        raise ModelFileError(f"{out} is a non-empty directory that holds no perfscope model: choose another place",
                             parameter="out")
    staging = _staging_dir(out)
    try:
        _write_bundle(staging, models, rows, metadata, model_metadata)
        _move_into_place(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("saved model bundle %s (%s)", out, ", ".join(models))
    return out


def _write_bundle(out: Path, models: Mapping[str, Any], rows: pd.DataFrame | None,
                  metadata: Mapping[str, Any] | None, model_metadata: Mapping[str, Mapping[str, Any]] | None) -> None:
    common = base_metadata(rows)
    entries: dict[str, Any] = {}
    for name, model in models.items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ModelFileError(f"model name {name!r}: use letters, digits, - and _ only")
        state, objects = _model_state(model)
        meta = {**common, "kind": state["kind"], "name": name, **_features_of(model),
                **dict((model_metadata or {}).get(name, {}))}
        files: dict[str, str] = {}
        if objects:
            data = _npz_bytes(objects, meta)
            _write_bytes(out / f"{name}.npz", data)
            files[f"{name}.npz"] = _sha256(data)
        document = _sealed({"format": FORMAT, "format_version": FORMAT_VERSION, "kind": state["kind"],
                            "metadata": meta, "state": state})
        json_bytes = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
        _write_bytes(out / f"{name}.json", json_bytes)
        files[f"{name}.json"] = _sha256(json_bytes)
        entries[name] = {"kind": state["kind"], "files": files}
    manifest = _sealed({"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
                        "metadata": {**common, **dict(metadata or {})}, "models": entries})
    _write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


_BUNDLE_FILE = re.compile(r"\.?[A-Za-z0-9_-]+\.(json|npz)(\.tmp)?")


def _replaceable(out: Path) -> bool:
    """Whether ``out`` may be replaced by a new bundle: empty, a bundle, or what an
    interrupted save left (only model files: ``.tmp`` files, model JSON documents and
    archives carrying the perfscope marker). A directory of anything else is kept."""
    if (out / MANIFEST).is_file():
        return True
    for entry in out.iterdir():
        if not entry.is_file() or entry.is_symlink() or not _BUNDLE_FILE.fullmatch(entry.name):
            return False
        if entry.name.endswith(".tmp"):
            continue
        try:
            if entry.suffix == ".npz":
                with zipfile.ZipFile(entry) as archive:
                    if f"{FORMAT_KEY}.npy" not in archive.namelist():
                        return False
            elif entry.stat().st_size > (64 << 20) or json.loads(entry.read_bytes()).get("format") != FORMAT:
                return False
        except (OSError, ValueError, AttributeError, zipfile.BadZipFile):
            return False
    return True


def _staging_dir(out: Path) -> Path:
    """A new hidden directory beside ``out`` for this process, after clearing what dead
    writers left there (and putting back a bundle a crash left moved aside)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for leftover in out.parent.iterdir():
            if not leftover.name.startswith(f".{out.name}."):
                continue
            kind, _, pid = leftover.name.rpartition("-")
            if not pid.isdigit() or process_alive(int(pid)) or not leftover.is_dir():
                continue
            if kind.endswith(".old") and not out.exists():
                leftover.rename(out)
            elif kind.endswith((".old", ".tmp")):
                shutil.rmtree(leftover, ignore_errors=True)
        staging = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as exc:
        raise ModelFileError(f"cannot write {out}: {exc.strerror or exc}") from None
    return staging


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished bundle to ``out``; a previous ``out`` is moved aside first and
    deleted after (restored if the rename fails)."""
    aside = out.parent / f".{out.name}.old-{os.getpid()}"
    try:
        if out.exists():
            os.rename(out, aside)
        try:
            os.rename(staging, out)
        except OSError:
            if aside.exists():
                os.rename(aside, out)
            raise
    except OSError as exc:
        raise ModelFileError(f"cannot write {out}: {exc.strerror or exc}") from None
    shutil.rmtree(aside, ignore_errors=True)



def _features_of(model: Any) -> dict[str, Any]:
    from perfscope.models.forest import FOREST_FEATURES, PAPER_FEATURES
    from perfscope.models.roofline_model import LOG_LINEAR_FEATURES

    kind = model_kind(model)
    if kind == "conformal":
        return _features_of(model.estimator_)
    if kind == "param_forest":
        return {"features": list(model.feature_names_), "targets": ["latency"]}
    features = {"forest": list(FOREST_FEATURES), "paper_baseline": list(PAPER_FEATURES),
                "log_linear": list(LOG_LINEAR_FEATURES), "roofline": ["bound_time_s", "bound", "kernel", "dtype"],
                "energy": ["time_s", "flops", "min_bytes"]}[kind]
    return {"features": features, "targets": list(getattr(model, "targets_", ()))}


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)  # into the staging directory: the bundle is renamed into place whole
    except OSError as exc:
        raise ModelFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def load_bundle(path: str | Path) -> ModelBundle:
    """Load a bundle written by ``save_bundle``, verifying every hash and tree array first.

    Needs numpy only: forests predict through their arrays (no scikit-learn), and the
    tables of the analytical models stay JSON records until used as frames (no pandas).
    """
    root = Path(path)
    if not root.is_dir():
        raise ModelFileError(f"no perfscope model at {root}: a model is a directory with a {MANIFEST}")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ModelFileError(f"{root} is not a perfscope model (no {MANIFEST})")
    from perfscope.models.bundle_files import (
        MAX_ARRAY_BYTES,
        MAX_JSON_BYTES,
        check_document,
        check_manifest,
        read_regular_file,
    )

    manifest = _read_sealed(manifest_path, BUNDLE_FORMAT)
    check_manifest(manifest, manifest_path, ModelFileError)
    models: dict[str, Any] = {}
    model_metadata: dict[str, dict[str, Any]] = {}
    for name, entry in manifest["models"].items():
        contents: dict[str, bytes] = {}
        for file_name, digest in entry["files"].items():
            file_path = root / file_name
            limit = MAX_ARRAY_BYTES if file_name.endswith(".npz") else MAX_JSON_BYTES
            data = read_regular_file(file_path, limit, ModelFileError)
            if _sha256(data) != digest:
                raise ModelFileError(f"{file_path} was modified after it was saved (SHA-256 differs from "
                                     f"{MANIFEST}): retrain the model or restore the file")
            contents[file_name] = data
        document_path = root / f"{name}.json"
        document = _read_sealed(document_path, FORMAT, contents[f"{name}.json"])
        check_document(document, document_path, ModelFileError)
        npz_name = f"{name}.npz"
        objects = _objects_from_npz(root / npz_name, contents[npz_name]) if npz_name in contents else {}
        try:
            models[name] = _model_from_state(document["state"], objects)
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            raise ModelFileError(f"{document_path}: the model state is not valid ({detail}): retrain the model "
                                 "or restore the file") from None
        log.debug("loaded model %s from %s", name, root)
        model_metadata[name] = document.get("metadata", {})
    return ModelBundle(models=models, metadata=manifest.get("metadata", {}), path=root,
                       model_metadata=model_metadata)
