"""The device registry: the one place that turns a device's name into its figures.

A device is named four ways, and ``DeviceRef`` holds all four:

* a *selector* picks hardware to measure on: ``cpu``, ``cuda``, ``cuda:0``
  (``perfscope.devices.select_device``);
* a *spec id* names a row of the vendor spec table ``data/devices.csv``: ``h100-sxm``;
* a *key* names a device in datasets and calibrated profiles: ``cuda-nvidia-h100-80gb-hbm3``,
  ``cpu-amd-epyc`` (``Device.key``: the kind and the slug of the name);
* a *display name*: ``NVIDIA H100 80GB HBM3``.

The registry owns the spec table (rows parsed by ``perfscope.devicespecs``), the name
matching (``find_device_spec``: id, name or alias, case- and punctuation-insensitive),
the calibrated profiles (``save_profile``, ``find_profile``; JSON files in
``profile_dir()``, the XDG *data* directory, with the old XDG *cache* location still
read) and resolution from any name to figures (``resolve_device``, ``resolve_row_devices``):
a calibrated profile beats the spec table, which beats figures declared at import
(``perfscope.devices.declared``: ``--peak-flops``/``--bandwidth``, carried by the rows
themselves), and every answer says which it used.

Numpy-free and pandas-free: it is on the light path of ``perfscope estimate``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from perfscope.devices.base import slugify
from perfscope.devices.cpu import CpuDevice
from perfscope.devices.profile import DeviceProfile
from perfscope.devicespecs import DeviceSpec, RooflineDevice, load_device_specs
from perfscope.errors import InvalidInputError, NotFoundError
from perfscope.store_marker import is_dataset

PROFILE_SUBDIR = "devices"
DATASET_PROFILE_SUBDIR = "_devices"  # a dataset's own profiles (Parquet readers skip "_" folders)
CPU_NAMES = ("cpu", "local-cpu", "this-cpu")  # normalised names of "this machine's CPU"

Resolved = tuple[DeviceSpec | DeviceProfile, str]
"""``(device, "calibrated" | "spec")``: a device's figures and where they come from."""


@dataclass(frozen=True)
class DeviceRef:
    """One device under all its names (None where a name does not apply or is unknown)."""

    key: str  # dataset / profile key: cuda-nvidia-h100-80gb-hbm3, cpu-amd-epyc, or the spec id
    name: str  # display name
    spec_id: str | None = None  # row of data/devices.csv
    selector: str | None = None  # cpu, cuda:N: only for hardware on this machine


# ---- names and the spec table -------------------------------------------------------------

def normalise_device_name(text: str) -> str:
    """Case-, space- and punctuation-insensitive form of a device name or alias
    (the same slug that names dataset partitions; empty for an empty name)."""
    slug = slugify(text)
    return "" if slug == "unknown" and "unknown" not in text.lower() else slug


@functools.lru_cache(maxsize=1)
def _alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for device_id, spec in load_device_specs().items():
        for name in (device_id, spec.name, *spec.aliases):
            key = normalise_device_name(name)
            other = index.setdefault(key, device_id)
            if other != device_id:
                raise InvalidInputError(f"device spec table: alias {name!r} names both {other} and {device_id}")
    return index


def find_device_spec(name_or_id: str) -> DeviceSpec | None:
    """The spec row whose id, name or alias matches ``name_or_id`` (case- and
    punctuation-insensitive; a dataset key ``cuda-<name>`` matches as its name), or None.

    The one place names are matched to spec rows: no fuzzy matching ("H100 NVL" must not
    silently become the SXM part). A PCI-database style name, as rocm-smi may write it
    (``Navi 31 [Radeon Pro W7800]``, ``Aldebaran/MI200 [Instinct MI250X/MI250]``), matches
    by the name in its brackets, whole or one of its ``/`` parts."""
    index = _alias_index()
    bracketed = _BRACKETED.search(name_or_id)
    inner = [bracketed.group(1), *bracketed.group(1).split("/")] if bracketed else []
    for candidate in (name_or_id, *inner):
        wanted = normalise_device_name(candidate)
        device_id = index.get(wanted)
        for kind in ("cuda-", "rocm-"):
            if device_id is None and wanted.startswith(kind):
                device_id = index.get(wanted[len(kind):])
        if device_id:
            return load_device_specs()[device_id]
    return None


