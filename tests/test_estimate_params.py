"""Imported kernel families (no GEMM/conv/attention sizes) estimated from their tunable
parameters by the bundle's parameter forest, and the fields their space offers."""

from __future__ import annotations

import pytest
from imported_family import DEVICE, FAMILY, imported_family  # noqa: E402 (tests/ is on sys.path)

from perfscope.errors import InvalidInputError
from perfscope.models.persistence import load_bundle
from perfscope.store import ProfileStore
from perfscope.workflows.best_config import best_config
from perfscope.workflows.estimate_params import estimate_params, family_space


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    dataset, model = imported_family(tmp_path_factory.mktemp("family"))
    return dataset, load_bundle(model)


def test_the_space_offers_the_varied_parameters_and_the_problem_size(family):
    dataset, model = family
    space = family_space(FAMILY, model=model)
    assert space["source"] == "model"
    assert space["parameters"] == {"block_size_x": [1, 2, 4], "block_size_y": [32, 64], "tile_size_x": [1, 2]}
    assert space["problem_sizes"] == [[1000, 64]]
    assert set(space["defaults"]) == set(space["parameters"])
    rows = ProfileStore(dataset).read().table.to_pandas()
    from_rows = family_space(FAMILY, rows=rows)  # without a model: the dataset's parameter columns
    assert from_rows["source"] == "data" and from_rows["parameters"] == space["parameters"]
    assert family_space("other", model=model)["parameters"] == {}


def test_a_configuration_is_estimated_with_its_interval_energy_and_method(family):
    _, model = family
    fast = estimate_params(FAMILY, DEVICE, model=model, params={"block_size_x": 1, "block_size_y": 32,
                                                                "tile_size_x": 1})
    slow = estimate_params(FAMILY, DEVICE, model=model, params={"block_size_x": 4, "block_size_y": 32,
                                                                "tile_size_x": 2})
    assert fast["method"].startswith("model:param_forest") and fast["observed"]
    assert fast["latency_low_s"] <= fast["latency_s"] <= fast["latency_high_s"]
    assert fast["latency_s"] < slow["latency_s"]  # 1.1 ms measured against 2.4 ms
    assert 0.5e-3 < fast["latency_s"] < 2e-3
    assert fast["energy_j"] == pytest.approx(fast["latency_s"] * 140)  # the RTX A4000's 140 W TDP
    assert fast["problem_size"] == [1000, 64] and fast["device_source"] == "a device the model was trained on"


def test_the_best_button_answers_as_best_config(family):
    _, model = family
    given = {"block_size_x": 4, "block_size_y": 64, "tile_size_x": 2}
    r = estimate_params(FAMILY, DEVICE, model=model, params=given, best=True)
    expected = best_config(FAMILY, DEVICE, model=model, params=given)
    assert r["best_config"]["best"] == expected["best"] and r["best_config"]["gain_over_given"] > 1


def test_missing_parameters_no_model_or_an_unknown_family_are_refused_clearly(family):
    _, model = family
    with pytest.raises(InvalidInputError, match="tile_size_x"):
        estimate_params(FAMILY, DEVICE, model=model, params={"block_size_x": 1, "block_size_y": 32})
    with pytest.raises(InvalidInputError, match="needs? a model|need a model"):
        estimate_params(FAMILY, DEVICE, model=None, params={"block_size_x": 1})
    with pytest.raises(InvalidInputError, match="parameter spaces: dedisp"):
        estimate_params("other", DEVICE, model=model, params={"a": 1})
    unseen = estimate_params(FAMILY, DEVICE, model=model, params={"block_size_x": 8, "block_size_y": 32,
                                                                  "tile_size_x": 1})
    assert unseen["observed"] is False


def test_the_cli_estimates_an_imported_configuration_as_the_page_does(family, tmp_path):
    import json
    import subprocess
    import sys

    _, model = family
    params = "block_size_x=1,block_size_y=32,tile_size_x=1"
    args = [sys.executable, "-m", "perfscope", "estimate", FAMILY, "--device", DEVICE, "--model", str(model.path),
            "--params", params]
    out = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = estimate_params(FAMILY, DEVICE, model=model, params={"block_size_x": 1, "block_size_y": 32,
                                                                    "tile_size_x": 1})
    assert json.loads(out.stdout)["latency_s"] == pytest.approx(expected["latency_s"])
    text = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert "model:param_forest" in text.stdout and "no FLOPs or bytes" in text.stdout
    short = subprocess.run([*args[:-1], "block_size_x=1"], capture_output=True, text=True, timeout=120)
    assert short.returncode == 2 and "Traceback" not in short.stderr and "tile_size_x" in short.stderr


