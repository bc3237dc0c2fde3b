"""Kernel Tuner import: caches as shipped (.json.gz), T4 results, any kernel family,
work from expressions, devices by vendor, T1 launch geometry, malformed files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from perfscope.errors import InvalidInputError
from perfscope.importers import import_kernel_tuner
from perfscope.importers.t1 import read_t1

ANCHORS = next((p / "shared/anchors/kernel_tuner/dedispersion_milo" for p in Path(__file__).parents
                if (p / "shared/anchors/kernel_tuner/dedispersion_milo").is_dir()), Path("/nonexistent"))
KEYS = ("block_size_x", "block_size_y", "tile_size_x")


def _cache(path: Path, *, device_name="NVIDIA RTX A4000", kernel_name="dedisp", problem_size=(1000, 64),
           keys=KEYS, entries=None, gz=False) -> Path:
    entries = entries if entries is not None else {
        f"{bx},{by},{tx}": {"block_size_x": bx, "block_size_y": by, "tile_size_x": tx, "time": 0.1 * bx + tx,
                            "times": [0.1 * bx + tx] * 3}
        for bx in (1, 2, 4) for by in (32, 64) for tx in (1, 2)}
    data = {"device_name": device_name, "kernel_name": kernel_name, "problem_size": list(problem_size),
            "tune_params_keys": list(keys), "tune_params": {}, "objective": "time", "cache": entries}
    blob = json.dumps(data).encode()
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


def _rows(table):
    return table.to_pylist()


def test_a_gzipped_cache_of_any_kernel_imports_with_every_parameter_typed(tmp_path):
    table = import_kernel_tuner(_cache(tmp_path / "c.json.gz", gz=True))
    assert str(table.schema.field("param_block_size_x").type) == "int64"
    rows = _rows(table)
    assert rows[0]["param_tile_size_x"] == 1
    assert len(rows) == 12 and {r["kernel"] for r in rows} == {"dedisp"}
    params = json.loads(rows[0]["params_json"])
    assert params["block_size_x"] == 1 and isinstance(params["tile_size_x"], int)
    assert rows[0]["tile_m"] is None  # block/tile names only mean a GEMM tile for GEMM kernels
    assert rows[0]["flops"] is None and rows[0]["m"] is None


def test_parameter_columns_keep_their_types_and_reach_the_store(tmp_path):
    from perfscope.importers import write_imported
    from perfscope.store import ProfileStore

    entries = {"a": {"unroll": True, "vec": 4, "scale": 0.5, "layout": "row", "time": 1.0},
               "b": {"unroll": False, "vec": 2, "scale": 1, "layout": "col", "time": 2.0}}
    path = _cache(tmp_path / "c.json", keys=("unroll", "vec", "scale", "layout"), entries=entries)
    table = import_kernel_tuner(path)
    types = {name: str(table.schema.field(f"param_{name}").type) for name in ("unroll", "vec", "scale", "layout")}
    assert types == {"unroll": "bool", "vec": "int64", "scale": "double", "layout": "string"}
    write_imported(table, tmp_path / "ds")
    read = ProfileStore(tmp_path / "ds").read().table
    assert sorted(read.column("param_vec").to_pylist()) == [2, 4]


def test_the_vendor_decides_the_device_kind_and_an_unnamed_device_comes_from_the_file_name(tmp_path):
    amd = _rows(import_kernel_tuner(_cache(tmp_path / "a.json", device_name="AMD Radeon PRO W6600")))[0]
    assert amd["device_kind"] == "rocm" and amd["device_key"].startswith("rocm-")
    unnamed = _rows(import_kernel_tuner(_cache(tmp_path / "MI250X.json.gz", device_name="", gz=True)))[0]
    assert unnamed["device_kind"] == "rocm" and "MI250X" in unnamed["device_name"]
    given = _rows(import_kernel_tuner(_cache(tmp_path / "x.json", device_name=""), device_name="My Lab GPU"))[0]
    assert given["device_name"] == "My Lab GPU" and given["device_kind"] == "gpu"
    override = _rows(import_kernel_tuner(_cache(tmp_path / "y.json"), device_name="NVIDIA A40"))[0]
    assert override["device_name"] == "NVIDIA A40" and override["device_kind"] == "cuda"


def test_flops_and_bytes_come_from_expressions_over_sizes_and_parameters(tmp_path):
    path = _cache(tmp_path / "c.json")
    rows = _rows(import_kernel_tuner(path, flops="2 * problem_size_0 * problem_size_1",
                                     bytes_moved="4 * ProblemSize[0] * ProblemSize[1] * (1 + 1 / block_size_x)"))
    assert {r["flops"] for r in rows} == {2 * 1000 * 64}
    assert {r["min_bytes"] for r in rows} == {4 * 1000 * 64 * 2, 4 * 1000 * 64 * 1.5, 4 * 1000 * 64 * 1.25}
    assert all(r["achieved_flops_per_s"] > 0 for r in rows)
    with pytest.raises(InvalidInputError, match="names 'nope'"):
        import_kernel_tuner(path, flops="nope * 2")
    with pytest.raises(InvalidInputError, match="not allowed"):
        import_kernel_tuner(path, flops="__import__('os')")


def test_conv_sizes_come_through_options(tmp_path):
    from perfscope.importers.kernel_tuner import parse_sizes

    rows = _rows(import_kernel_tuner(_cache(tmp_path / "c.json"), kernel="conv",
                                     conv=parse_sizes("n=1,c=64,h=56,w=56,k=64,r=3,s=3,pad_h=1,pad_w=1")))
    assert (rows[0]["conv_c"], rows[0]["conv_r"], rows[0]["pad_h"], rows[0]["kernel"]) == (64, 3, 1, "conv")
    with pytest.raises(InvalidInputError, match="NAME=INTEGER"):
        parse_sizes("n=one")


def test_t4_results_import_with_their_status_and_runtimes(tmp_path):
    results = [{"timestamp": "2024-01-01T00:00:00+00:00", "configuration": {"block_size_x": 32, "tile": 2},
                "times": {"runtimes": [1.0, 1.2, 1.1]}, "invalidity": "correct", "correctness": 1,
                "measurements": [{"name": "time", "value": 1.1, "unit": "ms"}], "objectives": ["time"]},
               {"configuration": {"block_size_x": 64, "tile": 2}, "times": {}, "invalidity": "compile",
                "correctness": 1, "measurements": []}]
    path = tmp_path / "t4.json"
    path.write_text(json.dumps({"schema_version": "1.0.0", "results": results}))
    with pytest.raises(InvalidInputError, match="does not name its device") as caught:
        import_kernel_tuner(path)
    assert caught.value.parameter == "device_name"  # the CLI shows it as --device-name
    rows = _rows(import_kernel_tuner(path, device_name="NVIDIA A100-PCIE-40GB", kernel="stencil"))
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert rows[0]["samples_ms"] == [1.0, 1.2, 1.1] and rows[0]["time_mean_ms"] == 1.1
    assert json.loads(rows[0]["params_json"]) == {"block_size_x": 32, "tile": 2}
    assert "compile" in rows[1]["reason"] and rows[0]["measured_at"].year == 2024


def test_t1_launch_geometry_gives_threads_and_blocks(tmp_path):
    t1 = {"KernelSpecification": {"KernelName": "k", "ProblemSize": [1000, 64, 1],
                                  "LocalSize": {"X": "block_size_x", "Y": "block_size_y", "Z": "1"},
                                  "GlobalSize": {"X": "1", "Y": "1", "Z": "1"},
                                  "GridDivX": ["block_size_x", "tile_size_x"], "GridDivY": ["block_size_y"]}}
    (tmp_path / "k.T1.json").write_text(json.dumps(t1))
    rows = _rows(import_kernel_tuner(_cache(tmp_path / "c.json"), t1=tmp_path / "k.T1.json"))
    params = json.loads(rows[-1]["params_json"])  # block 4 x 64, tile 2
    assert params["launch.threads_per_block"] == 256 and params["launch.blocks"] == 125 * 1
    (tmp_path / "bad.json").write_text('{"KernelSpecification": {}}')
    with pytest.raises(InvalidInputError, match="not a T1"):
        read_t1(tmp_path / "bad.json")


@pytest.mark.parametrize("change, message", [
    ({"tune_params_keys": "block_size_x"}, "tune_params_keys must be a list"),
    ({"problem_size": [2**40, 4]}, "problem_size"),
    ({"device_name": 7}, "device_name must be a string"),
])
def test_malformed_caches_are_refused_in_one_line(tmp_path, change, message):
    path = _cache(tmp_path / "c.json")
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match=message) as info:
        import_kernel_tuner(path)
    assert "\n" not in str(info.value)


def test_deep_json_and_broken_gzip_are_refused(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidInputError, match="nested too deeply|not a Kernel Tuner"):
        import_kernel_tuner(tmp_path / "deep.json")
    (tmp_path / "bad.json.gz").write_bytes(b"\x1f\x8b" + b"junk" * 10)
    with pytest.raises(InvalidInputError, match="cannot read"):
        import_kernel_tuner(tmp_path / "bad.json.gz")


def test_the_cli_exits_2_with_one_line_for_a_malformed_cache(tmp_path):
    path = _cache(tmp_path / "c.json")
    data = json.loads(path.read_text())
    data["tune_params_keys"] = {"a": 1}
    path.write_text(json.dumps(data))
    done = subprocess.run([sys.executable, "-m", "perfscope", "import", "kernel-tuner", str(path), "-o",
                           str(tmp_path / "ds")], check=False, capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(not ANCHORS.is_dir(), reason="Kernel Tuner anchor caches not present")
def test_the_six_shipped_dedispersion_caches_import_as_shipped():
    kinds = {}
    for path in sorted(ANCHORS.glob("*.json.gz")):
        table = import_kernel_tuner(path, t1=ANCHORS / "dedispersion_milo.T1.json")
        assert table.num_rows == 11_130
        row = table.slice(0, 1).to_pylist()[0]
        assert row["kernel"] == "dedispersion_kernel" and row["m"] is None
        assert "launch.blocks" in json.loads(row["params_json"])
        kinds[path.name.split(".")[0]] = row["device_kind"]
    assert kinds == {"A100": "cuda", "A4000": "cuda", "A6000": "cuda", "MI250X": "rocm", "W6600": "rocm",
                     "W7800": "rocm"}


def _t4_results(path):
    results = [{"configuration": {"block_size_x": 32}, "times": {"runtimes": [1.0, 1.2]}, "invalidity": "correct",
                "measurements": [{"name": "time", "value": 1.1, "unit": "ms"}], "objectives": ["time"]}]
    path.write_text(json.dumps({"schema_version": "1.0.0", "results": results}))
    return path


@pytest.mark.parametrize("query, expected", [
    ({"nvidia-smi": {"nvidia_smi_log": {"gpu": {"product_name": "NVIDIA RTX A6000"}}}}, "NVIDIA RTX A6000"),
    ({"rocm-smi": {"card0": {"Card Series": "AMD Radeon PRO W7800", "Card Model": "0x7448"},
                   "system": {"Driver version": "6.1"}}}, "AMD Radeon PRO W7800"),
    # "N/A" names nothing (the next field does); a PCI-database name is matched by its brackets
    ({"rocm-smi": {"card0": {"Card series": "N/A", "Device Name": "Navi 31 [Radeon Pro W7800]"}}},
     "AMD Radeon PRO W7800"),
])
def test_t4_results_take_the_device_from_the_metadata_file_beside_them(tmp_path, query, expected):
    results = _t4_results(tmp_path / "A6000-results.json")
    metadata = {"schema_version": "1.0.0", "metadata": {"environment": {"device_query": query, "requirements": []}}}
    with gzip.open(tmp_path / "A6000-metadata.json.gz", "wt") as fh:
        json.dump(metadata, fh)
    rows = _rows(import_kernel_tuner(results, kernel="stencil"))
    assert rows[0]["device_name"] == expected
    assert rows[0]["device_kind"] == ("rocm" if "AMD" in expected else "cuda")
    with pytest.raises(InvalidInputError, match="T4 metadata file .*import the results file"):
        import_kernel_tuner(tmp_path / "A6000-metadata.json.gz")
    plain = _t4_results(tmp_path / "vector_add.json")  # Kernel Tuner's examples: X.json and X-metadata.json
    (tmp_path / "vector_add-metadata.json").write_text(json.dumps(metadata))
    assert _rows(import_kernel_tuner(plain))[0]["device_name"] == expected


def test_t4_metadata_naming_two_different_gpus_names_none(tmp_path):
    results = _t4_results(tmp_path / "x-results.json")
    gpus = [{"product_name": "NVIDIA A100-PCIE-40GB"}, {"product_name": "NVIDIA RTX A4000"}]
    query = {"nvidia-smi": {"nvidia_smi_log": {"gpu": gpus}}}
    (tmp_path / "x-metadata.json").write_text(json.dumps({"metadata": {"environment": {"device_query": query}}}))
    with pytest.raises(InvalidInputError, match="x-metadata.json names no single GPU"):
        import_kernel_tuner(results)
    assert _rows(import_kernel_tuner(results, device_name="NVIDIA RTX A4000"))[0]["device_name"] == "NVIDIA RTX A4000"
