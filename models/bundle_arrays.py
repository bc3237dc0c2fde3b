"""A bundle's forests as a numpy archive: every tree as arrays, never a pickled object.

A forest is stored as the arrays of ``perfscope.models.tree_arrays.ForestArrays``
(``<object>/<array>`` in the archive, written by ``np.savez``, read with
``np.load(allow_pickle=False)``), beside the format marker and the metadata; reading
checks the marker, refuses unexpected arrays and validates every forest before use.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from perfscope.errors import ModelFileError
from perfscope.models.bundle_format import FORMAT, FORMAT_KEY, METADATA_KEY, to_jsonable
from perfscope.models.tree_arrays import ForestArrays


def npz_bytes(objects: Mapping[str, Any], metadata: Mapping[str, Any]) -> bytes:
    """An npz archive of every forest's arrays (``<object>/<array>``) with the format marker and metadata."""
    arrays: dict[str, np.ndarray] = {FORMAT_KEY: np.array(FORMAT),
                                     METADATA_KEY: np.array(json.dumps(to_jsonable(metadata), sort_keys=True))}
    for name, obj in objects.items():
        if not isinstance(obj, ForestArrays):
            raise ModelFileError(f"cannot save {name!r}, a {type(obj).__name__}: only forests as ForestArrays")
        arrays.update({f"{name}/{field}": array for field, array in obj.to_arrays().items()})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def objects_from_npz(path: Path, data: bytes) -> dict[str, Any]:
    """The forests of an npz archive (the bytes whose hash was checked), each validated."""
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