@pytest.fixture(scope="module")
def sizeless_gemm(tmp_path_factory):
    """A CLBlast-style Kernel Tuner GEMM cache (MWG/NWG name the tiles) with a 2-element
    problem size: the import keeps the tiles but knows no m, n, k."""
    from test_kernel_tuner_import import _cache  # noqa: E402 (tests/ is on sys.path)

    from perfscope.importers import import_kernel_tuner
    from perfscope.models.groups import parameter_groups
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.param_forest import ParameterForestModel
    from perfscope.models.param_space import observed_spaces
    from perfscope.models.persistence import save_bundle

    tmp = tmp_path_factory.mktemp("gemm")
    entries = {f"{mwg},{nwg},{vwm}": {"MWG": mwg, "NWG": nwg, "VWM": vwm, "time": 64 / mwg + 64 / nwg + 1 / vwm}
               for mwg in (32, 64, 128) for nwg in (32, 64, 128) for vwm in (1, 2)}
    rows = import_kernel_tuner(_cache(tmp / "xgemm.json", kernel_name="Xgemm", problem_size=(4096, 4096),
                                      keys=("MWG", "NWG", "VWM"), entries=entries)).to_pandas()
    assert set(rows["kernel"]) == {"gemm"} and rows["m"].isna().all()
    assert (rows["tile_m"] == rows["param_MWG"]).all()
    wrapper = ConformalWrapper(ParameterForestModel(n_estimators=8), n_splits=3,
                               groups=lambda frame: parameter_groups(frame, ["MWG", "NWG"]))
    bundle = save_bundle(tmp / "model", {"param_forest": wrapper.fit(rows)}, rows=rows,
                         metadata={"parameter_spaces": observed_spaces(rows)})
    return rows, load_bundle(bundle)


def test_a_gemm_import_without_sizes_is_ranked_and_estimated_by_its_parameters(sizeless_gemm):
    rows, model = sizeless_gemm
    given = {"MWG": 32, "NWG": 32, "VWM": 1}  # the tiles follow from MWG/NWG: they need not be given
    found = best_config("gemm", DEVICE, model=model, params=given, data=rows)
    assert found["best"]["config"]["MWG"] == 128 and found["best"]["config"]["tile_m"] == 128
    assert found["given"]["config"]["tile_m"] == 32 and found["gain_over_given"] > 1
    declared = best_config("gemm", DEVICE, model=model, space={"MWG": [64, 128], "NWG": [128]}, params={"VWM": 2},
                           data=rows)
    assert declared["space"]["n_unobserved"] == 0  # the declared configurations were all measured
    one = estimate_params("gemm", DEVICE, model=model, params=given)
    assert one["observed"] and one["latency_low_s"] <= one["latency_s"] <= one["latency_high_s"]
    with pytest.raises(InvalidInputError, match="NWG"):
        estimate_params("gemm", DEVICE, model=model, params={"MWG": 32, "VWM": 1})


def test_the_cli_estimates_a_gemm_import_without_sizes_by_its_parameters(sizeless_gemm):
    import json
    import subprocess
    import sys

    _, model = sizeless_gemm
    args = [sys.executable, "-m", "perfscope", "estimate", "gemm", "--device", DEVICE, "--model", str(model.path),
            "--params", "MWG=128,NWG=128,VWM=2", "--json"]
    one = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["method"].startswith("model:param_forest")
    best = subprocess.run([*args, "--best-config"], capture_output=True, text=True, timeout=120)
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["best_config"]["best"]["config"]["MWG"] == 128
    tiled = subprocess.run([*args, "--tile-m", "32"], capture_output=True, text=True, timeout=120)
    assert tiled.returncode == 2 and "tile_m cannot be given with --params" in tiled.stderr  # not dropped silently
