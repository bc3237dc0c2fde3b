"""Shared fixtures: a small real CPU measurement context and row factory."""

from __future__ import annotations

import os
from datetime import datetime, timezone

# Triton reads TRITON_INTERPRET when it is first imported (torch's flop counter imports
# it too): without a GPU, the Triton kernels are tested under the interpreter.
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

import pytest

from perfscope.schema import Measurement, config_id


@pytest.fixture
def make_row():
    """Build a valid Measurement with overridable fields (no measuring involved)."""

    def make(**overrides):
        config = {"kernel": "gemm", "implementation": "torch.matmul", "dtype": "fp32",
                  "cache_mode": "warm", "batch": 1, "m": 8, "n": 8, "k": 8}
        config.update({k: v for k, v in overrides.items() if k in config})
        values = dict(config)
        values.update(run_id="run-a", config_id=config_id(config), measured_at=datetime.now(timezone.utc),
                      device_key="cpu-test", status="ok", host="h", os="Linux", cpu_model="cpu",
                      threads=2, python_version="3.11", perfscope_version="0", device_kind="cpu",
                      device_name="test cpu", time_median_ms=1.0, samples_ms=[1.0, 1.1])
        values.update(overrides)
        return Measurement(**values)

    return make
