"""RAPL energy meter: deltas of the CPU packages' ``energy_uj`` counters in powercap sysfs.

Linux exposes Intel's (and, under the same ``intel-rapl`` names, AMD's) Running Average
Power Limit counters under ``/sys/class/powercap``. Each top-level zone
``intel-rapl:N`` whose ``name`` starts with ``package`` is one CPU socket; its
subzones (``core``, ``uncore``, ``dram``; directories ``intel-rapl:N:M``) are parts of
it or extra domains and are never added, so nothing is counted twice. Zones such as
``psys`` and the ``intel-rapl-mmio`` duplicates are skipped too.

The counters are cumulative microjoules that wrap at ``max_energy_range_uj``. Since the
fix for CVE-2020-8694 ("Platypus") ``energy_uj`` is usually readable only by root.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from perfscope.errors import MeasurementError, MeterUnavailableError
from perfscope.meters.base import EnergyMeter, EnergyReading

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"

_TOP_LEVEL_ZONE = re.compile(r"^(intel|amd)-rapl:(\d+)$")
_UJ_PER_J = 1_000_000.0


@dataclass(frozen=True)
class RaplZone:
    """One package zone: its sysfs directory, its ``name`` and its counter's range."""

    path: Path
    name: str
    max_energy_range_uj: int

    @property
    def energy_path(self) -> Path:
        """The zone's cumulative counter file (``energy_uj``)."""
        return self.path / "energy_uj"


def _permission_message(path: Path, root: Path) -> str:
    return (
        f"RAPL counter {path} is readable only by root (kernels restrict energy_uj since "
        f"CVE-2020-8694). Run perfscope as root, or allow reading with "
        f"`sudo chmod o+r {root}/*/energy_uj` (reset at boot; a udev rule or "
        f"systemd-tmpfiles entry makes it permanent)."
    )


def _read_int(path: Path, root: Path) -> int:
    """Read one integer sysfs file; PermissionError becomes MeterUnavailableError."""
    try:
        text = path.read_text()
    except PermissionError as exc:
        raise MeterUnavailableError(_permission_message(path, root)) from exc
    try:
        return int(text.strip())
    except ValueError as exc:
        raise MeasurementError(f"RAPL file {path} holds {text.strip()!r}, not an integer") from exc


def discover_package_zones(root: str | Path = DEFAULT_POWERCAP_ROOT) -> list[RaplZone]:
    """List the top-level package zones under ``root``, one per CPU socket.

    Raises ``MeterUnavailableError`` when there are none or they cannot be read.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise MeterUnavailableError(
            f"no RAPL package zones: {root_path} does not exist (no powercap support, "
            f"a VM or container without it, or not Linux)"
        )
    candidates: list[tuple[int, int, Path]] = []
    for entry in root_path.iterdir():
        match = _TOP_LEVEL_ZONE.match(entry.name)
        if match is None:
            continue
        # Prefer intel-rapl over amd-rapl when both name the same package.
        vendor_rank = 0 if match.group(1) == "intel" else 1
        candidates.append((vendor_rank, int(match.group(2)), entry))
    candidates.sort()

    zones: list[RaplZone] = []
    seen_names: set[str] = set()
    seen_paths: set[Path] = set()
    for _, _, entry in candidates:
        try:
            name = (entry / "name").read_text().strip()
        except PermissionError as exc:
            raise MeterUnavailableError(_permission_message(entry / "name", root_path)) from exc
        except OSError:
            continue
        real = entry.resolve()
        if not name.startswith("package") or name in seen_names or real in seen_paths:
            continue
        try:
            max_range_uj = _read_int(entry / "max_energy_range_uj", root_path)
        except MeasurementError as exc:
            raise MeterUnavailableError(str(exc)) from exc
        except OSError as exc:
            raise MeterUnavailableError(
                f"cannot read {entry / 'max_energy_range_uj'}: {exc}"
            ) from exc
        seen_names.add(name)
        seen_paths.add(real)
        zones.append(RaplZone(path=entry, name=name, max_energy_range_uj=max_range_uj))
    if not zones:
        raise MeterUnavailableError(
            f"no RAPL package zones under {root_path} (expected intel-rapl:N directories "
            f"whose name starts with 'package')"
        )
    return zones


class RaplMeter(EnergyMeter):
    """Energy of the CPU packages from RAPL counters: the sum over packages of each delta.

    ``clock`` returns seconds (default ``time.perf_counter``); tests inject a fake one.
    The constructor reads every counter once, so an unusable meter fails here with
    ``MeterUnavailableError`` rather than in the middle of a measurement.
    """

    method = "rapl"
    is_estimate = False
    min_window_s = 0.05

    def __init__(
        self,
        root: str | Path = DEFAULT_POWERCAP_ROOT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.root = Path(root)
        self._clock: Callable[[], float] = clock if clock is not None else time.perf_counter
        self.zones: list[RaplZone] = discover_package_zones(self.root)
        try:
            self._read_all_uj()
        except MeasurementError as exc:
            raise MeterUnavailableError(str(exc)) from exc

    @property
    def zone_names(self) -> list[str]:
        """The package zones summed by this meter (``package-0``, ...)."""
        return [zone.name for zone in self.zones]

    def _read_all_uj(self) -> tuple[int, ...]:
        values: list[int] = []
        for zone in self.zones:
            try:
                values.append(_read_int(zone.energy_path, self.root))
            except OSError as exc:
                raise MeasurementError(f"cannot read {zone.energy_path}: {exc}") from exc
        return tuple(values)

    def begin(self) -> object:
        """Read every package counter; returns the start time and counter values."""
        start_uj = self._read_all_uj()
        return (self._clock(), start_uj)

    def end(self, token: object) -> EnergyReading:
        """Read the counters again; energy is the sum of the deltas, wrap-around handled."""
        end_uj = self._read_all_uj()
        end_s = self._clock()
        start_s, start_uj = cast(tuple[float, list[int]], token)
        total_uj = 0
        for zone, before, after in zip(self.zones, start_uj, end_uj, strict=True):
            total_uj += counter_delta_uj(before, after, zone.max_energy_range_uj)
        return EnergyReading(energy_j=total_uj / _UJ_PER_J, duration_s=end_s - start_s)


def counter_delta_uj(start_uj: int, end_uj: int, max_range_uj: int) -> int:
    """Increase of a counter that wraps at ``max_range_uj`` (assumes at most one wrap)."""
    if end_uj >= start_uj:
        return end_uj - start_uj
    return end_uj + max_range_uj - start_uj


def rapl_available(root: str | Path = DEFAULT_POWERCAP_ROOT) -> tuple[bool, str]:
    """Whether a ``RaplMeter`` can be used under ``root``; the reason (else ``""``) if not."""
    try:
        RaplMeter(root)
    except MeterUnavailableError as exc:
        return False, str(exc)
    return True, ""
