"""Replacing a bundle directory whole: a hidden staging directory renamed into place.

A bundle is written into ``.<name>.tmp-<pid>`` beside its target and renamed over it;
a previous bundle is first moved aside to ``.<name>.old-<pid>`` and deleted after (put
back if the rename fails), so a crash never leaves a half-written bundle. The next save
clears what dead writers left and restores a bundle a crash left moved aside.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

from perfscope.errors import ModelFileError
from perfscope.models.bundle_format import FORMAT, FORMAT_KEY, MANIFEST
from perfscope.store_locks import process_alive

_BUNDLE_FILE = re.compile(r"\.?[A-Za-z0-9_-]+\.(json|npz)(\.tmp)?")


def replaceable(out: Path) -> bool:
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


def staging_dir(out: Path) -> Path:
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


def move_into_place(staging: Path, out: Path) -> None:
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
