"""Sweep specs as typed models (pydantic): one sweep model per kernel family, validated once.

A spec file (YAML) or a preset becomes a ``SweepSpec`` holding ``GemmSweep``,
``ConvSweep`` and ``AttentionSweep`` models whose axes are typed lists (a ``Dtype``, a
cache mode, positive integers, ...). Everything downstream (expansion, sharding, the
command line's overrides) carries these models; ``spec_json_schema()`` is the JSON Schema
editors use to check spec files (``collectors/specs/spec.schema.json``).

One name per concept (docs/specs.md): an axis is named like the profile column it fills,
and inside a conv sweep the family prefix of conv's shape columns is dropped (``n``
fills ``conv_n``, ``r`` fills ``conv_r``). Other spellings are accepted as aliases:
the column names themselves (``conv_n``), ``batch`` for a convolution's ``n``, and the
short Triton names ``group_m``, ``num_warps``, ``num_stages`` for ``tile_group_m``,
``tile_num_warps``, ``tile_num_stages``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from perfscope.dtypes import Dtype
from perfscope.errors import InvalidInputError

CacheMode = Literal["warm", "cold"]
Layout = Literal["nchw", "channels_last"]
AttentionBackend = Literal["math", "flash", "efficient", "cudnn"]

PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]


def _listed(value: Any) -> Any:
    """A scalar is a one-value axis."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


# an axis: a non-empty list of values (a scalar reads as a one-value list)
Ints = Annotated[list[PositiveInt], BeforeValidator(_listed), Field(min_length=1)]
NonNegativeInts = Annotated[list[NonNegativeInt], BeforeValidator(_listed), Field(min_length=1)]
Dtypes = Annotated[list[Dtype], BeforeValidator(_listed), Field(min_length=1)]
CacheModes = Annotated[list[CacheMode], BeforeValidator(_listed), Field(min_length=1)]
Layouts = Annotated[list[Layout], BeforeValidator(_listed), Field(min_length=1)]
Backends = Annotated[list[AttentionBackend], BeforeValidator(_listed), Field(min_length=1)]
Flags = Annotated[list[StrictBool], BeforeValidator(_listed), Field(min_length=1)]
OptionalFlags = Annotated[list[StrictBool | None], BeforeValidator(_listed), Field(min_length=1)]
GemmShapes = Annotated[list[tuple[PositiveInt, PositiveInt, PositiveInt]], BeforeValidator(_listed),
                       Field(min_length=1)]


# names the case builders (collectors/*.py) use for axes whose spec name differs
_CASE_NAMES = {"tile_group_m": "group_m", "tile_num_warps": "num_warps", "tile_num_stages": "num_stages"}
TRITON_TILE_AXES = ("tile_m", "tile_n", "tile_k", "tile_group_m", "tile_num_warps", "tile_num_stages")


def _alias(name: str, *aliases: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(name, *aliases))


class _Axes(BaseModel):
    """Axes of one sweep: each a list of values; unknown names are refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    _order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        if isinstance(data, dict):  # the grid varies in the order the spec lists its axes
            model._order = tuple(cls._field_of(key) for key in data)
        return model

    @classmethod
    def _field_of(cls, key: str) -> str:
        for name, info in cls.model_fields.items():
            alias = info.validation_alias
            if key == name or (isinstance(alias, AliasChoices) and key in alias.choices):
                return name
        return key

    def as_lists(self) -> dict[str, list[Any]]:
        """The given axes as ``name -> list`` in the spec's order, with the names the case builders use."""
        given = [name for name in self._order if name in self.model_fields_set]
        given += [name for name in type(self).model_fields if name in self.model_fields_set and name not in given]
        out: dict[str, list[Any]] = {}
        for name in given:
            values = getattr(self, name)
            if values is None:
                continue
            out[_CASE_NAMES.get(name, name)] = [_plain(v) for v in values]
        return out


