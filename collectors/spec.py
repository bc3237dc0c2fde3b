"""Sweep specs: YAML files (or shipped presets) that say what to measure (docs/specs.md).

```yaml
name: quick
timing: {warmup_s: 0.05, min_time_s: 0.25, budget_s: 0.5, target_ci_rel: 0.02}
time_budget_s: 600          # optional: stop starting configurations after this
sweeps:
  - kernel: gemm            # gemm, conv or attention
    implementation: torch   # torch (default), triton, numba (CPU tiled GEMM)
    axes: {sizes: [64, 128], batch: [1, 4], dtype: [fp32, bf16]}
    filters: ["m * n * k <= 2**27"]
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from perfscope.collectors.families import cases_for
from perfscope.collectors.filters import Filter
from perfscope.collectors.protocol import Case, case_config_id
from perfscope.collectors.spec_models import SWEEP_MODELS, Sweep, Timing, invalid
from perfscope.collectors.specs import load_preset
from perfscope.collectors.sweep import unique_cases
from perfscope.errors import InvalidInputError
from perfscope.timing import TimingPolicy

log = logging.getLogger(__name__)

_SPEC_KEYS = {"name", "description", "timing", "time_budget_s", "device", "sweeps", "$schema"}
_SWEEP_KEYS = {"kernel", "implementation", "axes", "filters"}

__all__ = ["Sweep", "SweepSpec", "expand", "load_spec", "parse_spec", "plan", "shard", "spec_json_schema"]


class SweepSpec(BaseModel):
    """A whole sweep: grids (one typed model per kernel family), timing policy and an optional time budget."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(default="spec", description="What the spec is called (shown by plan and collect).")
    description: str = ""
    timing: Timing = Field(default_factory=Timing, description="Timing policy settings for every configuration.")
    time_budget_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Start no configuration after this many seconds.")
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")] | None = Field(
        default=None, description="Where to measure (auto, cpu, cuda or cuda:N); a --device flag overrides it.")
    sweeps: Annotated[tuple[Sweep, ...], Field(min_length=1)]
    schema_url: str | None = Field(default=None, alias="$schema", description="The JSON Schema of this file.")

    @field_validator("timing", mode="before")
    @classmethod
    def _no_timing(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def policy(self) -> TimingPolicy:
        """The timing policy built from the spec's ``timing`` settings."""
        try:
            return TimingPolicy(**self.timing.model_dump(exclude_none=True))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"spec {self.name!r}: bad timing settings ({exc})") from None


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of spec files (what ``collectors/specs/spec.schema.json`` holds)."""
    schema = SweepSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "perfscope sweep spec"
    return schema


def load_spec(name_or_path: str | Path) -> SweepSpec:
    """A spec from a YAML file, or a shipped preset by name (quick, default, full, gpperf)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise InvalidInputError(f"cannot read spec {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"spec {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        return parse_spec(data, origin=str(path))
    return parse_spec(load_preset(str(name_or_path)), origin=f"preset {name_or_path}")


def parse_spec(data: Any, origin: str = "spec") -> SweepSpec:
    """Validate a parsed spec once; errors name the origin and the offending key."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{origin}: a spec is a mapping with 'sweeps'")
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise InvalidInputError(f"{origin}: unknown keys {sorted(unknown)}; use {sorted(_SPEC_KEYS - {'$schema'})}")
    raw_sweeps = data.get("sweeps") or []
    if not raw_sweeps:
        raise InvalidInputError(f"{origin}: no sweeps")
    if not isinstance(raw_sweeps, list):
        raise InvalidInputError(f"{origin}: sweeps must be a list")
    for i, raw in enumerate(raw_sweeps):
        if not isinstance(raw, dict) or "kernel" not in raw:
            raise InvalidInputError(f"{origin}: sweep {i} needs a 'kernel'")
        bad = set(raw) - _SWEEP_KEYS
        if bad:
            raise InvalidInputError(f"{origin}: sweep {i} has unknown keys {sorted(bad)}; use {sorted(_SWEEP_KEYS)}")
        if raw["kernel"] not in SWEEP_MODELS:
            raise InvalidInputError(f"{origin}: sweep {i}: unknown kernel family {raw['kernel']!r}: "
                                    f"use {', '.join(SWEEP_MODELS)}")
        implementation = raw.get("implementation", "torch")
        allowed = SWEEP_MODELS[raw["kernel"]].model_fields["implementation"].annotation.__args__  # type: ignore[union-attr]
        if implementation not in allowed:
            raise InvalidInputError(f"{origin}: sweep {i}: unknown implementation {implementation!r} for "
                                    f"{raw['kernel']}: use {', '.join(allowed)}")
    timing = data.get("timing")
    if timing is not None and not isinstance(timing, dict):
        raise InvalidInputError(f"{origin}: bad timing settings: a mapping of setting -> number")
    if isinstance(timing, dict) and set(timing) - set(Timing.model_fields):
        bad = sorted(set(timing) - set(Timing.model_fields))
        raise InvalidInputError(f"{origin}: bad timing settings {bad}: use {', '.join(Timing.model_fields)}")
    budget = data.get("time_budget_s")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        raise InvalidInputError(f"{origin}: time_budget_s must be a positive number")
    try:
        spec = SweepSpec.model_validate({"name": str(data.get("name", origin)), **{
            k: v for k, v in data.items() if k != "name"}})
    except ValidationError as exc:
        raise invalid(origin, exc) from None
    _ = spec.policy  # the timing policy's own checks, now
    log.debug("spec %s: %d sweep(s)", spec.name, len(spec.sweeps))
    return spec


def flag_spec(family: str, implementation: str | None) -> SweepSpec:
    """The one-sweep spec of ``perfscope collect FAMILY`` without a spec file (axes come from overrides)."""
    sweep = SWEEP_MODELS[family].model_validate({"kernel": family, "implementation": implementation or "torch"})
    return SweepSpec(name=f"{family} (flags)", sweeps=(sweep,))


def with_overrides(spec: SweepSpec, sweeps: list[Any], axes: dict[str, list[Any]], filters: tuple[str, ...],
                   timing: dict[str, float | None], time_budget_s: float | None) -> SweepSpec:
    """``spec`` restricted to ``sweeps``, each with ``axes`` overriding its own and ``filters`` added,
    and ``timing``/``time_budget_s`` overriding the spec's where given; validated again."""
    merged = []
    for sweep in sweeps:
        own = sweep.axes.as_lists()
        if sweep.kernel == "gemm" and {"sizes", "shapes", "m", "n", "k"} & set(axes):
            for key in ("sizes", "shapes", "m", "n", "k"):  # explicit shapes replace the spec's
                own.pop(key, None)
        try:
            merged.append(type(sweep).model_validate({
                "kernel": sweep.kernel, "implementation": sweep.implementation,
                "axes": {**own, **axes}, "filters": sweep.filters + tuple(filters)}))
        except ValidationError as exc:
            raise invalid(f"spec {spec.name!r}", exc) from None
    settings = {**spec.timing.model_dump(exclude_none=True), **{k: v for k, v in timing.items() if v is not None}}
    try:
        return spec.model_validate({
            **spec.model_dump(by_alias=True, exclude={"sweeps", "timing", "time_budget_s"}),
            "sweeps": merged, "timing": settings,
            "time_budget_s": time_budget_s if time_budget_s is not None else spec.time_budget_s})
    except ValidationError as exc:
        raise invalid(f"spec {spec.name!r}", exc) from None


def expand(spec: SweepSpec, *, seed: int = 0) -> list[Case]:
    """Every case of the spec, filtered, without repeats, in spec order."""
    cases: list[Case] = []
    for sweep in spec.sweeps:
        filters = [Filter(text) for text in sweep.filters]
        for case in cases_for(sweep.kernel, sweep.implementation, sweep.axes.as_lists(), seed=seed):
            if not filters:
                cases.append(case)
                continue
            names = filter_names(case)
            if all(f(names) for f in filters):
                cases.append(case)
    unique = unique_cases(cases)
    log.info("spec %s: %d configuration(s) from %d sweep(s)", spec.name, len(unique), len(spec.sweeps))
    return unique


def filter_names(case: Case) -> dict[str, Any]:
    """Names a filter may use: the case's own fields (r, s, tile, ...) and its
    configuration columns (conv_r, tile_m, ...)."""
    # fields read shallowly: dataclasses.asdict deep-copies every value (80% of expanding
    # the full preset's 3 million candidate cases)
    names = {f.name: getattr(case, f.name) for f in dataclasses.fields(case)} if dataclasses.is_dataclass(case) else {}
    names.update(case.config_columns())
    return names


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise InvalidInputError(f"bad shard {text!r}: use I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise InvalidInputError(f"bad shard {text!r}: need 0 <= I < N")
    return index, count


def shard(cases: list[Case], index: int, count: int) -> list[Case]:
    """The cases of shard ``index`` of ``count``: a deterministic partition by config id,
    the same on every machine, so job-array tasks never overlap and together cover all."""
    return [c for c in cases if _shard_of(case_config_id(c), count) == index]


def _shard_of(config_id: str, count: int) -> int:
    return int(hashlib.sha256(config_id.encode()).hexdigest()[:8], 16) % count


@dataclass(frozen=True)
class Plan:
    """What a sweep would do, before it runs. Durations are estimates (ranges)."""

    total: int
    by_group: dict[str, int]
    already_measured: int
    min_s: float
    max_s: float


def plan(spec: SweepSpec, cases: list[Case], already_measured: set[str] = frozenset(),
         energy_window_s: float = 0.0) -> Plan:
    """Count the grid and bound its duration from the timing policy: each configuration
    costs at least warm-up + min_time_s and at most warm-up + budget_s (plus energy
    windows); very slow kernels can exceed this, since one call always runs."""
    by_group: dict[str, int] = {}
    todo = 0
    for case in cases:
        columns = case.config_columns()
        key = f"{columns['kernel']} {columns['implementation']}"
        by_group[key] = by_group.get(key, 0) + 1
        todo += case_config_id(case) not in already_measured
    policy = spec.policy
    per_min = policy.warmup_s + policy.min_time_s + energy_window_s
    per_max = policy.warmup_s + policy.budget_s + energy_window_s
    max_s = todo * per_max
    if spec.time_budget_s is not None:
        max_s = min(max_s, spec.time_budget_s + per_max)
    return Plan(total=len(cases), by_group=by_group, already_measured=len(cases) - todo,
                min_s=min(todo * per_min, max_s), max_s=max_s if math.isfinite(max_s) else math.inf)
