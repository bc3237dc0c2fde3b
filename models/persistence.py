"""Save and load model bundles without pickle: JSON for analytical parts, skops for forests.

A bundle is one directory::

    MODEL/manifest.json        what the bundle holds, metadata, a SHA-256 of every file
    MODEL/<name>.json          one per model: its JSON state, metadata and content hash
    MODEL/<name>.skops         one per model that holds scikit-learn estimators

Every JSON file is ``{"format", "format_version", "kind", "metadata", "state",
"content_sha256"}`` where the hash covers the canonical JSON of everything else; the
manifest lists the SHA-256 of each file's bytes, and the skops archive also carries the
metadata. Metadata: model kind, features, training-data fingerprint (a hash of the
config ids, device keys and times used), library versions, evaluation figures,
creation time, perfscope and schema versions.

Loading refuses, with ``ModelFileError``: a directory or file that is not a perfscope
model (foreign), any file whose hash does not match (tampered or corrupted), a newer
format, and a skops file holding a type outside ``TRUSTED_SKOPS_TYPES``. The hashes
detect accidental or careless changes; they are not a signature (whoever can write the
files can rewrite the hashes), so load bundles from sources you trust. As a second
line, every loaded decision tree is checked for out-of-range node indices (skops'
stated risk of ``sklearn.tree._tree.Tree``) before it is used.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfscope.errors import PerfscopeError

FORMAT = "perfscope-model"
BUNDLE_FORMAT = "perfscope-model-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

TRUSTED_SKOPS_TYPES = ("sklearn.tree._tree.Tree",)
"""Types skops does not trust by default that a perfscope forest needs. skops flags the
tree storage because a crafted file can hold out-of-range node indices; perfscope
checks those indices after loading (``_check_trees``)."""


class ModelFileError(PerfscopeError):
    """A model file or bundle cannot be loaded: missing, foreign, tampered or untrusted (exit status 2)."""

    exit_code = 2


class _NoTorch:
    """Meta-path finder that refuses to import torch (see ``_skops_io``)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("perfscope imports skops without torch", name=name)
        return None


def _skops_io() -> Any:
    """``skops.io``, imported without importing torch.

    Importing skops.io walks every scikit-learn package to list the estimators it
    trusts; walking imports scikit-learn's torch array-API shim, hence torch (seconds,
    and ``perfscope estimate`` must not import torch). While skops is imported, torch
    is made unimportable: the walk skips that package (an ImportError there is ignored
    by ``pkgutil.walk_packages``) and the trusted list is unchanged (it leaves out
    ``externals`` anyway). torch imports normally afterwards.
    """
    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io

        return skops.io
    blocker = _NoTorch()
    sys.meta_path.insert(0, blocker)
    try:
        import skops.io
    finally:
        sys.meta_path.remove(blocker)
    return skops.io


def _registry() -> dict[str, type]:
    from perfscope.models.energy_model import EnergyModel
    from perfscope.models.forest import ForestModel, PaperBaselineModel
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.roofline_model import LogLinearModel, RooflineModel

    return {"roofline": RooflineModel, "log_linear": LogLinearModel, "forest": ForestModel,
            "paper_baseline": PaperBaselineModel, "energy": EnergyModel, "conformal": ConformalWrapper}


def model_kind(model: Any) -> str:
    """The registry name of a perfscope model's class (``ModelFileError`` for any other object)."""
    for kind, cls in _registry().items():
        if type(model) is cls:
            return kind
    raise ModelFileError(f"cannot save a {type(model).__name__}: only perfscope's own models are saved")


# ---- metadata -------------------------------------------------------------------------

