from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from perfscope.errors import InvalidInputError
from perfscope.importers import (
    import_csv,
    import_gpperf,
    import_kernel_tuner,
    parse_mapping,
    write_imported,
)
from perfscope.importers.gpperf import parse_cutlass_kernel_name
from perfscope.schema import CONFIG_COLUMNS, arrow_schema, config_id
from perfscope.store import ProfileStore

GPPERF_DIR = Path(__file__).parents[2] / "shared/anchors/gpperf"
GPU = "NVIDIA GeForce RTX 4070"
KERNEL = "cutlass_simt_sgemm_128x128_8x2_nn_align1"
CUTLASS_HEADER = ["timestamp", "m", "n", "k", "kernel", "Layout", "blocksize1", "blocksize2", "blocksize3", "stages",
                  "epilogue", "alpha", "beta", "runtime", "ncu_metrics", "power", "clock_sm", "clock_mem", "temp",
                  "gpu_util", "mem_util", "gpu_name", "arithmetic_intensity_sh", "energy_J_script",
                  "gflops_per_watt_script", "gflops_script"]


def _cutlass_row(**overrides):
    row = {"timestamp": "1731372844", "m": "512", "n": "256", "k": "1024", "kernel": KERNEL, "Layout": "nn",
           "blocksize1": "64", "blocksize2": "64", "blocksize3": "32", "stages": "2",
           "epilogue": "linear_combination", "alpha": "1.0", "beta": "0.0", "runtime": "0.05", "ncu_metrics": "",
           "power": "70.0", "clock_sm": "2760.0", "clock_mem": "10251.0", "temp": "47.0", "gpu_util": "100.0",
           "mem_util": "0.0", "gpu_name": GPU, "arithmetic_intensity_sh": "85.33", "energy_J_script": "0.003",
           "gflops_per_watt_script": "1", "gflops_script": "5000"}
    row.update(overrides)
    return row


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def cutlass_csv(tmp_path):
    rows = [
        _cutlass_row(),  # 0: the reference row
        _cutlass_row(beta="1.0", runtime="0.0512"),  # 1: beta != 0 reads C
        _cutlass_row(timestamp="1731372850", runtime="0.0501"),  # 2: same options as 0: a replicate
        _cutlass_row(power="", gpu_util="0.0"),  # 3: no power reading
        _cutlass_row(blocksize1="128", gpu_util="0.0", power="30.0"),  # 4: power read while idle
        _cutlass_row(blocksize1="256", runtime="", power=""),  # 5: failed run
    ]
    return _write_csv(tmp_path / "cutlass_results.csv", CUTLASS_HEADER, rows)


def _by_row(table):
    return table.to_pylist()


def test_cutlass_rows_keep_units_work_and_provenance(cutlass_csv):
    table = import_gpperf(cutlass_csv)
    assert table.schema.equals(arrow_schema(), check_metadata=False)
    rows = _by_row(table)
    assert len(rows) == 6
    r = rows[0]
    assert r["source"] == "import:gpperf:cutlass_results.csv"
    assert r["device_key"] == "cuda-nvidia-geforce-rtx-4070" and r["device_name"] == GPU
    assert (r["kernel"], r["implementation"], r["dtype"], r["batch"]) == ("gemm", f"cutlass.{KERNEL}", "fp32", 1)
    assert (r["m"], r["n"], r["k"]) == (512, 256, 1024)
    assert r["time_median_ms"] == 0.05 and r["samples_ms"] == [0.05] and r["samples_n"] == 1
    assert r["timing_method"] == "import:cutlass_profiler"
    assert r["flops"] == 2 * 512 * 256 * 1024
    assert r["min_bytes"] == 4 * (512 * 1024 + 1024 * 256 + 512 * 256)
    assert r["achieved_flops_per_s"] == pytest.approx(r["flops"] / 0.05e-3)
    # the real tile comes from the kernel name; the ignored options stay in params_json only
    assert (r["tile_m"], r["tile_n"], r["tile_k"], r["tile_num_stages"], r["layout"]) == (128, 128, 8, 2, "nn")
    params = json.loads(r["params_json"])
    assert params["blocksize1"] == 64 and params["layout_option"] == "nn" and params["beta"] == 0.0
    assert (r["clock_mhz_before"], r["mem_clock_mhz_before"], r["temperature_c_before"]) == (2760.0, 10251.0, 47.0)
    assert r["measured_at"].timestamp() == 1731372844
    assert (r["host"], r["python_version"], r["threads"]) == ("unknown", "unknown", 0)
    # beta != 0 adds the read of C to the minimum traffic
    assert rows[1]["min_bytes"] - r["min_bytes"] == 4 * 512 * 256


