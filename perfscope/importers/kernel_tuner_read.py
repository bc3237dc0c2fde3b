"""Reading Kernel Tuner output as shipped: cache files (``.json``, ``.json.gz``, cut-short
files) and the community's T4 results format, into one form.

A cache holds ``device_name``, ``kernel_name``, ``problem_size``, ``tune_params_keys``
and ``cache`` (configuration key -> entry). A T4 file (``{"schema_version", "results":
[{"configuration", "times": {"runtimes", ...}, "invalidity", "measurements", ...}]}``)
names neither the device nor the kernel nor the problem size: the importer's options, the
T1 file or the T4 metadata file Kernel Tuner writes beside it (``NAME-metadata.json``: the
machine's ``nvidia-smi``/``rocm-smi`` query) give them. Both become a ``TuningRecord``: entries in the cache's form
(parameter values, ``time`` in ms or Kernel Tuner's error string, ``times``, observers).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfscope.errors import InvalidInputError

REQUIRED_KEYS = ("device_name", "kernel_name", "tune_params_keys", "cache")
MAX_TEXT_BYTES = 1 << 30  # a decompressed cache larger than this is refused, not read into memory
MAX_PROBLEM_SIZE = 2**31 - 1  # the largest grid extent a GPU launches
# T4 "invalidity" -> the error string a cache would hold
_T4_INVALIDITY = {"compile": "CompilationFailedConfig", "runtime": "RuntimeFailedConfig",
                  "constraints": "InvalidConfig", "timeout": "Timeout", "correctness": "CorrectnessFailed"}


@dataclass
class TuningRecord:
    """What a Kernel Tuner file says, whatever its format."""

    format: str  # "cache" or "t4"
    device_name: str | None
    kernel_name: str | None
    problem_size: list[int] | None
    keys: list[str]
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def read_tuning_file(path: Path) -> TuningRecord:
    """A cache or T4 file as a ``TuningRecord`` (``InvalidInputError``, one line, when it is neither)."""
    text = _text(path)
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"{path.name}: JSON nested too deeply to be a Kernel Tuner file") from None
    except ValueError as exc:
        try:  # Kernel Tuner appends '"key": {...},' per entry and closes the file at the end
            data = json.loads(text.rstrip().rstrip(",") + "}\n}")
        except RecursionError:
            raise InvalidInputError(f"{path.name}: JSON nested too deeply to be a Kernel Tuner file") from None
        except ValueError:
            raise InvalidInputError(f"{path.name} is not a Kernel Tuner cache file (not JSON: {exc})") from None
    if isinstance(data, dict) and isinstance(data.get("results"), list) and "cache" not in data:
        return _t4(data, path)
    if _is_t4_metadata(data):
        raise InvalidInputError(f"{path.name} is a T4 metadata file (the machine, no measurements): import the "
                                "results file written beside it")
    return _cache(data, path)


def _is_t4_metadata(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("metadata"), dict) and "cache" not in data \
        and "results" not in data


def metadata_file_for(results: Path) -> Path | None:
    """The T4 metadata file Kernel Tuner writes beside a results file, or None when there is
    none: ``X-results.json[.gz]`` or ``X.json[.gz]`` -> ``X-metadata.json[.gz]`` (either
    compression; the benchmark hub names results ``-results``, Kernel Tuner's examples do not)."""
    name = results.name
    for suffix in ("-results.json.gz", "-results.json", ".json.gz", ".json"):
        if name.endswith(suffix):
            stem = name[:-len(suffix)]
            for candidate in (f"{stem}-metadata.json", f"{stem}-metadata.json.gz"):
                if (results.parent / candidate).is_file():
                    return results.parent / candidate
    return None


def metadata_device_name(path: Path) -> str | None:
    """The GPU a T4 metadata file's device query names (``nvidia-smi``'s ``product_name``,
    ``rocm-smi``'s card series or device name), or None when it names none or several
    different ones (a multi-GPU machine: which one ran is not recorded)."""
    try:
        data = json.loads(_text(path))
    except (ValueError, RecursionError):
        raise InvalidInputError(f"{path.name}: the T4 metadata file is not JSON") from None
    if not _is_t4_metadata(data):
        raise InvalidInputError(f"{path.name} is not a T4 metadata file (no 'metadata' object)")
    environment = data["metadata"].get("environment")
    query = environment.get("device_query") if isinstance(environment, dict) else None
    if not isinstance(query, dict):
        return None
    names = set()
    smi = query.get("nvidia-smi")
    gpus = smi.get("nvidia_smi_log", {}).get("gpu") if isinstance(smi, dict) and \
        isinstance(smi.get("nvidia_smi_log"), dict) else None
    for gpu in gpus if isinstance(gpus, list) else [gpus]:
        if isinstance(gpu, dict) and isinstance(gpu.get("product_name"), str) and _known(gpu["product_name"]):
            names.add(gpu["product_name"].strip())
    rocm = query.get("rocm-smi")
    for card, fields in (rocm.items() if isinstance(rocm, dict) else []):
        if not str(card).lower().startswith("card") or not isinstance(fields, dict):
            continue
        lower = {str(key).strip().lower(): value for key, value in fields.items()}
        for key in ("card series", "device name", "card model"):
            value = lower.get(key)
            if isinstance(value, str) and _known(value):
                names.add(value.strip())
                break
    return names.pop() if len(names) == 1 else None


def _known(value: str) -> bool:
    """A device query's field that names something (not empty, "N/A", "unknown" or a hex id)."""
    text = value.strip().lower()
    return bool(text) and text not in ("n/a", "na", "unknown", "none") and not text.startswith("0x")


def _text(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as fh:
            raw = fh.read(MAX_TEXT_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from None
    if len(raw) > MAX_TEXT_BYTES:
        raise InvalidInputError(f"{path.name} holds more than {MAX_TEXT_BYTES >> 20} MiB of JSON: split it first")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"cannot read {path}: not UTF-8 text ({exc.reason})") from None


def _cache(data: Any, path: Path) -> TuningRecord:
    if not isinstance(data, dict) or any(key not in data for key in REQUIRED_KEYS):
        missing = [key for key in REQUIRED_KEYS if not isinstance(data, dict) or key not in data]
        raise InvalidInputError(f"{path.name} is not a Kernel Tuner cache file: missing {', '.join(missing)}")
    if not isinstance(data["cache"], dict):
        raise InvalidInputError(f"{path.name}: 'cache' is not an object")
    keys = _keys(data["tune_params_keys"], path)
    entries = []
    for key, entry in data["cache"].items():
        if not isinstance(entry, dict):
            raise InvalidInputError(f"{path.name}: cache entry {key!r} is not an object")
        entries.append((str(key), entry))
    return TuningRecord("cache", _text_field(data["device_name"], "device_name", path),
                        _text_field(data["kernel_name"], "kernel_name", path),
                        problem_size(data.get("problem_size"), path), keys, entries)


def _t4(data: dict[str, Any], path: Path) -> TuningRecord:
    keys: list[str] = []
    entries = []
    for i, result in enumerate(data["results"]):
        config = result.get("configuration") if isinstance(result, dict) else None
        if not isinstance(config, dict):
            raise InvalidInputError(f"{path.name}: T4 result {i} has no 'configuration' object")
        for name in config:
            if name not in keys:
                keys.append(str(name))
        entry: dict[str, Any] = dict(config)
        for item in result.get("measurements") or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] not in config:
                entry[item["name"]] = item.get("value")
        times = result.get("times") if isinstance(result.get("times"), dict) else {}
        runtimes = times.get("runtimes")
        if isinstance(runtimes, list):
            entry["times"] = runtimes
        invalidity = result.get("invalidity", "correct")
        if invalidity != "correct":
            entry["time"] = _T4_INVALIDITY.get(str(invalidity), str(invalidity))
        elif "time" not in entry and isinstance(runtimes, list) and runtimes:
            numbers = [t for t in runtimes if isinstance(t, (int, float)) and not isinstance(t, bool)]
            entry["time"] = sum(numbers) / len(numbers) if numbers else None
        if isinstance(result.get("timestamp"), str):
            entry["timestamp"] = result["timestamp"]
        entries.append((",".join(str(config[k]) for k in config), entry))
    if not entries:
        raise InvalidInputError(f"{path.name}: the T4 file holds no results")
    return TuningRecord("t4", None, None, None, keys, entries)


def _keys(keys: Any, path: Path) -> list[str]:
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise InvalidInputError(f"{path.name}: tune_params_keys must be a list of parameter names, got "
                             f"{type(keys).__name__}")
    return list(keys)


def _text_field(value: Any, name: str, path: Path) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(f"{path.name}: {name} must be a string, got {type(value).__name__}")
    return value


def problem_size(value: Any, path: Path) -> list[int] | None:
    """The cache's ``problem_size`` as a list of positive integers (None when absent)."""
    if value is None:
        return None
    sizes = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(sizes, (list, tuple)) or not 1 <= len(sizes) <= 3 or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_PROBLEM_SIZE for v in sizes):
        raise InvalidInputError(f"{path.name}: problem_size {str(value)[:80]} is not 1 to 3 integers between 1 and "
                             f"{MAX_PROBLEM_SIZE}")
    return list(sizes)