_BRACKETED = re.compile(r"\[([^\]]+)\]")


def device_spec(name_or_id: str) -> DeviceSpec:
    """The spec row for an id or a common name ("H100", "NVIDIA GeForce RTX 4070", ...);
    ``InvalidInputError`` listing the known ids when nothing matches."""
    spec = find_device_spec(name_or_id)
    if spec is None:
        known = ", ".join(sorted(load_device_specs()))
        raise NotFoundError(f"unknown device {name_or_id!r}: use one of {known} "
                            "(or calibrate this machine with `perfscope calibrate`)")
    return spec


# Name fragments that tell the vendor when the spec table has no row for a device.
_VENDOR_HINTS = (("rocm", re.compile(r"\b(amd|radeon|instinct|mi\d{2,3}[a-z]?|gfx\d+)", re.IGNORECASE)),
                 ("cuda", re.compile(r"\b(nvidia|geforce|quadro|tesla|titan|rtx|gtx|[ahlbv]\d{2,3}\b)", re.IGNORECASE)),
                 ("xpu", re.compile(r"\bintel\b|\barc\b", re.IGNORECASE)))
_VENDOR_KIND = {"NVIDIA": "cuda", "AMD": "rocm", "INTEL": "xpu"}


def device_kind_for(name: str, spec: DeviceSpec | None = None) -> str:
    """The device kind of a GPU by its vendor: ``cuda`` (NVIDIA), ``rocm`` (AMD), ``xpu``
    (Intel), else ``gpu`` (vendor unknown). The spec row's vendor wins over the name."""
    if spec is None and name:
        spec = find_device_spec(name)
    if spec is not None and spec.vendor.upper() in _VENDOR_KIND:
        return _VENDOR_KIND[spec.vendor.upper()]
    for kind, pattern in _VENDOR_HINTS:
        if pattern.search(name or ""):
            return kind
    return "gpu"


# ---- calibrated profiles ------------------------------------------------------------------

def profile_dir() -> Path:
    """Where new profiles go: ``$PERFSCOPE_HOME/devices``, else
    ``$XDG_DATA_HOME/perfscope/devices`` (``~/.local/share/perfscope/devices``): measured
    data, not a cache that cleaners may delete."""
    home = os.environ.get("PERFSCOPE_HOME")
    if home:
        return Path(home).expanduser() / PROFILE_SUBDIR
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "perfscope" / PROFILE_SUBDIR


def legacy_profile_dir() -> Path | None:
    """Where earlier versions saved profiles (``$XDG_CACHE_HOME/perfscope/devices``), still
    read; None under ``$PERFSCOPE_HOME``."""
    if os.environ.get("PERFSCOPE_HOME"):
        return None
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "perfscope" / PROFILE_SUBDIR


@functools.lru_cache(maxsize=1)
def shipped_profile_dir() -> Path:
    """Calibrated profiles of the machines the shipped sample profiles were measured on."""
    return Path(str(resources.files("perfscope.data"))) / "samples" / "devices"


def profile_path(device_key: str, directory: Path | str | None = None) -> Path:
    """The file of ``device_key``'s profile in ``directory`` (default ``profile_dir()``)."""
    folder = Path(directory) if directory is not None else profile_dir()
    return folder / f"{slugify(device_key)}.json"