def test_cutlass_power_is_kept_but_flagged_doubtful(cutlass_csv):
    rows = _by_row(import_gpperf(cutlass_csv))
    r = rows[0]
    assert r["energy_method"] == "import:nvidia-smi-after-run" and r["energy_is_estimate"] is False
    assert r["energy_quality"] == "doubtful" and "after the kernel ran" in r["energy_reason"]
    assert r["power_avg_w"] == 70.0 and r["energy_gross_j"] == pytest.approx(70.0 * 0.05e-3)
    assert rows[3]["energy_method"] == "none" and rows[3]["energy_quality"] is None
    assert rows[4]["energy_quality"] == "doubtful" and rows[4]["energy_reason"].startswith("an idle reading")


def test_a_failed_cutlass_run_is_an_error_row_with_its_reason(cutlass_csv):
    failed = _by_row(import_gpperf(cutlass_csv))[5]
    assert failed["status"] == "error" and "runtime" in failed["reason"]
    assert failed["time_median_ms"] is None and failed["samples_ms"] is None
    assert failed["energy_method"] == "none"


def test_a_run_read_busy_after_it_finished_is_contended_with_the_reading(cutlass_csv):
    rows = _by_row(import_gpperf(cutlass_csv))
    assert rows[0]["status"] == "contended"  # gpu_util 100, 47 C
    assert "100% busy, 47 C" in rows[0]["reason"] and "shared the GPU" in rows[0]["reason"]
    assert rows[0]["time_median_ms"] == 0.05  # the time is kept
    assert rows[3]["status"] == "ok" and rows[3]["reason"] is None  # read at 0%: the profiler had finished


def test_a_run_read_idle_but_hot_after_it_finished_is_contended(tmp_path):
    path = _write_csv(tmp_path / "cutlass_results.csv", CUTLASS_HEADER,
                      [_cutlass_row(gpu_util="0.0", temp="29.0"), _cutlass_row(gpu_util="0.0", temp="68.0")])
    cool, hot = _by_row(import_gpperf(path))
    assert cool["status"] == "ok" and cool["energy_reason"].startswith("an idle reading")
    assert hot["status"] == "contended" and "0% busy, 68 C" in hot["reason"]
    assert not hot["energy_reason"].startswith("an idle reading")  # it had just been busy


