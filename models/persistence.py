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
seconds). The model classes derive from ``LightEstimator``
(``perfscope.models.estimator_base``), scikit-learn's estimator API without importing
scikit-learn, for the same reason.

Loading refuses, with ``ModelFileError``: a directory or file that is not a perfscope
model (foreign), any file whose hash does not match (tampered or corrupted), an older
format (format 1 kept forests in skops files: retrain) or a newer one, an archive with
pickled or unexpected arrays, and trees whose arrays are inconsistent (node indices
out of range, leaves half-marked, split features out of range: ``ForestArrays``
checks them before use). The hashes detect accidental or careless changes; they are
not a signature (whoever can write the files can rewrite the hashes), so load bundles
from sources you trust.

The parts: ``bundle_format`` (markers, sealed JSON, metadata), ``bundle_files`` (reading
files defensively, the manifest's schema), ``bundle_arrays`` (forests as npz),
``model_kinds`` (model kinds and states), ``bundle_dirs`` (replacing a directory whole);
this module writes and reads a bundle through them and re-exports their public names.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfscope.errors import ModelFileError
from perfscope.models import bundle_files
from perfscope.models.bundle_arrays import npz_bytes, objects_from_npz
from perfscope.models.bundle_dirs import move_into_place, replaceable, staging_dir
from perfscope.models.bundle_files import check_document, check_manifest, read_regular_file
from perfscope.models.bundle_format import (
    BUNDLE_FORMAT,
    FORMAT,
    FORMAT_KEY,
    FORMAT_VERSION,
    MANIFEST,
    METADATA_KEY,
    base_metadata,
    data_fingerprint,
    library_versions,
    read_sealed,
    sealed,
    sha256_hex,
    to_jsonable,
)
from perfscope.models.estimator_base import LightEstimator, LightRegressorMixin, check_is_fitted
from perfscope.models.model_kinds import features_of, model_from_state, model_kind, model_state

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

# No pandas at import: loading a bundle and predicting on column arrays
# (``perfscope estimate``) must not pay its import time.

__all__ = [
    "BUNDLE_FORMAT", "FORMAT", "FORMAT_KEY", "FORMAT_VERSION", "MANIFEST", "METADATA_KEY", "LightEstimator",
    "LightRegressorMixin", "ModelBundle", "ModelFileError", "base_metadata", "check_is_fitted", "data_fingerprint",
    "library_versions", "load_bundle", "model_kind", "save_bundle", "to_jsonable",
]


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
    if out.is_dir() and not replaceable(out):
        raise ModelFileError(f"{out} is a non-empty directory that holds no perfscope model: choose another place",
                             parameter="out")
    staging = staging_dir(out)
    try:
        _write_bundle(staging, models, rows, metadata, model_metadata)
        move_into_place(staging, out)
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
        state, objects = model_state(model)
        meta = {**common, "kind": state["kind"], "name": name, **features_of(model),
                **dict((model_metadata or {}).get(name, {}))}
        files: dict[str, str] = {}
        if objects:
            data = npz_bytes(objects, meta)
            _write_bytes(out / f"{name}.npz", data)
            files[f"{name}.npz"] = sha256_hex(data)
        document = sealed({"format": FORMAT, "format_version": FORMAT_VERSION, "kind": state["kind"],
                           "metadata": meta, "state": state})
        json_bytes = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
        _write_bytes(out / f"{name}.json", json_bytes)
        files[f"{name}.json"] = sha256_hex(json_bytes)
        entries[name] = {"kind": state["kind"], "files": files}
    manifest = sealed({"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
                       "metadata": {**common, **dict(metadata or {})}, "models": entries})
    _write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


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
    manifest = read_sealed(manifest_path, BUNDLE_FORMAT)
    check_manifest(manifest, manifest_path, ModelFileError)
    models: dict[str, Any] = {}
    model_metadata: dict[str, dict[str, Any]] = {}
    for name, entry in manifest["models"].items():
        contents: dict[str, bytes] = {}
        for file_name, digest in entry["files"].items():
            file_path = root / file_name
            # the limits are read now, not at import (tests lower them)
            limit = bundle_files.MAX_ARRAY_BYTES if file_name.endswith(".npz") else bundle_files.MAX_JSON_BYTES
            data = read_regular_file(file_path, limit, ModelFileError)
            if sha256_hex(data) != digest:
                raise ModelFileError(f"{file_path} was modified after it was saved (SHA-256 differs from "
                                     f"{MANIFEST}): retrain the model or restore the file")
            contents[file_name] = data
        document_path = root / f"{name}.json"
        document = read_sealed(document_path, FORMAT, contents[f"{name}.json"])
        check_document(document, document_path, ModelFileError)
        npz_name = f"{name}.npz"
        objects = objects_from_npz(root / npz_name, contents[npz_name]) if npz_name in contents else {}
        try:
            models[name] = model_from_state(document["state"], objects)
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
