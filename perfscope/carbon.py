"""Carbon cost of energy (docs/formulas.md): pure functions, scalars or numpy arrays.

* kWh = J / 3.6e6
* operational gCO2e = kWh · PUE · grid intensity (gCO2e/kWh)
* embodied gCO2e (optional) = the device's manufacturing footprint amortised over the
  time it is busy in its lifetime: embodied_kg · 1000 · busy_s / (lifetime_s · utilisation)

Grid intensities come from ``data/carbon_intensity.csv``: one basis (lifecycle gCO2e per kWh
generated), every row with its source, year and where the figure was read. The table is read
with the ``csv`` module (no pandas) and cached. Regions also answer to their ``aliases``
(``UK``, ``US``, ``EU-27``), so names used by earlier tables keep working.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from perfscope.errors import InvalidInputError, NotFoundError

JOULES_PER_KWH = 3.6e6
SECONDS_PER_YEAR = 365.25 * 24 * 3600
INTENSITY_TABLE = "carbon_intensity.csv"
TABLE_BASIS = "lifecycle"  # the one basis of the table: IPCC AR5 lifecycle factors, as Ember reports
_REQUIRED_COLUMNS = ("region", "intensity_gco2e_per_kwh", "basis", "year", "source", "url", "read_from",
                     "aliases", "notes")
_ALIAS_SEPARATOR = ";"


@dataclass(frozen=True)
class GridIntensity:
    """Average carbon intensity of a region's electricity, with where the figure comes from."""

    region: str
    intensity_gco2e_per_kwh: float
    year: int
    source: str
    url: str
    notes: str = ""
    basis: str = TABLE_BASIS
    read_from: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Short label for menus: "France: 44 gCO2e/kWh (2024, lifecycle)"."""
        return f"{self.region}: {self.intensity_gco2e_per_kwh:g} gCO2e/kWh ({self.year}, {self.basis})"

    @property
    def citation(self) -> str:
        """One line naming the figure, its basis, year and source: for notes and CLI output."""
        return (f"{self.region} {self.year}, {self.basis} gCO2e/kWh: {self.source} <{self.url}>"
                + (f", read from {self.read_from}" if self.read_from else ""))


@dataclass(frozen=True)
class CarbonCost:
    """Energy and carbon of a workload (arrays when the inputs are arrays)."""

    energy_kwh: Any
    operational_gco2e: Any
    embodied_gco2e: Any
    total_gco2e: Any


def joules_to_kwh(energy_j: Any) -> Any:
    """kWh = J / 3.6e6 (scalar in, float out; array in, array out)."""
    return _out(np.asarray(energy_j, dtype=float) / JOULES_PER_KWH)


def operational_gco2e(energy_j: Any, intensity_gco2e_per_kwh: Any, pue: float = 1.0) -> Any:
    """gCO2e of electricity: kWh · PUE · intensity. PUE 1.0 counts the device's energy only."""
    _check_non_negative("grid intensity (gCO2e/kWh)", intensity_gco2e_per_kwh)
    _check_pue(pue)
    return _out(np.asarray(energy_j, dtype=float) / JOULES_PER_KWH * pue
                * np.asarray(intensity_gco2e_per_kwh, dtype=float))


def embodied_gco2e(busy_time_s: Any, embodied_kgco2e: float, lifetime_years: float,
                   utilisation: float = 1.0) -> Any:
    """The device's embodied carbon attributed to ``busy_time_s`` of use.

    The manufacturing footprint (``embodied_kgco2e``) is spread over the busy seconds of
    its lifetime: ``lifetime_years`` at ``utilisation`` (fraction of the time it is in use).
    """
    _check_non_negative("embodied carbon (kgCO2e)", embodied_kgco2e)
    if not lifetime_years > 0:
        raise InvalidInputError(f"device lifetime must be > 0 years, got {lifetime_years!r}")
    if not 0 < utilisation <= 1:
        raise InvalidInputError(f"utilisation must be in (0, 1], got {utilisation!r}")
    busy_lifetime_s = lifetime_years * SECONDS_PER_YEAR * utilisation
    return _out(np.asarray(busy_time_s, dtype=float) * embodied_kgco2e * 1e3 / busy_lifetime_s)


