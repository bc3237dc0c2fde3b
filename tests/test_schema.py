from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from perfscope.schema import (
    COLUMN_NAMES,
    CONFIG_COLUMNS,
    SCHEMA_METADATA_KEY,
    SCHEMA_VERSION,
    Measurement,
    arrow_schema,
    config_id,
    rows_to_table,
)
from perfscope.store import ProfileStore


def test_parquet_schema_written_by_the_store_equals_the_schema_derived_from_measurement(tmp_path, make_row):
    store = ProfileStore(tmp_path / "ds", create=True)
    (path,) = store.append([make_row()])
    on_disk = pq.read_schema(path)
    # the partition columns live in the path only (device=<device_key>/kernel=<kernel>)
    in_files = pa.schema([f for f in arrow_schema() if f.name not in ("device_key", "kernel")])
    assert on_disk.equals(in_files, check_metadata=False)
    assert on_disk.metadata[SCHEMA_METADATA_KEY] == str(SCHEMA_VERSION).encode()
    assert store.read().table.schema.equals(arrow_schema(), check_metadata=False)
    assert store.read().table.column_names == list(COLUMN_NAMES)


def test_arrow_types_follow_the_annotations():
    schema = arrow_schema()
    assert schema.field("time_median_ms").type == pa.float64() and schema.field("time_median_ms").nullable
    assert schema.field("samples_ms").type == pa.list_(pa.float64())
    assert schema.field("flops").type == pa.int64()
    assert schema.field("measured_at").type == pa.timestamp("us", tz="UTC")
    assert not schema.field("run_id").nullable and not schema.field("status").nullable


def test_issue_required_columns_are_present():
    required = {"schema_version", "run_id", "config_id", "kernel", "implementation", "dtype", "batch", "m", "n",
                "k", "tile_m", "time_median_ms", "time_p10_ms", "time_p90_ms", "time_iqr_ms", "samples_n",
                "samples_ms", "flops", "min_bytes", "achieved_flops_per_s", "achieved_bytes_per_s",
                "energy_gross_j", "energy_net_j", "power_avg_w", "power_idle_w", "energy_method",
                "timing_method", "cache_mode", "status", "reason", "host", "cpu_model", "threads",
                "device_name", "gpu_uuid", "driver_version", "cuda_version", "torch_version", "triton_version",
                "clock_mhz_before", "clock_mhz_after", "mem_clock_mhz_before", "temperature_c_before",
                "temperature_c_after", "power_limit_w", "throttle_reasons_before"}
    assert required <= set(COLUMN_NAMES)
    assert set(CONFIG_COLUMNS) <= set(COLUMN_NAMES)


def test_config_id_is_stable_and_ignores_order_and_nulls():
    a = config_id({"kernel": "gemm", "m": 4, "n": 5, "dtype": "fp32"})
    b = config_id({"dtype": "fp32", "n": 5, "m": 4, "kernel": "gemm", "tile_m": None})
    assert a == b and len(a) == 16
    assert config_id({"kernel": "gemm", "m": 4, "n": 6, "dtype": "fp32"}) != a


def test_config_id_rejects_provenance_columns():
    with pytest.raises(ValueError):
        config_id({"kernel": "gemm", "host": "x"})


def test_rows_to_table_rejects_a_missing_required_value(make_row):
    row = dataclasses.replace(make_row(), status=None)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, ValueError)):
        rows_to_table([row])


def test_measurement_requires_identity_fields():
    with pytest.raises(TypeError):
        Measurement(kernel="gemm")  # type: ignore[call-arg]
