"""perfscope's own exception types (the ground layer: imports nothing from perfscope).

Every error a user can cause or fix derives from ``PerfscopeError``; the CLI turns
these into one line on stderr and a non-zero exit. Messages say what to do.
"""

from __future__ import annotations


class PerfscopeError(Exception):
    """Base of all perfscope errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UserInputError(PerfscopeError, ValueError):
    """Bad arguments or configuration given by the user (exit status 2)."""

    exit_code = 2


class DeviceUnavailableError(PerfscopeError):
    """The requested device (for example ``cuda:1``) is not present on this machine."""

    exit_code = 2


class MeterUnavailableError(PerfscopeError):
    """An energy meter cannot be used here (no counter, no permission, no library).

    Exit status 2: the meter was asked for (``--energy``) and the choice cannot be honoured.
    """

    exit_code = 2


class MeasurementError(PerfscopeError):
    """A measurement could not be trusted (for example an energy window too short)."""


class NvmlError(PerfscopeError):
    """An NVML call failed; ``nvml_code`` keeps NVML's own error value."""

    def __init__(self, message: str, nvml_code: int | None = None) -> None:
        super().__init__(message)
        self.nvml_code = nvml_code


class NvmlUnavailableError(NvmlError, MeterUnavailableError):
    """NVML (the nvidia-ml-py package or the driver's library) cannot be loaded."""


class NvmlNotSupportedError(NvmlError):
    """The GPU or driver does not support this NVML query."""


class NvmlPermissionError(NvmlError):
    """NVML refused the query for lack of permission."""


class Interrupted(PerfscopeError):
    """The user stopped a command (Ctrl-C); the message says what was kept. Exit status 130."""

    exit_code = 130


class StoreError(PerfscopeError):
    """A profile dataset cannot be opened, read or written."""

    exit_code = 2


class SchemaVersionError(StoreError):
    """A dataset or file was written with a schema version this perfscope cannot read."""


class UnsupportedConfigError(PerfscopeError):
    """A configuration this device or library cannot run (recorded as a row, not raised
    past the collector: the sweep goes on)."""
