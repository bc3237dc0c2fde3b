"""A minimal valid ``Measurement`` for store tests run in child processes (not a test module)."""

from __future__ import annotations

from datetime import datetime, timezone

from perfscope.schema import Measurement, config_id


def row(m: int, run_id: str = "run-a", device_key: str = "cpu-test") -> Measurement:
    """A GEMM row of size ``m`` x 8 x 8 on ``device_key`` in run ``run_id``."""
    config = {"kernel": "gemm", "implementation": "torch.matmul", "dtype": "fp32", "cache_mode": "warm",
              "batch": 1, "m": m, "n": 8, "k": 8}
    return Measurement(**config, run_id=run_id, config_id=config_id(config), measured_at=datetime.now(timezone.utc),
                       device_key=device_key, status="ok", host="h", os="Linux", cpu_model="cpu", threads=1,
                       python_version="3.11", perfscope_version="0", device_kind="cpu", device_name="test cpu",
                       time_median_ms=float(m), samples_ms=[float(m)])
