"""perfscope.carbon: kWh, operational and embodied gCO2e, and the intensity table."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from perfscope import carbon
from perfscope.errors import InvalidInputError


def test_joules_to_kwh_scalar_and_array():
    assert carbon.joules_to_kwh(3.6e6) == pytest.approx(1.0)
    assert isinstance(carbon.joules_to_kwh(1.0), float)
    np.testing.assert_allclose(carbon.joules_to_kwh(np.array([0.0, 7.2e6])), [0.0, 2.0])


def test_operational_is_kwh_times_pue_times_intensity():
    # 1 kWh at 400 g/kWh with PUE 1.5 -> 600 g
    assert carbon.operational_gco2e(3.6e6, 400.0, pue=1.5) == pytest.approx(600.0)
    np.testing.assert_allclose(carbon.operational_gco2e(np.array([3.6e6, 1.8e6]), 100.0), [100.0, 50.0])


def test_embodied_is_amortised_over_busy_lifetime():
    year_s = carbon.SECONDS_PER_YEAR
    # one busy year of a 4-year, 100 kgCO2e device: a quarter of it
    assert carbon.embodied_gco2e(year_s, 100.0, 4.0) == pytest.approx(25_000.0)
    # busy half the time: the same busy second carries twice the share
    assert carbon.embodied_gco2e(year_s, 100.0, 4.0, utilisation=0.5) == pytest.approx(50_000.0)


def test_carbon_cost_totals():
    cost = carbon.carbon_cost(3.6e6, 200.0, pue=1.2, busy_time_s=carbon.SECONDS_PER_YEAR, embodied_kgco2e=10.0,
                              lifetime_years=5.0)
    assert cost.energy_kwh == pytest.approx(1.0)
    assert cost.operational_gco2e == pytest.approx(240.0)
    assert cost.embodied_gco2e == pytest.approx(2_000.0)
    assert cost.total_gco2e == pytest.approx(2_240.0)
    without = carbon.carbon_cost(np.array([3.6e6, 7.2e6]), 100.0)
    np.testing.assert_allclose(without.embodied_gco2e, [0.0, 0.0])
    np.testing.assert_allclose(without.total_gco2e, [100.0, 200.0])


@pytest.mark.parametrize("call", [
    lambda: carbon.operational_gco2e(1.0, 100.0, pue=0.9),
    lambda: carbon.operational_gco2e(1.0, -5.0),
    lambda: carbon.embodied_gco2e(1.0, 10.0, 0.0),
    lambda: carbon.embodied_gco2e(1.0, 10.0, 4.0, utilisation=1.5),
    lambda: carbon.carbon_cost(1.0, 100.0, embodied_kgco2e=10.0, lifetime_years=4.0),  # no busy time
])
def test_bad_inputs_are_user_errors(call):
    with pytest.raises(InvalidInputError):
        call()


def test_intensity_table_ships_with_sources_and_years():
    assert resources.files("perfscope.data").joinpath(carbon.INTENSITY_TABLE).is_file()
    rows = carbon.load_intensity_table()
    assert len(rows) >= 10
    for row in rows:
        assert row.source and row.url.startswith("http") and 1990 <= row.year <= 2030
        assert 0 <= row.intensity_gco2e_per_kwh < 1500
    world = carbon.grid_intensity("World").intensity_gco2e_per_kwh
    assert carbon.grid_intensity("world").intensity_gco2e_per_kwh == world
    assert "gCO2e/kWh" in carbon.grid_intensity("France").label


def test_unknown_region_lists_known_ones():
    with pytest.raises(InvalidInputError, match="France"):
        carbon.grid_intensity("Atlantis")


def test_parse_rejects_rows_without_source_or_repeated_regions():
    header = "region,intensity_gco2e_per_kwh,basis,year,source,url,read_from,aliases,notes\n"
    with pytest.raises(InvalidInputError, match="source"):
        carbon.parse_intensity_table(header + "X,100,lifecycle,2023,,http://x,,,\n")
    with pytest.raises(InvalidInputError, match="repeated"):
        carbon.parse_intensity_table(header + "X,100,lifecycle,2023,s,http://x,,,\nx,120,lifecycle,2023,s,http://x,,,\n")
    with pytest.raises(InvalidInputError, match="repeated"):  # an alias may not shadow another region
        carbon.parse_intensity_table(header + "X,100,lifecycle,2023,s,http://x,,Y,\nY,120,lifecycle,2023,s,http://x,,,\n")
    with pytest.raises(InvalidInputError, match="one basis"):  # combustion-only figures are not mixed in
        carbon.parse_intensity_table(header + "X,100,combustion,2023,s,http://x,,,\n")
    with pytest.raises(InvalidInputError, match="lacks columns"):
        carbon.parse_intensity_table("region,intensity\nX,1\n")


# The regions the table must cover; a region that cannot be sourced on the table's basis is
# listed here with the reason instead of a figure.
REQUIRED_REGIONS = ("World", "United States", "Canada", "Brazil", "United Kingdom", "France", "Germany",
                    "Netherlands", "Ireland", "Norway", "Sweden", "Finland", "Poland", "China", "India", "Japan",
                    "South Korea", "Taiwan", "Singapore", "Australia", "South Africa")
# the largest US grid regions (balancing authorities), each by one of its names
REQUIRED_US_GRID_REGIONS = ("CAISO", "ERCOT", "PJM", "MISO", "SPP", "NYISO", "ISO-NE")
MISSING_WITH_REASON: dict[str, str] = {}


def test_every_row_is_on_one_basis_with_source_year_and_where_it_was_read():
    rows = carbon.load_intensity_table()
    assert {row.basis for row in rows} == {carbon.TABLE_BASIS} == {"lifecycle"}
    for row in rows:
        assert row.source and row.year and row.url.startswith("https://") and row.read_from, row.region
        assert "lifecycle" in row.label and str(row.year) in row.citation and row.url in row.citation


def test_the_required_regions_are_in_the_table_or_listed_with_a_reason():
    regions = {row.region for row in carbon.load_intensity_table()}
    missing = [r for r in REQUIRED_REGIONS if r not in regions]
    assert missing == []
    assert all(reason for reason in MISSING_WITH_REASON.values())
    grid = [carbon.grid_intensity(name) for name in REQUIRED_US_GRID_REGIONS]
    assert all(row.region.startswith("US - ") and row.basis == "lifecycle" for row in grid)
    assert len({row.region for row in grid}) == len(REQUIRED_US_GRID_REGIONS)
    assert not any("eGRID" in row.source for row in carbon.load_intensity_table())


def test_aliases_and_names_of_earlier_tables_resolve():
    assert carbon.grid_intensity("UK").region == "United Kingdom"
    assert carbon.grid_intensity("us").region == "United States"
    assert carbon.grid_intensity("EU-27").region == "European Union (27)"
    assert carbon.grid_intensity("Korea").region == "South Korea"


def test_figures_are_plausible_against_each_other():
    value = {row.region: row.intensity_gco2e_per_kwh for row in carbon.load_intensity_table()}
    # hydro/nuclear grids well under coal-heavy ones; the world average between them
    assert value["Norway"] < value["France"] < value["United Kingdom"] < value["World"] < value["India"]
    assert value["Sweden"] < 100 and value["Poland"] > 500 and value["South Africa"] > 600


def test_estimate_cli_takes_a_new_region_and_names_its_source():
    run = subprocess.run([sys.executable, "-m", "perfscope", "estimate", "gemm", "--m", "1024", "--n", "1024",
                          "--k", "1024", "--dtype", "bf16", "--device", "h100-sxm", "--region", "Japan", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    japan = carbon.grid_intensity("Japan")
    assert out["carbon_intensity_gco2e_per_kwh"] == japan.intensity_gco2e_per_kwh
    assert "Japan 2024, lifecycle" in out["carbon_intensity_source"]
    bad = subprocess.run([sys.executable, "-m", "perfscope", "estimate", "gemm", "--m", "8", "--n", "8", "--k", "8",
                          "--device", "h100-sxm", "--region", "Atlantis"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Atlantis" in bad.stderr and "Traceback" not in bad.stderr
