"""perfscope's own exception types (the ground layer: imports nothing from perfscope).

Library code raises these with plain one-line messages that say what is wrong and what
to do, in the library's terms (never a command-line flag, never an exit status). Only
the command line (``perfscope/cli.py``, ``perfscope/commands/``) maps them to exit
statuses and speaks of its flags (docs/errors-and-logging.md).

    PerfscopeError
    ├── InvalidInputError (also a ValueError): arguments, configuration or file content
    │   └── NotFoundError (also a LookupError): a named thing that does not exist
    │       └── DeviceUnavailableError: a device not present on this machine
    ├── StateError: what exists (on disk, on the machine) does not allow the operation
    │   ├── StoreError: a profile dataset cannot be opened, read or written
    │   │   └── SchemaVersionError
    │   └── ModelFileError: a model file or bundle cannot be loaded or written
    ├── MeterUnavailableError, MeasurementError, NvmlError (and its kinds)
    ├── UnsupportedConfigError: recorded as a row by the collectors, not raised past them
    └── Interrupted: the user stopped a command
"""

from __future__ import annotations


class PerfscopeError(Exception):
    """Base of all perfscope errors.

    ``parameter`` names the argument at fault (``tdp_w``, ``out``), where one is: the
    command line shows it as its option (``--tdp-w``, ``--out``).
    """

    def __init__(self, message: str = "", *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class InvalidInputError(PerfscopeError, ValueError):
    """Arguments, configuration or file content that perfscope cannot accept."""


UserInputError = InvalidInputError
"""The former name of ``InvalidInputError``, still accepted."""


class NotFoundError(InvalidInputError, LookupError):
    """A named thing (preset, device, dataset, model, file) that does not exist."""


class StateError(PerfscopeError):
    """What exists (a file, a directory, a lock, a fitted model) does not allow the operation."""


class DeviceUnavailableError(NotFoundError):
    """The requested device (for example ``cuda:1``) is not present on this machine."""


class MeterUnavailableError(PerfscopeError):
    """An energy meter cannot be used here (no counter, no permission, no library)."""


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
    """The user stopped a command (Ctrl-C); the message says what was kept."""


class StoreError(StateError):
    """A profile dataset cannot be opened, read or written."""


class SchemaVersionError(StoreError):
    """A dataset or file was written with a schema version this perfscope cannot read."""


class ModelFileError(StateError):
    """A model file or bundle cannot be loaded or written: missing, foreign, tampered or untrusted."""


class UnsupportedConfigError(PerfscopeError):
    """A configuration this device or library cannot run (recorded as a row, not raised
    past the collector: the sweep goes on)."""
