"""The marker file that makes a directory a perfscope dataset, finding datasets by it, and
the temporary names files are written under before they are renamed into place.

``DATASET/_perfscope-dataset.json`` holds the format and the schema version
(``perfscope-dataset.json`` in datasets written before the rename: still read, and
renamed when such a dataset is opened for writing).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from perfscope.errors import SchemaVersionError, StoreError
from perfscope.schema import SCHEMA_VERSION

META_FILE = "_perfscope-dataset.json"
LEGACY_META_FILE = "perfscope-dataset.json"
MARKER_FILES = (META_FILE, LEGACY_META_FILE)
FORMAT = "perfscope-profile-dataset"
TMP_PREFIX = ".tmp-"  # written files start hidden from every reader, then are renamed


def tmp_name(final: Path) -> Path:
    """Where a file is written before it is renamed to ``final`` (hidden from every reader)."""
    return final.with_name(f"{TMP_PREFIX}{final.name}.{os.getpid()}")


def is_dataset(path: Path) -> bool:
    """Whether ``path`` holds a dataset marker (of either name)."""
    return any((path / name).is_file() for name in MARKER_FILES)


def find_datasets(base: Path) -> list[Path]:
    """``base`` if it is a dataset, then the datasets directly under it."""
    found = sorted({p.parent for name in MARKER_FILES for p in base.glob(f"*/{name}")})
    return ([base] if is_dataset(base) else []) + found


def find_marker(root: Path) -> Path | None:
    """The marker file of the dataset at ``root`` (the current name first), or None."""
    return next((root / n for n in MARKER_FILES if (root / n).is_file()), None)


def write_marker(root: Path, *, remove_legacy: bool = False) -> None:
    """Write the marker under a name of this process, then rename it into place:
    processes creating one dataset at once each write a whole marker (the same)."""
    text = json.dumps({"format": FORMAT, "schema_version": SCHEMA_VERSION,
                       "created_at": datetime.now(timezone.utc).isoformat()}, indent=2) + "\n"
    path = root / META_FILE
    tmp = tmp_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
        if remove_legacy:
            (root / LEGACY_META_FILE).unlink(missing_ok=True)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot create a dataset at {root}: {exc.strerror or exc}") from None


def check_marker(root: Path, meta: Path) -> None:
    """``StoreError`` unless ``meta`` describes a perfscope dataset; ``SchemaVersionError``
    if its schema is newer than this perfscope reads."""
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{meta} is unreadable: {exc}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise StoreError(f"{meta} does not describe a perfscope dataset")
    version = info.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{root} has schema version {version!r}; this perfscope reads up to "
            f"{SCHEMA_VERSION}: upgrade perfscope")
