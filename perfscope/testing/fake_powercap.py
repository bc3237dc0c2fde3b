"""A fake ``/sys/class/powercap`` tree built from real files, for testing RAPL code.

The layout follows Linux's: a control-type directory ``intel-rapl`` with an ``enabled``
file, package zones ``intel-rapl:N`` (files ``name``, ``energy_uj``,
``max_energy_range_uj``), subzones ``intel-rapl:N:M`` nested inside them and linked
again at the top level, and any other zone (``psys``) a test adds. Subzone counters
advance with their package, so code that adds subzones counts energy twice and fails.

    fake = FakePowercap(tmp_path)
    fake.add_package(0)
    meter = RaplMeter(root=fake.root)
    fake.add_energy(0, 1_500_000)  # 1.5 J on package 0
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MAX_RANGE_UJ = 262_143_328_850
"""A common ``max_energy_range_uj`` on Intel parts (about 262 kJ)."""

_SUBZONE_SHARES = {"core": 0.6, "uncore": 0.1, "dram": 0.2}


class FakePowercap:
    """Builds and drives a powercap directory tree under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        control = self.root / "intel-rapl"
        control.mkdir(exist_ok=True)
        (control / "enabled").write_text("1\n")
        self._packages: dict[int, Path] = {}
        self._subzones: dict[int, list[tuple[Path, float]]] = {}

    def add_package(
        self,
        index: int,
        energy_uj: int = 0,
        max_range_uj: int = DEFAULT_MAX_RANGE_UJ,
        subzones: tuple[str, ...] = ("core", "dram"),
        prefix: str = "intel-rapl",
    ) -> Path:
        """Add package zone ``<prefix>:<index>`` named ``package-<index>``; returns its path.

        Each name in ``subzones`` becomes a nested zone ``<prefix>:<index>:<m>`` (also
        linked at the top level, as sysfs does) whose counter advances by a share of
        every ``add_energy`` on the package.
        """
        if index in self._packages:
            raise ValueError(f"package {index} already exists under {self.root}")
        zone = self._write_zone(self.root / f"{prefix}:{index}", f"package-{index}",
                                energy_uj, max_range_uj)
        self._packages[index] = zone
        self._subzones[index] = []
        for m, name in enumerate(subzones):
            sub = self._write_zone(zone / f"{prefix}:{index}:{m}", name, 0, max_range_uj)
            (self.root / sub.name).symlink_to(sub, target_is_directory=True)
            self._subzones[index].append((sub, _SUBZONE_SHARES.get(name, 0.5)))
        return zone

    def add_zone(
        self, dirname: str, name: str, energy_uj: int = 0,
        max_range_uj: int = DEFAULT_MAX_RANGE_UJ,
    ) -> Path:
        """Add any other top-level zone (for example ``("intel-rapl:1", "psys")``)."""
        return self._write_zone(self.root / dirname, name, energy_uj, max_range_uj)

    def zone_path(self, index: int) -> Path:
        """The directory of package ``index``."""
        return self._packages[index]

    def energy_path(self, index: int) -> Path:
        """The ``energy_uj`` file of package ``index``."""
        return self._packages[index] / "energy_uj"

    def energy_uj(self, index: int) -> int:
        """The current counter value of package ``index``."""
        return int(self.energy_path(index).read_text())

    def set_energy(self, index: int, uj: int) -> None:
        """Set package ``index``'s counter to ``uj`` (subzones are left alone)."""
        self.energy_path(index).write_text(f"{int(uj)}\n")

    def add_energy(self, index: int, uj: float) -> None:
        """Advance package ``index`` (and its subzones, by their share) by ``uj``.

        Counters wrap like the hardware's: modulo ``max_energy_range_uj``.
        """
        zone = self._packages[index]
        self._advance(zone, round(uj))
        for sub, share in self._subzones[index]:
            self._advance(sub, round(uj * share))

    @staticmethod
    def _advance(zone: Path, uj: int) -> None:
        max_range = int((zone / "max_energy_range_uj").read_text())
        value = int((zone / "energy_uj").read_text())
        (zone / "energy_uj").write_text(f"{(value + uj) % max_range}\n")

    @staticmethod
    def _write_zone(path: Path, name: str, energy_uj: int, max_range_uj: int) -> Path:
        path.mkdir()
        (path / "name").write_text(f"{name}\n")
        (path / "energy_uj").write_text(f"{int(energy_uj)}\n")
        (path / "max_energy_range_uj").write_text(f"{int(max_range_uj)}\n")
        (path / "enabled").write_text("1\n")
        return path