def _plain(value: Any) -> Any:
    """Shapes as the case builders read them: a tuple as a list, a model as a dict of what it sets."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, BaseModel):
        return {_CASE_NAMES.get(k, k): v for k, v in value.model_dump(exclude_unset=True).items()}
    return value


class _TritonTiles(_Axes):
    """Triton launch settings (a spec names them like their profile columns)."""

    tile_m: Ints | None = None
    tile_n: Ints | None = None
    tile_num_warps: Ints | None = _alias("tile_num_warps", "num_warps")
    tile_num_stages: Ints | None = _alias("tile_num_stages", "num_stages")


class _KLoopTiles(_TritonTiles):
    tile_k: Ints | None = None
    tile_group_m: Ints | None = _alias("tile_group_m", "group_m")


class GemmAxes(_KLoopTiles):
    """GEMM axes: square ``sizes``, explicit ``shapes`` [m, n, k] and the product m x n x k,
    times batch, dtype and cache; ``tile``/``threads`` for the numba tiled kernel; the
    Triton tile axes for ``implementation: triton``."""

    sizes: Ints | None = None
    shapes: GemmShapes | None = None
    m: Ints | None = None
    n: Ints | None = None
    k: Ints | None = None
    batch: Ints | None = None
    dtype: Dtypes | None = None
    cache: CacheModes | None = None
    tile: Ints | None = None
    threads: Ints | None = None


class ConvShape(BaseModel):
    """One fixed point of a conv grid (``shapes``): per-dimension stride, pad and dilation allowed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    n: PositiveInt | None = _alias("n", "conv_n", "batch")
    c: PositiveInt | None = _alias("c", "conv_c")
    h: PositiveInt | None = _alias("h", "conv_h")
    w: PositiveInt | None = _alias("w", "conv_w")
    k: PositiveInt | None = _alias("k", "conv_k")
    r: PositiveInt | None = _alias("r", "conv_r")
    s: PositiveInt | None = _alias("s", "conv_s")
    stride: PositiveInt | None = None
    pad: NonNegativeInt | None = None
    dil: PositiveInt | None = None
    stride_h: PositiveInt | None = None
    stride_w: PositiveInt | None = None
    pad_h: NonNegativeInt | None = None
    pad_w: NonNegativeInt | None = None
    dil_h: PositiveInt | None = None
    dil_w: PositiveInt | None = None
    groups: PositiveInt | None = None
    layout: Layout | None = None
    dtype: Dtype | None = None
    cache: CacheMode | None = None


class ConvAxes(_KLoopTiles):
    """conv2d axes: N, C, H, W, K filters of R x S, stride, pad, dil (both dimensions),
    groups, layout, dtype, cache, cuDNN's autotuner, and ``shapes`` of fixed points."""

    n: Ints | None = _alias("n", "conv_n", "batch")
    c: Ints | None = _alias("c", "conv_c")
    h: Ints | None = _alias("h", "conv_h")
    w: Ints | None = _alias("w", "conv_w")
    k: Ints | None = _alias("k", "conv_k")
    r: Ints | None = _alias("r", "conv_r")
    s: Ints | None = _alias("s", "conv_s")
    stride: Ints | None = None
    pad: NonNegativeInts | None = None
    dil: Ints | None = None
    groups: Ints | None = None
    layout: Layouts | None = None
    dtype: Dtypes | None = None
    cache: CacheModes | None = None
    cudnn_benchmark: OptionalFlags | None = None
    shapes: Annotated[list[ConvShape], BeforeValidator(_listed), Field(min_length=1)] | None = None


class AttentionShape(BaseModel):
    """One fixed point of an attention grid (``shapes``)."""

    model_config = ConfigDict(extra="forbid")
    batch: PositiveInt | None = None
    heads: PositiveInt | None = None
    kv_heads: PositiveInt | None = None
    seq_q: PositiveInt | None = None
    seq_k: PositiveInt | None = None
    seq: PositiveInt | None = None
    head_dim: PositiveInt | None = None
    causal: StrictBool | None = None
    backend: AttentionBackend | None = None
    dtype: Dtype | None = None
    cache: CacheMode | None = None


class AttentionAxes(_TritonTiles):
    """Attention axes: batch, heads, kv_heads, seq_q, seq_k (or ``seq`` for both), head_dim,
    causal, backend (torch's SDPA backends), dtype, cache, and ``shapes`` of fixed points."""

    batch: Ints | None = None
    heads: Ints | None = None
    kv_heads: Ints | None = None
    seq_q: Ints | None = None
    seq_k: Ints | None = None
    seq: Ints | None = None
    head_dim: Ints | None = None
    causal: Flags | None = None
    backend: Backends | None = None
    dtype: Dtypes | None = None
    cache: CacheModes | None = None
    shapes: Annotated[list[AttentionShape], BeforeValidator(_listed), Field(min_length=1)] | None = None


