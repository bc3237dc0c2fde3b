"""Loading NVML lazily and turning its errors into perfscope's own.

``pynvml`` (the ``nvidia-ml-py`` package) is imported inside :func:`load_nvml`, never
when perfscope is imported, so that perfscope works on machines without an NVIDIA
driver. Anything that looks like the ``pynvml`` module can be passed instead, for
example :class:`perfscope.testing.FakeNvml`.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from typing import Any

from perfscope.errors import (
    NvmlError,
    NvmlNotSupportedError,
    NvmlPermissionError,
    NvmlUnavailableError,
)

INSTALL_HINT = "pip install nvidia-ml-py (or pip install 'perfscope[cuda]')"

# NVML's return codes, as in pynvml; read from the module when it has them.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15

_lock = threading.Lock()
# id(module) -> a reference to the module, so that an id reused by a new object after
# the old one was garbage-collected is not mistaken for an initialised module.
_initialised: dict[int, Any] = {}


def _code(nvml: Any, name: str, default: int) -> int:
    value = getattr(nvml, name, default)
    return value if isinstance(value, int) else default


def _is_initialised(module: Any) -> bool:
    ref = _initialised.get(id(module))
    if ref is None:
        return False
    target = ref() if isinstance(ref, weakref.ref) else ref
    return target is module


def _remember(module: Any) -> None:
    try:
        _initialised[id(module)] = weakref.ref(module)
    except TypeError:  # objects without weakref support: keep them alive instead
        _initialised[id(module)] = module


def load_nvml(module: Any = None) -> Any:
    """Return an initialised NVML module, calling ``nvmlInit()`` once per module object.

    ``module`` is the module to use (``None``: import ``pynvml``; a string: import the
    module of that name). Raises ``NvmlUnavailableError`` when the package cannot be
    imported or the driver's library cannot be loaded.
    """
    if module is None or isinstance(module, str):
        name = module or "pynvml"
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise NvmlUnavailableError(
                f"cannot import {name} ({exc}); NVML energy and GPU state need it: "
                f"{INSTALL_HINT}"
            ) from exc
    with _lock:
        if _is_initialised(module):
            return module
        nvml_call(module, "nvmlInit")
        _remember(module)
    return module


def _advice(fn_name: str, code: int | None, nvml: Any) -> tuple[type[NvmlError], str]:
    """The perfscope error class for an NVML return code, and what the user can do."""
    if code in (
        _code(nvml, "NVML_ERROR_NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED),
        _code(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", NVML_ERROR_FUNCTION_NOT_FOUND),
    ):
        return NvmlNotSupportedError, (
            "this GPU or driver does not support it; use another method "
            "(perfscope falls back where it can) or update the NVIDIA driver"
        )
    if code == _code(nvml, "NVML_ERROR_NO_PERMISSION", NVML_ERROR_NO_PERMISSION):
        return NvmlPermissionError, (
            "run as a user allowed to query the GPU (root, or ask an administrator "
            "to grant access), or choose another energy meter"
        )
    if code == _code(nvml, "NVML_ERROR_UNINITIALIZED", NVML_ERROR_UNINITIALIZED):
        return NvmlUnavailableError, (
            "NVML is not initialised; obtain the module through perfscope.nvml.load_nvml()"
        )
    if code in (
        _code(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", NVML_ERROR_LIBRARY_NOT_FOUND),
        _code(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", NVML_ERROR_DRIVER_NOT_LOADED),
    ):
        return NvmlUnavailableError, (
            "install the NVIDIA driver and check that nvidia-smi works on this machine"
        )
    if code == _code(nvml, "NVML_ERROR_GPU_IS_LOST", NVML_ERROR_GPU_IS_LOST):
        return NvmlError, "the GPU fell off the bus; check nvidia-smi, reset the GPU or reboot"
    return NvmlError, "check the GPU's health with nvidia-smi and retry"


def nvml_call(nvml: Any, fn_name: str, *args: Any) -> Any:
    """Call ``nvml.<fn_name>(*args)``, turning NVML errors into perfscope errors.

    ``NVML_ERROR_NOT_SUPPORTED`` (and a function missing from the module or the
    driver) -> ``NvmlNotSupportedError``; ``NVML_ERROR_NO_PERMISSION`` ->
    ``NvmlPermissionError``; library missing, driver not loaded or NVML not
    initialised -> ``NvmlUnavailableError``; anything else -> ``NvmlError``. The
    error keeps NVML's code in ``nvml_code``.
    """
    fn = getattr(nvml, fn_name, None)
    if fn is None:
        raise NvmlNotSupportedError(
            f"NVML call {fn_name} is not available in this NVML module; "
            f"upgrade nvidia-ml-py ({INSTALL_HINT})"
        )
    nvml_error = getattr(nvml, "NVMLError", None)
    if not (isinstance(nvml_error, type) and issubclass(nvml_error, BaseException)):
        return fn(*args)
    try:
        return fn(*args)
    except nvml_error as exc:
        code = getattr(exc, "value", None)
        cls, advice = _advice(fn_name, code, nvml)
        raise cls(
            f"NVML call {fn_name} failed: {exc} (NVML error {code}); {advice}",
            nvml_code=code,
        ) from exc


def nvml_optional(nvml: Any, fn_name: str, *args: Any) -> Any | None:
    """Like :func:`nvml_call`, but return ``None`` when the query is not supported.

    For provenance queries that older GPUs or drivers lack. Other errors propagate.
    """
    try:
        return nvml_call(nvml, fn_name, *args)
    except NvmlNotSupportedError:
        return None