def carbon_cost(energy_j: Any, intensity_gco2e_per_kwh: Any, *, pue: float = 1.0, busy_time_s: Any = None,
                embodied_kgco2e: float | None = None, lifetime_years: float | None = None,
                utilisation: float = 1.0) -> CarbonCost:
    """kWh, operational, embodied (0 unless ``embodied_kgco2e`` and ``lifetime_years`` are
    given, which also need ``busy_time_s``) and total gCO2e of a workload."""
    kwh = joules_to_kwh(energy_j)
    operational = operational_gco2e(energy_j, intensity_gco2e_per_kwh, pue)
    if embodied_kgco2e is None or lifetime_years is None:
        embodied = _out(np.zeros_like(np.asarray(operational, dtype=float)))
    else:
        if busy_time_s is None:
            raise InvalidInputError("embodied carbon needs the busy time of the workload (busy_time_s)")
        embodied = embodied_gco2e(busy_time_s, embodied_kgco2e, lifetime_years, utilisation)
    total = _out(np.asarray(operational, dtype=float) + np.asarray(embodied, dtype=float))
    return CarbonCost(kwh, operational, embodied, total)


def load_intensity_table() -> list[GridIntensity]:
    """All rows of ``data/carbon_intensity.csv`` (read once, then cached)."""
    return list(_load_table())


@lru_cache(maxsize=1)
def _load_table() -> tuple[GridIntensity, ...]:
    text = resources.files("perfscope.data").joinpath(INTENSITY_TABLE).read_text(encoding="utf-8")
    return tuple(parse_intensity_table(text))


def parse_intensity_table(text: str) -> list[GridIntensity]:
    """Parse intensity-table CSV text, checking that every row names a source and a year and
    is on the table's one basis (``TABLE_BASIS``), and that no name or alias repeats."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise InvalidInputError(f"carbon intensity table lacks columns: {', '.join(missing)}")
    rows: list[GridIntensity] = []
    seen: set[str] = set()
    for line, raw in enumerate(reader, start=2):
        region = raw["region"].strip()
        aliases = tuple(a.strip() for a in (raw.get("aliases") or "").split(_ALIAS_SEPARATOR) if a.strip())
        for name in (region, *aliases):
            if not name or name.lower() in seen:
                raise InvalidInputError(f"carbon intensity table line {line}: empty or repeated region {name!r}")
            seen.add(name.lower())
        if not raw["source"].strip() or not raw["year"].strip():
            raise InvalidInputError(f"carbon intensity table line {line} ({region}): "
                                    "every row needs a source and a year")
        basis = (raw.get("basis") or "").strip()
        if basis != TABLE_BASIS:
            raise InvalidInputError(f"carbon intensity table line {line} ({region}): basis {basis!r} is not the "
                                    f"table's one basis {TABLE_BASIS!r} (figures on other bases are not mixed in)")
        try:
            intensity = float(raw["intensity_gco2e_per_kwh"])
            year = int(raw["year"])
        except ValueError as exc:
            raise InvalidInputError(f"carbon intensity table line {line} ({region}): {exc}") from None
        if not math.isfinite(intensity) or intensity < 0:
            raise InvalidInputError(f"carbon intensity table line {line} ({region}): intensity must be >= 0")
        rows.append(GridIntensity(region, intensity, year, raw["source"].strip(), raw["url"].strip(),
                                  (raw.get("notes") or "").strip(), basis, (raw.get("read_from") or "").strip(),
                                  aliases))
    return rows


def grid_intensity(region: str) -> GridIntensity:
    """The table row for ``region`` or one of its aliases (case-insensitive); ``NotFoundError``
    listing the known regions otherwise."""
    wanted = region.strip().lower()
    for row in _load_table():
        if wanted == row.region.lower() or wanted in (a.lower() for a in row.aliases):
            return row
    known = ", ".join(r.region for r in _load_table())
    raise NotFoundError(f"no carbon intensity for region {region!r}: use one of {known}, "
                        "or give your own intensity in gCO2e/kWh")


def canonical_region(name: str | None, default: str = "World") -> str:
    """The table's name for ``name`` (an alias resolves: ``UK`` -> ``United Kingdom``), or
    ``default`` when the table does not know it: for links and menus that must not break."""
    try:
        return grid_intensity(name).region if name else default
    except NotFoundError:
        return default


def _check_pue(pue: float) -> None:
    if not (isinstance(pue, (int, float)) and math.isfinite(pue) and pue >= 1.0):
        raise InvalidInputError(f"PUE must be a number >= 1.0 (1.0 counts the device's energy only), got {pue!r}")


def _check_non_negative(what: str, value: Any) -> None:
    array = np.asarray(value, dtype=float)
    if np.any(array < 0) or not np.all(np.isfinite(array)):
        raise InvalidInputError(f"{what} must be finite and >= 0, got {value!r}")


def _out(array: np.ndarray) -> Any:
    """A 0-d result as a Python float, anything else as the array."""
    return float(array) if np.ndim(array) == 0 else array
