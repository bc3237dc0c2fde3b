"""perfscope: performance modelling and profiling of GPU kernels.

Importing perfscope is light: torch, triton and dash load only where they are used.
"""

from perfscope.schema import SCHEMA_VERSION, Measurement
from perfscope.store import ProfileStore

__all__ = ["SCHEMA_VERSION", "Measurement", "ProfileStore"]
