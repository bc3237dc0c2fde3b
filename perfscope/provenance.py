"""Facts about the host and software that every row records."""

from __future__ import annotations

import os
import platform
import socket
import sys
from functools import lru_cache
from importlib import metadata

from perfscope.devices.cpu import cpu_model_name


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def host_provenance() -> dict[str, object]:
    """Host, OS, Python and library versions, and the intra-op thread count now."""
    out = dict(_static_provenance())
    if "torch" in sys.modules:  # never import torch just to describe the host
        out["threads"] = sys.modules["torch"].get_num_threads()
    return out


@lru_cache(maxsize=1)
def _static_provenance() -> dict[str, object]:
    torch_version = cuda_version = None
    threads = os.cpu_count() or 1
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch_version = torch.__version__
        cuda_version = torch.version.cuda
    return {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu_model_name(),
        "threads": threads,
        "python_version": sys.version.split()[0],
        "perfscope_version": package_version("perfscope") or "unknown",
        "torch_version": torch_version,
        "cuda_version": cuda_version,
        "triton_version": package_version("triton"),
    }