class _Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    filters: Annotated[tuple[str, ...], BeforeValidator(_listed)] = Field(
        default=(), description="Expressions over a configuration's fields and columns; all must hold.")

    @field_validator("filters", mode="before")
    @classmethod
    def _no_filters(cls, value: Any) -> Any:
        return () if value is None else value

    @model_validator(mode="after")
    def _axes_fit_the_implementation(self) -> _Sweep:
        implementation = self.implementation
        given = set(self.axes.model_fields_set)
        foreign = sorted(given & (set(_ONLY) - set(_ONLY_FOR.get(implementation, ()))))
        if foreign:
            raise ValueError(f"axes {', '.join(foreign)} do not apply to implementation {implementation}")
        return self

    def with_changes(self, axes: dict[str, Any] | None = None, filters: tuple[str, ...] = ()) -> _Sweep:
        """A validated copy with ``axes`` replacing or adding axes and ``filters`` added."""
        data = self.model_dump(exclude_unset=True)
        data["axes"] = {**self.axes.as_lists(), **(axes or {})}
        data["filters"] = self.filters + tuple(filters)
        return type(self).model_validate({**data, "kernel": self.kernel,
                                          "implementation": self.implementation})


# axes that only one implementation reads
_ONLY_FOR = {"numba": ("tile", "threads"), "triton": TRITON_TILE_AXES}
_ONLY = _ONLY_FOR["numba"] + _ONLY_FOR["triton"]


class GemmSweep(_Sweep):
    """A GEMM grid; ``implementation`` torch (default), triton or numba (the CPU tiled kernel)."""

    kernel: Literal["gemm"]
    implementation: Literal["torch", "triton", "numba"] = "torch"
    axes: GemmAxes = Field(default_factory=GemmAxes)


class ConvSweep(_Sweep):
    """A conv2d grid; ``implementation`` torch (default) or triton."""

    kernel: Literal["conv"]
    implementation: Literal["torch", "triton"] = "torch"
    axes: ConvAxes = Field(default_factory=ConvAxes)


class AttentionSweep(_Sweep):
    """An attention grid; ``implementation`` torch (default: SDPA) or triton."""

    kernel: Literal["attention"]
    implementation: Literal["torch", "triton"] = "torch"
    axes: AttentionAxes = Field(default_factory=AttentionAxes)


Sweep = Annotated[GemmSweep | ConvSweep | AttentionSweep, Field(discriminator="kernel")]
SWEEP_MODELS = {"gemm": GemmSweep, "conv": ConvSweep, "attention": AttentionSweep}


class Timing(BaseModel):
    """The timing policy of every configuration (``perfscope.timing.TimingPolicy``); unset fields keep its defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    warmup_s: Annotated[float, Field(ge=0)] | None = None
    min_time_s: Annotated[float, Field(ge=0)] | None = None
    budget_s: Annotated[float, Field(gt=0)] | None = None
    target_ci_rel: Annotated[float, Field(gt=0)] | None = None
    min_samples: PositiveInt | None = None
    max_samples: PositiveInt | None = None
    sample_s: Annotated[float, Field(gt=0)] | None = None
    max_foreign_share: Annotated[float, Field(ge=0, le=1)] | None = None


def format_validation_error(origin: str, error: ValidationError) -> str:
    """The first problem of ``error`` as one line: where it is in the spec and what is wrong."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"] if not str(part).endswith("Sweep"))
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        message = f"unknown kernel family {tag!r}: use {', '.join(SWEEP_MODELS)}"
    elif first["type"] == "literal_error":  # e.g. "unknown dtype 'fp64': Input should be 'fp32', ..."
        name = next((str(part) for part in reversed(first["loc"]) if isinstance(part, str)), "value")
        message = f"unknown {name} {first.get('input')!r}: {message}"
    extra = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{origin}: {where}: {message}{extra}" if where else f"{origin}: {message}{extra}"


def invalid(origin: str, error: ValidationError) -> InvalidInputError:
    """``error`` as the one-line ``InvalidInputError`` perfscope raises for a bad spec."""
    return InvalidInputError(format_validation_error(origin, error))