def save_profile(profile: DeviceProfile, path: Path | str | None = None) -> Path:
    """Write ``profile`` as JSON (atomically) to ``path`` or its default location; return the path."""
    target = Path(path) if path is not None else profile_path(profile.device_key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(profile.to_json_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target


_LOADED_PROFILES: dict[str, tuple[tuple[int, int, int], DeviceProfile]] = {}


def load_profile(path: Path | str) -> DeviceProfile:
    """Read a profile written by ``save_profile`` (``InvalidInputError`` if missing or malformed).

    The profile read last from each path is kept and returned again while the file's
    modification time, size and inode are unchanged (``save_profile`` replaces the file,
    so a new calibration is always read): parsing costs ~0.2 ms, a stat ~5 us, and every
    estimate resolves its device.
    """
    path = Path(path)
    try:
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = _LOADED_PROFILES.get(str(path))
        if cached is not None and cached[0] == version:
            return cached[1]
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"no device profile at {path}: run `perfscope calibrate` first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read device profile {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} is not a perfscope device profile")
    try:
        profile = DeviceProfile.from_json_dict(data)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from None
    _LOADED_PROFILES[str(path)] = (version, profile)
    return profile


def _profile_dirs(directory: Path | str | None) -> list[Path]:
    if directory is not None:
        return [Path(directory)]
    return [d for d in (profile_dir(), legacy_profile_dir()) if d is not None]


def find_profile_file(device_key: str, directory: Path | str | None = None) -> Path | None:
    """The file ``find_profile`` reads for ``device_key``, or None."""
    name = profile_path(device_key, ".").name
    folders = _profile_dirs(directory) + ([shipped_profile_dir()] if directory is None else [])
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


def find_profile(device_key: str, directory: Path | str | None = None) -> DeviceProfile | None:
    """The saved profile of ``device_key``, or None. Without a ``directory``: the user's
    profiles (``profile_dir()``, then the legacy cache location) come first, then those
    shipped with the sample profiles (``data/samples/devices``)."""
    path = find_profile_file(device_key, directory)
    return load_profile(path) if path is not None else None


def dataset_profile_dirs(dataset: Path | str) -> list[Path]:
    """Where a dataset keeps its own device profiles: ``<dataset>/_devices/``, and for the
    sample datasets shipped with perfscope the profiles shipped beside them."""
    path = Path(dataset).expanduser().resolve()
    folders = [path / DATASET_PROFILE_SUBDIR]
    shipped = shipped_profile_dir().resolve()
    if shipped.parent == path or shipped.parent in path.parents:
        folders.append(shipped)
    return [folder for folder in folders if folder.is_dir()]


def check_dataset_for_profile(dataset: Path | str) -> Path:
    """``dataset`` as a path, if it is a perfscope dataset that can carry a profile."""
    path = Path(dataset).expanduser()
    if not is_dataset(path):
        raise InvalidInputError(f"{path} is not a perfscope dataset (no dataset marker): give the folder "
                                "`perfscope collect` or `perfscope import` wrote")
    return path


def save_dataset_profile(profile: DeviceProfile, dataset: Path | str) -> Path:
    """Store ``profile`` with ``dataset`` (``<dataset>/_devices/``): the dashboard then draws
    that dataset's calibrated ceilings from it, whoever views it."""
    folder = check_dataset_for_profile(dataset) / DATASET_PROFILE_SUBDIR
    return save_profile(profile, profile_path(profile.device_key, folder))


def find_dataset_profile(device_key: str, device_name: str | None,
                         datasets: Iterable[Path | str]) -> tuple[DeviceProfile, Path] | None:
    """The profile a dataset carries for its device (by key, then by device name) and its
    file, or None. It wins over the viewer's own calibration: it describes the machine the
    rows were measured on."""
    name = profile_path(device_key, ".").name
    wanted = normalise_device_name(device_name) if device_name else None
    for dataset in datasets:
        for folder in dataset_profile_dirs(dataset):
            if (folder / name).is_file():
                return load_profile(folder / name), folder / name
            for path in sorted(folder.glob("*.json")) if wanted else ():
                try:
                    profile = load_profile(path)
                except InvalidInputError:
                    continue
                if normalise_device_name(profile.name) == wanted:
                    return profile, path
    return None


def list_profiles(directory: Path | str | None = None) -> list[DeviceProfile]:
    """Every readable profile in ``directory`` (default: ``profile_dir()`` and the legacy
    cache location, the first of two files of one name winning); unreadable files are skipped."""
    seen: set[str] = set()
    out = []
    for folder in _profile_dirs(directory):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            if path.name in seen:
                continue
            seen.add(path.name)
            try:
                out.append(load_profile(path))
            except InvalidInputError:
                continue
    return out


# ---- resolution ---------------------------------------------------------------------------

def resolve_device(name_or_key: str, *, directory: Path | str | None = None) -> Resolved:
    """The device to model and where its figures come from: ``(device, "calibrated" | "spec")``.

    A calibrated profile wins over the spec table. ``name_or_key`` may be a device key
    as rows and profiles record it (``cuda-nvidia-h100-80gb-hbm3``), a device name or alias (``H100``,
    ``NVIDIA GeForce RTX 4070``), a spec id (``h100-sxm``) or ``cpu`` for this machine's
    CPU, which has no spec row: it must have been calibrated.
    """
    query = name_or_key.strip()
    if not query:
        raise InvalidInputError("no device given: name a GPU (for example h100-sxm) or cpu")
    if normalise_device_name(query) in CPU_NAMES:
        key = CpuDevice().key
        profile = find_profile(key, directory)
        if profile is None:
            raise NotFoundError(f"no calibrated profile for this CPU ({key}): run `perfscope calibrate` "
                                "on it first (CPU peaks are measured, never taken from a table)")
        return profile, "calibrated"
    profile = find_profile(query, directory)
    if profile is not None:
        return profile, "calibrated"
    spec = find_device_spec(query)
    wanted = normalise_device_name(query)
    for candidate in list_profiles(directory):
        spec_id = candidate.spec_id or _spec_id_of(candidate.name)
        if normalise_device_name(candidate.name) == wanted or (spec is not None and spec_id == spec.device_id):
            return candidate, "calibrated"
    if spec is not None:
        return spec, "spec"
    calibrated = [p.device_key for p in list_profiles(directory)]
    raise InvalidInputError(
        f"unknown device {name_or_key!r}: use a spec-table id ({', '.join(sorted(load_device_specs()))})"
        + (f" or a calibrated profile ({', '.join(calibrated)})" if calibrated else "")
        + ", or run `perfscope calibrate` on it")


def resolve_row_device(device_key: str | None, device_name: str | None, *,
                       directory: Path | str | None = None) -> Resolved | None:
    """``resolve_device`` for a dataset row's device: by its key, then by its name; None
    when neither is known (rows name their device both ways, imports sometimes only one)."""
    for query in (device_key, device_name):
        if not isinstance(query, str) or not query.strip():
            continue
        try:
            return resolve_device(query, directory=directory)
        except InvalidInputError:
            continue
    return None


def resolve_row_devices(device_keys: Iterable[object], device_names: Iterable[object] | None = None,
                        devices: Mapping[str, RooflineDevice] | None = None, *,
                        declared: Mapping[str, RooflineDevice] | None = None) -> dict[str, RooflineDevice]:
    """The device of every distinct key in ``device_keys``: ``{device_key: device}``.

    ``devices`` (keyed by device key) wins; otherwise ``resolve_row_device`` finds each
    key by itself, then by the first ``device_names`` entry beside it (a calibrated
    profile, then a spec row); then ``declared`` (figures declared at import,
    ``perfscope.devices.declared.declared_devices(rows)``). ``InvalidInputError`` names
    the devices that have none of these, and what to do."""
    given = dict(devices or {})
    names = list(device_names) if device_names is not None else None
    first_name: dict[str, object] = {}
    for i, key in enumerate(device_keys):
        first_name.setdefault(str(key), names[i] if names is not None else None)
    out: dict[str, RooflineDevice] = {}
    missing = []
    for key, name in first_name.items():
        if key in given:
            out[key] = given[key]
            continue
        found = resolve_row_device(key, name if isinstance(name, str) else None)
        if found is not None:
            out[key] = found[0]
        elif declared is not None and key in declared:
            out[key] = declared[key]
        else:
            missing.append(f"{key} ({name})" if isinstance(name, str) else key)
    if missing:
        raise InvalidInputError(f"no roofline figures for device(s) {', '.join(missing)}: run `perfscope calibrate` "
                                "on them (a CPU always needs it), name a spec-table GPU, or declare its peaks "
                                "at import (--peak-flops, --bandwidth)")
    return out


def device_ref(name_or_key: str, *, directory: Path | str | None = None) -> DeviceRef:
    """All the names of the device ``name_or_key`` resolves to (``resolve_device``)."""
    device, _source = resolve_device(name_or_key, directory=directory)
    if isinstance(device, DeviceProfile):
        selector = "cpu" if device.kind == "cpu" else None
        return DeviceRef(key=device.device_key, name=device.name,
                         spec_id=device.spec_id or _spec_id_of(device.name), selector=selector)
    return DeviceRef(key=device.device_id, name=device.name, spec_id=device.device_id)


def _spec_id_of(name: str) -> str | None:
    spec = find_device_spec(name)
    return spec.device_id if spec else None
