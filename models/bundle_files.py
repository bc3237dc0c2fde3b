"""Reading a model bundle's files defensively: what ``load_bundle`` opens and parses.

A bundle may come from anywhere, so before anything is parsed:

- only regular files are read: a symlink (to ``/dev/zero``, say), a FIFO, a device or a
  directory is refused from ``lstat``, without being opened (a FIFO would block, a
  device would never end); the file is then opened with ``O_NOFOLLOW | O_NONBLOCK`` and
  checked again, so a swap in between is refused too;
- its size is checked against a limit before reading, and no more than the limit is read;
- JSON nesting is bounded (``MAX_JSON_DEPTH``) before ``json.loads`` sees the text, so a
  deeply nested document is a one-line refusal, not a ``RecursionError``;
- the manifest and the model documents are checked against a small schema (the keys,
  their types, file names inside the bundle) so that a malformed one is refused by name
  rather than failing later with ``KeyError``.

Every refusal is a ``ModelFileError`` (exit status 2) raised by the caller's factory.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MAX_JSON_BYTES = 256 * 2**20  # a manifest or a model document (analytical states are small tables)
MAX_ARRAY_BYTES = 4 * 2**30  # a forest archive
MAX_JSON_DEPTH = 64  # perfscope writes at most ~8 levels
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)

Refuse = Callable[[str], Exception]


def read_regular_file(path: Path, limit_bytes: int, refuse: Refuse) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit_bytes``, else ``refuse(reason)``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise refuse(f"{path} is missing: the model bundle is incomplete") from None
    except OSError as exc:
        raise refuse(f"cannot read {path}: {exc.strerror or exc}") from None
    _check_regular(path, info, limit_bytes, refuse)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise refuse(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        opened = os.fstat(fd)
        _check_regular(path, opened, limit_bytes, refuse)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise refuse(f"{path} changed while it was being opened: refused")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit_bytes:
                raise refuse(f"{path} grew past {limit_bytes} bytes while it was read: refused")
    except OSError as exc:
        raise refuse(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _check_regular(path: Path, info: os.stat_result, limit_bytes: int, refuse: Refuse) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise refuse(f"{path} is a symbolic link: a model bundle holds regular files only")
    if not stat.S_ISREG(info.st_mode):
        raise refuse(f"{path} is not a regular file (a {_kind(info.st_mode)}): a model bundle holds regular "
                     "files only")
    if info.st_size > limit_bytes:
        raise refuse(f"{path} is {info.st_size} bytes, more than the {limit_bytes} a model file may have")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def json_depth(data: bytes) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON text (strings ignored), without parsing it."""
    skeleton = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    if skeleton.size == 0:
        return 0
    opens = (skeleton == ord("[")) | (skeleton == ord("{"))
    closes = (skeleton == ord("]")) | (skeleton == ord("}"))
    return int(np.cumsum(opens.astype(np.int64) - closes.astype(np.int64)).max(initial=0))


def load_json(path: Path, refuse: Refuse) -> Any:
    """Parse the JSON file ``path``: regular, bounded in size and in depth."""
    return parse_json(read_regular_file(path, MAX_JSON_BYTES, refuse), path, refuse)


def parse_json(data: bytes, path: Path, refuse: Refuse) -> Any:
    """Parse JSON read from ``path``, refusing nesting deeper than ``MAX_JSON_DEPTH`` first."""
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise refuse(f"{path} nests {depth} levels deep, more than the {MAX_JSON_DEPTH} a model file may have: "
                     "it was not written by perfscope")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise refuse(f"{path} is not a perfscope model file (not readable JSON: {str(exc)[:200]})") from None


def check_manifest(manifest: dict[str, Any], path: Path, refuse: Refuse) -> None:
    """Refuse a manifest whose structure is not ``{"metadata": {...}, "models": {NAME: {"kind": str,
    "files": {FILE: sha256}}}}`` with NAME and FILE plain names inside the bundle."""
    _expect(manifest.get("metadata", {}), dict, f"{path}: metadata", refuse)
    models = _expect(manifest.get("models"), dict, f"{path}: models", refuse)
    for name, entry in models.items():
        if not _NAME.fullmatch(name):
            raise refuse(f"{path} names a model {name!r}: not a plain name (letters, digits, - and _)")
        entry = _expect(entry, dict, f"{path}: models.{name}", refuse)
        _expect(entry.get("kind"), str, f"{path}: models.{name}.kind", refuse)
        files = _expect(entry.get("files"), dict, f"{path}: models.{name}.files", refuse)
        for file_name, digest in files.items():
            if Path(file_name).name != file_name or file_name not in (f"{name}.json", f"{name}.npz"):
                raise refuse(f"{path} names a file {file_name!r} for model {name!r}: only {name}.json and "
                             f"{name}.npz belong to it")
            if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
                raise refuse(f"{path}: models.{name}.files.{file_name} is not a SHA-256 digest")
        if f"{name}.json" not in files:
            raise refuse(f"{path}: model {name!r} lists no {name}.json")


def check_document(document: dict[str, Any], path: Path, refuse: Refuse) -> None:
    """Refuse a model document without a ``state`` mapping naming its ``kind`` or with
    non-mapping ``metadata``."""
    _expect(document.get("metadata", {}), dict, f"{path}: metadata", refuse)
    state = _expect(document.get("state"), dict, f"{path}: state", refuse)
    _expect(state.get("kind"), str, f"{path}: state.kind", refuse)


def _expect(value: Any, kind: type, where: str, refuse: Refuse) -> Any:
    if not isinstance(value, kind):
        shown = "missing" if value is None else f"a {type(value).__name__}"
        raise refuse(f"{where} is {shown}, not a {'mapping' if kind is dict else kind.__name__}: "
                     "not a perfscope model file")
    return value