def library_versions() -> dict[str, str | None]:
    """Versions of the libraries a saved model depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("perfscope", "scikit-learn", "numpy", "scipy", "pandas", "skops"):
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
    if isinstance(value, (pd.Timestamp, datetime)):
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


def _read_sealed(path: Path, expected_format: str) -> dict[str, Any]:
    """Read a sealed JSON document, checking that it is ours and untouched."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ModelFileError(f"{path} is missing: the model bundle is incomplete") from None
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a perfscope model file (not readable JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        raise ModelFileError(f"{path} is not a perfscope model file (format is not {expected_format!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format version {version}; this perfscope reads up to "
                             f"{FORMAT_VERSION}: upgrade perfscope")
    claimed = data.pop("content_sha256", None)
    if claimed != _sha256(_canonical(data)):
        raise ModelFileError(f"{path} was modified after it was saved (content hash mismatch): retrain the model "
                             "or restore the file")
    return data


# ---- model states ---------------------------------------------------------------------

def _model_state(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON state with the kind, sklearn objects by dotted name) of a model, nested models included."""
    kind = model_kind(model)
    state, objects = model._to_state()
    state = {"kind": kind, **state}
    inner = getattr(model, "model_", None) if kind == "conformal" else getattr(model, "latency_model_", None)
    if inner is not None:
        inner_state, inner_objects = _model_state(inner)
        state["inner"] = inner_state
        objects.update({f"inner.{k}": v for k, v in inner_objects.items()})
    return state, objects


def _model_from_state(state: Mapping[str, Any], objects: Mapping[str, Any]) -> Any:
    registry = _registry()
    kind = state.get("kind")
    if kind not in registry:
        raise ModelFileError(f"unknown model kind {kind!r} in the bundle: upgrade perfscope")
    own = {k: v for k, v in objects.items() if not k.startswith("inner.")}
    inner = None
    if "inner" in state:
        inner = _model_from_state(state["inner"], {k[len("inner."):]: v for k, v in objects.items()
                                                   if k.startswith("inner.")})
    cls = registry[kind]
    if kind == "conformal":
        return cls._from_state(state, own, inner)
    if kind == "energy":
        return cls._from_state(state, own, inner)
    return cls._from_state(state, own)


def _trees(obj: Any) -> list[Any]:
    """Every fitted decision tree inside ``obj`` (a tree, a forest, or nested ensembles)."""
    if hasattr(obj, "tree_"):
        return [obj]
    return [tree for inner in (getattr(obj, "estimators_", None) or []) for tree in _trees(inner)]


def _check_trees(objects: Mapping[str, Any]) -> None:
    """Refuse decision trees whose node indices point outside the tree (crafted files)."""
    for name, obj in objects.items():
        for tree in _trees(obj):
            t = tree.tree_
            count = t.node_count
            n_features = getattr(tree, "n_features_in_", t.n_features)
            left, right, feature = t.children_left, t.children_right, t.feature
            leaf = left == -1
            bad = ((left < -1) | (left >= count) | (right < -1) | (right >= count) | (leaf != (right == -1))
                   | (~leaf & ((feature < 0) | (feature >= n_features))))
            if len(left) != count or len(right) != count or t.value.shape[0] != count or bad.any():
                raise ModelFileError(f"{name}: a decision tree has out-of-range node indices: the file is corrupt "
                                     "or crafted; do not use it")


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
    model's files (for example its own figures). The directory is created; files of a
    previous bundle there are replaced.
    """
    sio = _skops_io()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ModelFileError(f"{out} exists and is not a directory: choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ModelFileError(f"{out} is a non-empty directory that holds no perfscope model: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous_bundle(out)
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
            skops_path = out / f"{name}.skops"
            payload = {"perfscope_format": FORMAT, "metadata_json": json.dumps(to_jsonable(meta), sort_keys=True),
                       "objects": dict(objects)}
            data = sio.dumps(payload)
            _write_bytes(skops_path, data)
            files[skops_path.name] = _sha256(data)
        document = _sealed({"format": FORMAT, "format_version": FORMAT_VERSION, "kind": state["kind"],
                            "metadata": meta, "state": state})
        json_bytes = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
        _write_bytes(out / f"{name}.json", json_bytes)
        files[f"{name}.json"] = _sha256(json_bytes)
        entries[name] = {"kind": state["kind"], "files": files}
    manifest = _sealed({"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
                        "metadata": {**common, **dict(metadata or {})}, "models": entries})
    _write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return out


def _remove_previous_bundle(out: Path) -> None:
    """Delete the files a previous bundle's manifest lists (so no stale model lingers)."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return
    try:
        listed = json.loads(manifest.read_text()).get("models", {})
        names = [name for entry in listed.values() for name in entry.get("files", {})]
    except (OSError, ValueError, AttributeError):
        raise ModelFileError(f"{manifest} is unreadable: remove {out} or choose another --out") from None
    for name in names:
        if Path(name).name == name:
            (out / name).unlink(missing_ok=True)
    manifest.unlink()


def _features_of(model: Any) -> dict[str, Any]:
    from perfscope.models.forest import FOREST_FEATURES, PAPER_FEATURES
    from perfscope.models.roofline_model import LOG_LINEAR_FEATURES

    kind = model_kind(model)
    if kind == "conformal":
        return _features_of(model.model_)
    features = {"forest": list(FOREST_FEATURES), "paper_baseline": list(PAPER_FEATURES),
                "log_linear": list(LOG_LINEAR_FEATURES), "roofline": ["bound_time_s", "bound", "kernel", "dtype"],
                "energy": ["time_s", "flops", "min_bytes"]}[kind]
    return {"features": features, "targets": list(getattr(model, "targets_", ()))}


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise ModelFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def load_bundle(path: str | Path) -> ModelBundle:
    """Load a bundle written by ``save_bundle``, verifying every hash and skops type first."""
    sio = _skops_io()
    from skops.io.exceptions import UntrustedTypesFoundException

    root = Path(path)
    if not root.is_dir():
        raise ModelFileError(f"no perfscope model at {root}: a model is a directory with a {MANIFEST}")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ModelFileError(f"{root} is not a perfscope model (no {MANIFEST})")
    manifest = _read_sealed(manifest_path, BUNDLE_FORMAT)
    models: dict[str, Any] = {}
    model_metadata: dict[str, dict[str, Any]] = {}
    for name, entry in manifest.get("models", {}).items():
        files = entry.get("files", {})
        for file_name, digest in files.items():
            file_path = root / file_name
            if Path(file_name).name != file_name:
                raise ModelFileError(f"{manifest_path} names a file outside the bundle ({file_name!r})")
            try:
                data = file_path.read_bytes()
            except FileNotFoundError:
                raise ModelFileError(f"{file_path} is missing: the model bundle is incomplete") from None
            if _sha256(data) != digest:
                raise ModelFileError(f"{file_path} was modified after it was saved (SHA-256 differs from "
                                     f"{MANIFEST}): retrain the model or restore the file")
        document = _read_sealed(root / f"{name}.json", FORMAT)
        objects: dict[str, Any] = {}
        skops_name = f"{name}.skops"
        if skops_name in files:
            skops_path = root / skops_name
            untrusted = sio.get_untrusted_types(file=skops_path)
            refused = sorted(set(untrusted) - set(TRUSTED_SKOPS_TYPES))
            if refused:
                raise ModelFileError(f"{skops_path} holds types perfscope does not trust: {', '.join(refused)}; "
                                     "it was not written by perfscope: do not load it")
            try:
                payload = sio.load(skops_path, trusted=sorted(set(untrusted)))
            except UntrustedTypesFoundException as exc:
                raise ModelFileError(f"{skops_path}: {exc}") from None
            except Exception as exc:  # skops raises many types on malformed archives
                raise ModelFileError(f"{skops_path} is not a readable skops file: {exc}") from None
            if not isinstance(payload, dict) or payload.get("perfscope_format") != FORMAT:
                raise ModelFileError(f"{skops_path} is not a perfscope model file")
            objects = dict(payload.get("objects", {}))
            _check_trees(objects)
        models[name] = _model_from_state(document["state"], objects)
        model_metadata[name] = document.get("metadata", {})
    return ModelBundle(models=models, metadata=manifest.get("metadata", {}), path=root,
                       model_metadata=model_metadata)