def test_config_ids_are_unique_and_stable_across_imports(cutlass_csv, tmp_path):
    first, second = import_gpperf(cutlass_csv), import_gpperf(cutlass_csv)
    ids = first.column("config_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert ids == second.column("config_id").to_pylist()
    assert pc.unique(first.column("run_id")).to_pylist() == second.column("run_id").unique().to_pylist()
    # the replicate of row 0 is told apart by an index, not dropped
    assert json.loads(first.column("params_json")[2].as_py())["replicate"] == 1
    # another file's content is another run
    other = _write_csv(tmp_path / "other.csv", CUTLASS_HEADER, [_cutlass_row(runtime="0.07")])
    assert import_gpperf(other).column("run_id")[0] != first.column("run_id")[0]


def _recomputed_ids(table):
    return [config_id({c: r[c] for c in CONFIG_COLUMNS if r[c] is not None}) for r in table.to_pylist()]


def test_config_ids_are_those_of_the_stored_configuration_columns(cutlass_csv, tmp_path, plain_csv):
    """Resuming and joins recompute ids from the columns: an import must agree with them."""
    kt = _kt_cache(tmp_path / "kt.json", _kt_entries())
    for table in (import_gpperf(cutlass_csv), import_kernel_tuner(kt, k=64),
                  import_csv(plain_csv, parse_mapping(MAPPING), defaults=DEFAULTS)):
        assert _recomputed_ids(table) == table.column("config_id").to_pylist()


def test_cutlass_kernel_names_give_tile_stages_and_dtype():
    assert parse_cutlass_kernel_name("cutlass_simt_sgemm_64x32_8x5_tn_align1") == {
        "tile_m": 64, "tile_n": 32, "tile_k": 8, "tile_num_stages": 5, "layout": "tn", "dtype": "fp32",
        "fp32_math": "ieee"}  # SIMT: fp32 on the CUDA cores
    tensor_op = parse_cutlass_kernel_name("cutlass_tensorop_h1688gemm_128x256_32x2_nt_align8")
    assert tensor_op["dtype"] == "fp16" and tensor_op["fp32_math"] is None
    assert parse_cutlass_kernel_name("my_gemm") == {}


def _tiled_files(folder: Path) -> None:
    _write_csv(folder / "tiled_execution_times.csv", ["M", "N", "K", "Tile Size", "Execution Time"],
               [{"M": 512, "N": 512, "K": 256, "Tile Size": 8, "Execution Time": 6.5},
                {"M": 512, "N": 512, "K": 256, "Tile Size": 16, "Execution Time": 5.5}])
    _write_csv(folder / "tiled_power_usage.csv", ["M", "N", "K", "Tile Size", "Average Power Usage (W)"],
               [{"M": 512, "N": 512, "K": 256, "Tile Size": 8, "Average Power Usage (W)": 32.0},
                {"M": 512, "N": 512, "K": 256, "Tile Size": 1, "Average Power Usage (W)": 31.0}])


def test_a_folder_imports_cutlass_and_tiled_rows_with_power_joined(cutlass_csv):
    folder = cutlass_csv.parent
    _tiled_files(folder)
    rows = [r for r in _by_row(import_gpperf(folder)) if r["source"] == "import:gpperf:tiled_execution_times.csv"]
    assert len(rows) == 2
    joined, alone = rows
    assert joined["implementation"] == "gpperf.tiled_sgemm" and joined["device_name"] == GPU
    assert (joined["tile_m"], joined["tile_n"], joined["tile_k"]) == (8, 8, 8)
    assert joined["timing_method"] == "import:single-launch-no-warmup" and joined["samples_ms"] == [6.5]
    assert joined["energy_quality"] == "doubtful" and joined["energy_gross_j"] == pytest.approx(32.0 * 6.5e-3)
    assert "whole process" in joined["energy_reason"]
    assert alone["energy_method"] == "none" and alone["power_avg_w"] is None


def test_tiled_files_alone_need_the_gpu_name(tmp_path):
    _tiled_files(tmp_path)
    with pytest.raises(InvalidInputError, match="gpu_name"):
        import_gpperf(tmp_path / "tiled_execution_times.csv")
    table = import_gpperf(tmp_path / "tiled_execution_times.csv", gpu_name="Some GPU")
    assert table.column("device_key").unique().to_pylist() == ["cuda-some-gpu"]
    assert table.column("power_avg_w").to_pylist() == [32.0, None]  # power file beside it is joined


def test_a_foreign_csv_is_refused_with_what_it_lacks(tmp_path):
    path = _write_csv(tmp_path / "x.csv", ["a", "b"], [{"a": 1, "b": 2}])
    with pytest.raises(InvalidInputError, match="not a GPPerf CSV"):
        import_gpperf(path)
    with pytest.raises(InvalidInputError, match="no GPPerf"):
        import_gpperf(tmp_path / "missing")


# -- Kernel Tuner ---------------------------------------------------------------------

def _kt_cache(path: Path, entries: dict, *, keys=("MWG", "NWG", "KWG"), problem_size=(256, 128), closed=True) -> Path:
    head = {"device_name": "NVIDIA A100-PCIE-40GB", "kernel_name": "Xgemm", "problem_size": list(problem_size),
            "tune_params_keys": list(keys), "tune_params": {k: [] for k in keys}, "objective": "time", "cache": {}}
    text = json.dumps(head)[:-2]  # as Kernel Tuner writes it: header, then one entry per line
    text += "".join("\n" + json.dumps({key: value})[1:-1] + "," for key, value in entries.items())
    if closed:
        text = text[:-1] + "}\n}"
    path.write_text(text)
    return path


def _kt_entries():
    return {
        "64,32,16": {"MWG": 64, "NWG": 32, "KWG": 16, "time": 0.5, "times": [0.52, 0.49, 0.5, 0.48, 0.6],
                     "nvml_power": 200.0, "nvml_energy": 1e-4, "timestamp": "2023-05-31 11:40:24+00:00"},
        "128,32,16": {"MWG": 128, "NWG": 32, "KWG": 16, "time": "InvalidConfig"},
        "64,64,16": {"MWG": 64, "NWG": 64, "KWG": 16, "time": "CompilationFailedConfig"},
        "64,64,32": {"MWG": 64, "NWG": 64, "KWG": 32, "time": 1e20},
    }


@pytest.mark.parametrize("closed", [True, False])
def test_kernel_tuner_cache_entries_become_rows_with_status_and_samples(tmp_path, closed):
    path = _kt_cache(tmp_path / "cache.json", _kt_entries(), closed=closed)
    rows = _by_row(import_kernel_tuner(path, k=64))
    assert [r["status"] for r in rows] == ["ok", "unsupported", "error", "error"]
    ok = rows[0]
    assert ok["source"] == "import:kernel-tuner:cache.json"
    assert ok["device_key"] == "cuda-nvidia-a100-pcie-40gb" and ok["implementation"] == "kernel_tuner.Xgemm"
    assert (ok["m"], ok["n"], ok["k"]) == (128, 256, 64)  # problem_size is (x, y) = (n, m)
    assert (ok["tile_m"], ok["tile_n"], ok["tile_k"]) == (64, 32, 16)
    assert ok["samples_ms"] == [0.52, 0.49, 0.5, 0.48, 0.6] and ok["samples_n"] == 5
    assert ok["time_median_ms"] == 0.5 and ok["time_mean_ms"] == 0.5
    assert ok["flops"] == 2 * 128 * 256 * 64
    assert ok["energy_method"] == "import:kernel-tuner-nvml" and ok["energy_gross_j"] == 1e-4
    assert ok["measured_at"].year == 2023
    assert json.loads(ok["params_json"]) == {"MWG": 64, "NWG": 32, "KWG": 16, "problem_size": [256, 128]}
    assert "InvalidConfig" in rows[1]["reason"] and "compile" in rows[2]["reason"]
    assert "failure marker" in rows[3]["reason"] and rows[3]["time_median_ms"] is None
    ids = [r["config_id"] for r in rows]
    assert len(set(ids)) == 4
    assert ids == import_kernel_tuner(path, k=64).column("config_id").to_pylist()


def test_kernel_tuner_block_sizes_map_to_tiles_as_in_its_matmul_example(tmp_path):
    keys = ("block_size_x", "block_size_y", "tile_size_x", "tile_size_y")
    entry = {"block_size_x": 32, "block_size_y": 4, "tile_size_x": 2, "tile_size_y": 8, "time": 1.0}
    path = _kt_cache(tmp_path / "mm.json", {"32,4,2,8": entry}, keys=keys, problem_size=(512, 512, 512))
    (row,) = _by_row(import_kernel_tuner(path))
    assert (row["tile_n"], row["tile_m"], row["tile_k"]) == (64, 32, None)
    assert row["samples_ms"] == [1.0] and row["calls_per_sample"] is None


def test_kernel_tuner_leaves_gemm_sizes_unknown_when_the_file_gives_two(tmp_path):
    path = _kt_cache(tmp_path / "c.json", _kt_entries())
    table = import_kernel_tuner(path)  # a 2-element problem_size: no --k demanded
    assert table.column("k").null_count == table.num_rows and table.column("flops").null_count == table.num_rows
    table = import_kernel_tuner(path, m=8, n=16, k=32)
    assert table.column("m").unique().to_pylist() == [8] and table.column("n").unique().to_pylist() == [16]


def test_a_file_that_is_not_a_kernel_tuner_cache_is_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(InvalidInputError, match="missing device_name"):
        import_kernel_tuner(tmp_path / "x.json", m=1, n=1, k=1)
    (tmp_path / "y.json").write_text("not json")
    with pytest.raises(InvalidInputError, match="not JSON"):
        import_kernel_tuner(tmp_path / "y.json", m=1, n=1, k=1)


# -- generic CSV ----------------------------------------------------------------------

@pytest.fixture
def plain_csv(tmp_path):
    return _write_csv(tmp_path / "runs.csv", ["Size", "runtime_ms", "GPU", "bs", "watts"],
                      [{"Size": 256, "runtime_ms": 0.5, "GPU": "RTX X", "bs": 16, "watts": 100},
                       {"Size": 256, "runtime_ms": 0.5, "GPU": "RTX X", "bs": 16, "watts": ""},
                       {"Size": 512, "runtime_ms": "", "GPU": "RTX X", "bs": 32, "watts": ""}])


MAPPING = ["m=Size", "n=Size", "k=Size", "time_median_ms=runtime_ms", "device_name=GPU", "params.bs=bs",
           "power_avg_w=watts"]
DEFAULTS = {"kernel": "gemm", "implementation": "mylib.gemm", "dtype": "fp16"}


def test_parse_mapping_reads_cli_items_and_refuses_bad_ones():
    assert parse_mapping(["m=M", " time_median_ms = Execution Time "]) == {
        "m": "M", "time_median_ms": "Execution Time"}
    for bad in (["m"], ["=M"], ["m="], ["m=A", "m=B"]):
        with pytest.raises(InvalidInputError):
            parse_mapping(bad)


def test_csv_import_maps_columns_and_derives_the_rest(plain_csv):
    rows = _by_row(import_csv(plain_csv, parse_mapping(MAPPING), defaults=DEFAULTS))
    first = rows[0]
    assert first["source"] == "import:csv:runs.csv" and first["device_key"] == "cuda-rtx-x"
    assert (first["m"], first["n"], first["k"], first["batch"]) == (256, 256, 256, 1)
    assert first["samples_ms"] == [0.5] and first["status"] == "ok" and first["timing_method"] == "import:csv"
    assert first["min_bytes"] == 2 * 3 * 256 * 256  # fp16
    assert first["energy_gross_j"] == pytest.approx(100 * 0.5e-3) and first["energy_method"] == "import:csv"
    assert rows[1]["energy_method"] == "none"
    assert json.loads(first["params_json"]) == {"bs": 16}
    assert rows[2]["status"] == "error" and rows[2]["reason"] == "no time in this CSV row"
    ids = [r["config_id"] for r in rows]
    assert len(set(ids)) == 3  # rows 0 and 1 coincide: a replicate index tells them apart


def test_csv_import_names_unknown_and_missing_columns(plain_csv):
    with pytest.raises(InvalidInputError, match="not perfscope columns: mm"):
        import_csv(plain_csv, {"mm": "Size", "device_name": "GPU"}, defaults=DEFAULTS)
    with pytest.raises(InvalidInputError, match="'Nope'"):
        import_csv(plain_csv, {"m": "Nope", "device_name": "GPU"}, defaults=DEFAULTS)
    with pytest.raises(InvalidInputError, match="implementation, dtype"):
        import_csv(plain_csv, {"device_name": "GPU"}, defaults={"kernel": "gemm"})
    with pytest.raises(InvalidInputError, match="importer sets config_id"):
        import_csv(plain_csv, {"config_id": "bs", "device_name": "GPU"}, defaults=DEFAULTS)
    with pytest.raises(InvalidInputError, match="line 2.*'GPU'.*integer"):
        import_csv(plain_csv, {"m": "GPU", "device_name": "GPU"}, defaults=DEFAULTS)


# -- into the store -------------------------------------------------------------------

def test_imported_rows_go_to_the_store_once_even_when_imported_twice(cutlass_csv, tmp_path):
    table = import_gpperf(cutlass_csv)
    dataset = tmp_path / "ds"
    files = write_imported(table, dataset)
    assert [p.parent.parent.name for p in files] == ["device=cuda-nvidia-geforce-rtx-4070"]
    write_imported(import_gpperf(cutlass_csv), dataset)
    store = ProfileStore(dataset)
    stored = store.read().table
    assert stored.num_rows == table.num_rows
    assert sorted(stored.column("config_id").to_pylist()) == sorted(table.column("config_id").to_pylist())
    assert len(store.files()) == 1


# -- the real GPPerf data (read in place, never copied) ------------------------------

@pytest.mark.skipif(not (GPPERF_DIR / "cutlass_results.csv").is_file(), reason="GPPerf anchor data absent")
def test_the_real_gpperf_cutlass_sweep_imports_quickly_and_completely():
    start = time.perf_counter()
    table = import_gpperf(GPPERF_DIR / "cutlass_results.csv")
    elapsed_s = time.perf_counter() - start
    assert table.num_rows == 16_128
    shapes = table.group_by(["m", "n", "k"]).aggregate([])
    assert shapes.num_rows == 36
    assert pc.count_distinct(table.column("config_id")).as_py() == 16_128
    assert pc.sum(pc.equal(table.column("energy_quality"), "doubtful")).as_py() == 2_595
    idle = pc.starts_with(table.column("energy_reason"), "an idle reading")
    assert pc.sum(idle).as_py() == 1_156  # 1,159 read at 0%, 3 of them hot (had just been busy)
    # every run read busy (1,436) or hot (11 more) after it finished is contended: all 448 runs of
    # 128256x2048x1024 and x2048, 134 of 128256x2048x512
    status = table.column("status").to_pylist()
    assert status.count("ok") == 14_681 and status.count("contended") == 1_447
    ok = table.filter(pc.equal(table.column("status"), "ok"))
    assert ok.group_by(["m", "n", "k"]).aggregate([]).num_rows == 34
    assert elapsed_s < 10, f"import took {elapsed_s:.1f} s"
