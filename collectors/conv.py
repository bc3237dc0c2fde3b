"""2-D convolution through PyTorch (``torch.nn.functional.conv2d``), NCHW or channels-last.

``ConvShape`` is what every conv2d implementation shares (fields, validation, work,
configuration columns, inputs, check); ``ConvCase`` and the Triton conv case build on it.
Also home of ``expand_axes``, the grid expansion (cartesian product of axes, optionally
multiplied by a list of fixed ``shapes``) that the conv and attention grids share.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from perfscope.collectors.fp32_math import torch_fp32_math
from perfscope.collectors.gemm import check_device_supports
from perfscope.collectors.inputs import input_set_count, seeded_uniform, torch_dtype
from perfscope.collectors.memory_guard import FLOAT32_BYTES, FLOAT64_BYTES, MemoryNeed
from perfscope.collectors.protocol import Case, Workload, check_cache_mode
from perfscope.devices.base import Device
from perfscope.dtypes import DtypeInfo, bytes_per_element, check_dtype, dtype_info, is_fp8, is_tf32
from perfscope.errors import InvalidInputError, UnsupportedConfigError
from perfscope.features import conv2d_flops, conv2d_min_bytes, conv2d_output_hw

CHECK_FILTERS = 64  # output channels of the first image compared with the float64 reference
LAYOUTS = ("nchw", "channels_last")


@dataclass(frozen=True, kw_only=True)
class ConvShape(Case):
    """The configuration every conv2d implementation shares: out = conv2d(x, w) with
    x (N, C, H, W), w (K, C/groups, R, S), no bias, inputs uniform in [-1, 1].

    Depthwise when ``groups == c == k``. Validates the fields; gives the work (``flops``,
    ``min_bytes``), the configuration columns, the inputs and the check. An
    implementation adds ``implementation``, ``build`` and its own fields.
    """

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dil_h: int = 1
    dil_w: int = 1
    groups: int = 1
    layout: str = "nchw"
    dtype: str = "fp32"
    cache_mode: str = "warm"
    seed: int = 0
    kernel: str = "conv"

    def __post_init__(self) -> None:
        _ = self.flops  # validates sizes, groups and the output shape (InvalidInputError)
        check_dtype(self.dtype)
        if self.layout not in LAYOUTS:
            raise InvalidInputError(f"conv layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        check_cache_mode(self.cache_mode)

    @property
    def depthwise(self) -> bool:
        """Whether this is a depthwise convolution (one group per channel)."""
        return self.groups == self.c == self.k

    @property
    def output_hw(self) -> tuple[int, int]:
        """Output height and width (P, Q)."""
        return conv2d_output_hw(self.h, self.w, self.r, self.s, *self._geometry)

    @property
    def flops(self) -> int:
        """FLOPs of this convolution (2 per multiply-add)."""
        return conv2d_flops(self.n, self.c, self.h, self.w, self.k, self.r, self.s, *self._geometry, self.groups)

    @property
    def min_bytes(self) -> int:
        """Minimum bytes moved: input, filters and output once each."""
        return conv2d_min_bytes(self.n, self.c, self.h, self.w, self.k, self.r, self.s, *self._geometry,
                                self.groups, dtype=self.dtype)

    @property
    def _geometry(self) -> tuple[int, int, int, int, int, int]:
        return self.stride_h, self.stride_w, self.pad_h, self.pad_w, self.dil_h, self.dil_w

    @property
    def conv2d_options(self) -> dict[str, tuple[int, int]]:
        """Stride, padding and dilation as ``torch.nn.functional.conv2d`` takes them."""
        return {"stride": (self.stride_h, self.stride_w), "padding": (self.pad_h, self.pad_w),
                "dilation": (self.dil_h, self.dil_w)}

    def config_columns(self) -> dict[str, Any]:
        """The configuration columns of this case's profile row."""
        return {"kernel": self.kernel, "implementation": self.implementation, "dtype": self.dtype,
                "cache_mode": self.cache_mode, "batch": self.n,
                "conv_n": self.n, "conv_c": self.c, "conv_h": self.h, "conv_w": self.w,
                "conv_k": self.k, "conv_r": self.r, "conv_s": self.s,
                "stride_h": self.stride_h, "stride_w": self.stride_w, "pad_h": self.pad_h, "pad_w": self.pad_w,
                "dil_h": self.dil_h, "dil_w": self.dil_w, "groups": self.groups, "layout": self.layout}

    def memory_format(self) -> Any:
        """The torch memory format of ``layout``."""
        import torch  # optional, slow to import; only measuring needs it

        return torch.channels_last if self.layout == "channels_last" else torch.contiguous_format

    def memory_need(self, device: Device) -> MemoryNeed:
        """What measuring this shape allocates: (x, w) per input set, the output, float32
        staging, and the float64 check of the first image's first filters on the host."""
        bpe = bytes_per_element(self.dtype)
        oh, ow = self.output_hw
        x, wt = self.n * self.c * self.h * self.w, self.k * (self.c // self.groups) * self.r * self.s
        filters = min(self.k, CHECK_FILTERS)
        return MemoryNeed(operand_bytes=bpe * (x + wt),
                          input_sets=input_set_count(self.cache_mode, self.min_bytes, device),
                          # two results alive at once: the check's and a timed call's
                          output_bytes=2 * bpe * self.n * self.k * oh * ow, workspace_bytes=FLOAT32_BYTES * max(x, wt),
                          host_check_bytes=FLOAT64_BYTES * (self.c * self.h * self.w
                                                            + filters * (self.c // self.groups) * self.r * self.s
                                                            + 2 * filters * oh * ow))

    def make_inputs(self, device: Device) -> list[tuple[Any, Any]]:
        """Input sets (x, w) on ``device`` in ``layout``: one warm, enough to outgrow the cache cold."""
        storage, fmt, dev = torch_dtype(dtype_info(self.dtype)), self.memory_format(), device.torch_device
        inputs = []
        for i in range(input_set_count(self.cache_mode, self.min_bytes, device)):
            x = seeded_uniform((self.n, self.c, self.h, self.w), storage, dev, seed=self.seed * 1000 + 2 * i)
            wt = seeded_uniform((self.k, self.c // self.groups, self.r, self.s), storage, dev,
                                seed=self.seed * 1000 + 2 * i + 1)
            inputs.append((x.contiguous(memory_format=fmt), wt.contiguous(memory_format=fmt)))
        return inputs

    def normalised_error(self, x: Any, wt: Any, out: Any) -> float:
        """max |out - ref| / sqrt(C/groups * R * S) over the first image and its first
        ``CHECK_FILTERS`` filters (whole groups), against float64 on the CPU."""
        import torch.nn.functional as F  # optional, slow to import; only measuring needs it

        groups = self.groups
        # the first image, and only the first filters (whole groups) to keep float64 cheap
        per_group_k, per_group_c = self.k // groups, self.c // groups
        check_groups = 1 if groups == 1 else max(1, min(groups, CHECK_FILTERS // per_group_k))
        filters = min(self.k, CHECK_FILTERS) if groups == 1 else check_groups * per_group_k
        channels = self.c if groups == 1 else check_groups * per_group_c
        ref = F.conv2d(x[:1, :channels].double().cpu(), wt[:filters].double().cpu(),
                       groups=check_groups, **self.conv2d_options)
        got = out[:1, :filters].double().cpu()
        return float((got - ref).abs().max()) / math.sqrt(per_group_c * self.r * self.s)


@dataclass(frozen=True, kw_only=True)
class ConvCase(ConvShape):
    """conv2d through PyTorch (``torch.nn.functional.conv2d``).

    ``cudnn_benchmark`` is a CUDA setting: True or False on CUDA (recorded in
    ``params_json``), None elsewhere (``cases_from_axes`` with ``device_kind`` and
    ``for_device`` set it so); a mismatch is recorded as an unsupported row.
    """

    cudnn_benchmark: bool | None = None

    implementation = "torch.conv2d"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cudnn_benchmark is not None and not isinstance(self.cudnn_benchmark, bool):
            raise InvalidInputError(f"cudnn_benchmark must be true, false or null, got {self.cudnn_benchmark!r}")

    def config_columns(self) -> dict[str, Any]:
        """The configuration columns, with the cuDNN autotuner setting in ``params_json``."""
        params = None if self.cudnn_benchmark is None else json.dumps({"cudnn_benchmark": self.cudnn_benchmark})
        return {**super().config_columns(), "params_json": params}

    def for_device(self, device_kind: str) -> ConvCase:
        """The same case with the cuDNN setting dropped where it does not apply (not CUDA)."""
        if device_kind == "cuda" or self.cudnn_benchmark is None:
            return self
        return dataclasses.replace(self, cudnn_benchmark=None)

    def build(self, device: Device) -> Workload:
        """Inputs and the ``torch.nn.functional.conv2d`` call on ``device``."""
        import torch.nn.functional as F  # optional, slow to import; only measuring needs it

        info = dtype_info(self.dtype)
        check_dtype_supported(info, device, "conv2d")
        if device.kind == "cuda" and self.cudnn_benchmark is None:
            raise UnsupportedConfigError("a conv case on CUDA must set cudnn_benchmark to true or false so the "
                                         "row records it (cases_from_axes(..., device_kind='cuda') does)")
        if device.kind != "cuda" and self.cudnn_benchmark is not None:
            raise UnsupportedConfigError(f"cudnn_benchmark is a cuDNN (CUDA) setting; on a {device.kind} leave it "
                                         "unset (cases_from_axes(..., device_kind=...) does)")
        inputs = self.make_inputs(device)
        sets, options, groups = len(inputs), self.conv2d_options, self.groups

        def call(i: int) -> Any:
            x, wt = inputs[i % sets]
            return F.conv2d(x, wt, groups=groups, **options)

        def check() -> float:
            x, wt = inputs[0]
            try:
                out = call(0)
            except (RuntimeError, NotImplementedError) as exc:
                if "not implemented for" in str(exc) or isinstance(exc, NotImplementedError):
                    raise UnsupportedConfigError(f"torch refused conv2d in {self.dtype} on {device.kind}: "
                                                 f"{one_line(exc)}") from None
                raise
            device.synchronize()
            return self.normalised_error(x, wt, out)

        # set last, so that a failed allocation above leaves the global flags alone
        restore_flags = _set_cudnn_flags(self.cudnn_benchmark, self.dtype) if device.kind == "cuda" else None

        def release() -> None:
            inputs.clear()
            if restore_flags is not None:
                restore_flags()

        return Workload(kernel=call, check=check, check_tolerance=info.check_tolerance,
                        flops=self.flops, min_bytes=self.min_bytes, input_sets=sets, release=release,
                        fp32_math=torch_fp32_math(device.kind, "conv"))


def _set_cudnn_flags(benchmark: bool, dtype: str) -> Any:
    """Set cuDNN's autotuner and tf32 flags for one case; return a function restoring them."""
    import torch  # optional, slow to import; only measuring needs it

    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, torch_fp32_math("cuda", "conv") == "tf32")  # not the getter: it may raise
    cudnn.benchmark = benchmark
    cudnn.allow_tf32 = is_tf32(dtype)  # torch enables tf32 convolutions by default; fp32 must not use it

    def restore() -> None:
        cudnn.benchmark, cudnn.allow_tf32 = before

    return restore


def check_dtype_supported(info: DtypeInfo, device: Device, what: str) -> None:
    """``UnsupportedConfigError`` for a dtype this device (or collector) cannot run."""
    if is_fp8(info.name):
        raise UnsupportedConfigError(f"fp8 {what} is not collected (torch has no plain fp8 {what})")
    check_device_supports(info, device)


def one_line(exc: BaseException | str, limit: int = 400) -> str:
    """An exception's (or warning's) text on one line, at most ``limit`` characters (for a row's reason)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- grids

def expand_axes(family: str, axes: Mapping[str, Any], *, axis_keys: Iterable[str], shape_keys: Iterable[str],
                defaults: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Grid points: the cartesian product of ``axes`` (name -> list of values; a scalar is a
    one-value axis), multiplied by ``axes["shapes"]`` when given (a list of dicts of fixed
    fields). ``defaults`` fill axes that neither the axes nor a shape give. An unknown key,
    an empty axis or a field given both as an axis and in a shape is a ``InvalidInputError``.
    """
    if not isinstance(axes, Mapping):
        raise InvalidInputError(f"a {family} grid is a mapping of axis names to value lists, got {type(axes).__name__}")
    axis_keys, shape_keys = tuple(axis_keys), tuple(shape_keys)
    unknown = sorted(set(axes) - set(axis_keys) - {"shapes"})
    if unknown:
        raise InvalidInputError(f"unknown {family} grid key(s) {', '.join(map(str, unknown))}: "
                             f"use {', '.join(axis_keys + ('shapes',))}")
    lists: dict[str, list[Any]] = {}
    for key in axis_keys:
        if key not in axes:
            continue
        values = axes[key]
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise InvalidInputError(f"{family} grid axis {key!r} is empty")
        lists[key] = values
    shapes = axes.get("shapes", [{}])
    if not isinstance(shapes, (list, tuple)) or not shapes or not all(isinstance(s, Mapping) for s in shapes):
        raise InvalidInputError(f"{family} grid 'shapes' must be a non-empty list of mappings, got {shapes!r}")
    points = []
    for shape in shapes:
        bad = sorted(set(shape) - set(shape_keys))
        if bad:
            raise InvalidInputError(f"unknown {family} shape field(s) {', '.join(map(str, bad))}: "
                                 f"use {', '.join(shape_keys)}")
        both = sorted(set(shape) & set(lists))
        if both:
            raise InvalidInputError(f"{family} field(s) {', '.join(both)} given both as an axis and in a shape: "
                                 "give each field one way")
        varying = dict(lists)
        for key, values in defaults.items():
            if key not in varying and key not in shape:
                varying[key] = list(values)
        for combo in itertools.product(*varying.values()):
            points.append({**shape, **dict(zip(varying, combo, strict=True))})
    return points


# the grid keys of the fields every conv2d implementation shares (ConvShape)
CONV_SHAPE_AXES = ("n", "c", "h", "w", "k", "r", "s", "stride", "pad", "dil", "groups", "layout", "dtype", "cache")
CONV_SHAPE_DEFAULTS = {"stride": [1], "pad": [0], "dil": [1], "groups": [1], "layout": ["nchw"], "dtype": ["fp32"],
                       "cache": ["warm"]}
PER_DIMENSION_KEYS = ("stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w")  # shapes only
_CONV_REQUIRED = ("n", "c", "h", "w", "k", "r", "s")
_CONV_AXES = CONV_SHAPE_AXES + ("cudnn_benchmark",)
_CONV_SHAPE_KEYS = _CONV_AXES + PER_DIMENSION_KEYS
_CONV_DEFAULTS = {**CONV_SHAPE_DEFAULTS, "cudnn_benchmark": [True]}


def conv_shape_fields(point: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ConvShape`` fields (all but the seed) of one point of a conv grid (``expand_axes``
    with ``CONV_SHAPE_DEFAULTS``): stride, pad and dil set both dimensions unless a shape gives
    stride_h, pad_w, ...; a missing size is a ``InvalidInputError``."""
    missing = [key for key in _CONV_REQUIRED if key not in point]
    if missing:
        raise InvalidInputError(f"conv grid needs {', '.join(missing)} (as axes or in every shape)")
    fields = {key: point[key] for key in (*_CONV_REQUIRED, "groups", "layout", "dtype")}
    for name in ("stride", "pad", "dil"):
        fields[f"{name}_h"] = point.get(f"{name}_h", point[name])
        fields[f"{name}_w"] = point.get(f"{name}_w", point[name])
    fields["cache_mode"] = point["cache"]
    return fields


def cases_from_axes(axes: Mapping[str, Any], *, seed: int = 0, device_kind: str | None = None) -> list[ConvCase]:
    """Conv cases: the cartesian product of ``axes``.

    Keys: n, c, h, w, k, r, s, stride, pad, dil (each sets both the h and w value), groups,
    layout (nchw, channels_last), dtype, cache (warm, cold), cudnn_benchmark; and ``shapes``,
    a list of dicts of fixed fields (those keys, plus stride_h, stride_w, pad_h, pad_w, dil_h,
    dil_w, which win over stride/pad/dil) that the other axes multiply. Missing axes default
    to stride 1, pad 0, dil 1, groups 1, layout nchw, dtype fp32, cache warm, cudnn_benchmark
    true. With ``device_kind`` other than "cuda" the cuDNN setting is dropped (and the
    duplicates it leaves removed). A point that is not a valid convolution is a
    ``InvalidInputError`` naming it: use ``shapes`` for irregular grids (e.g. depthwise).
    """
    cases = []
    for point in expand_axes("conv", axes, axis_keys=_CONV_AXES, shape_keys=_CONV_SHAPE_KEYS,
                             defaults=_CONV_DEFAULTS):
        fields = conv_shape_fields(point)
        try:
            case = ConvCase(**fields, cudnn_benchmark=point["cudnn_benchmark"], seed=seed)
        except InvalidInputError as exc:
            raise InvalidInputError(f"conv grid point {describe_point(point)}: {exc}") from None
        cases.append(case if device_kind is None else case.for_device(device_kind))
    return list(dict.fromkeys(cases))


def describe_point(point: Mapping[str, Any]) -> str:
    """A grid point as ``key=value, ...`` (for error messages)."""
    return ", ".join(f"{k}={v}" for k, v in point.items())
