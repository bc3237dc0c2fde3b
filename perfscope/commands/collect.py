"""``perfscope collect`` and ``perfscope plan``: what to measure, from flags or a spec."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from perfscope import strict_json
from perfscope.cli_app import app
from perfscope.cli_render import Renderer
from perfscope.errors import InvalidInputError
from perfscope.meters import METER_CHOICES

_SEL = "What to measure"
_HOW = "How to measure"
_RUN = "Where and how to run"

Family = Annotated[str | None, typer.Argument(help="gemm, conv or attention (optional with --spec).")]
Spec = Annotated[str | None, typer.Option(help="A sweep spec: YAML file or preset (quick, default, full, gpperf).",
                                          rich_help_panel=_SEL)]
Implementation = Annotated[str | None, typer.Option(help="torch, triton or numba (CPU tiled GEMM).",
                                                    rich_help_panel=_SEL)]
Axis = Annotated[list[str] | None, typer.Option(help="Any axis: KEY=V1,V2 (e.g. c=64,128 or tile=8,16).",
                                                rich_help_panel=_SEL)]
Size = Annotated[list[str] | None, typer.Option(help="GEMM square sizes m=n=k, e.g. 256,512.", rich_help_panel=_SEL)]
Shape = Annotated[list[str] | None, typer.Option(help="GEMM shapes MxNxK, e.g. 1024x512x64.", rich_help_panel=_SEL)]
Batch = Annotated[list[str] | None, typer.Option(help="Batch sizes, e.g. 1,8 (conv: N).", rich_help_panel=_SEL)]
Dtype = Annotated[list[str] | None, typer.Option(help="fp32, tf32, fp16, bf16, fp8_e4m3, fp8_e5m2.",
                                                 rich_help_panel=_SEL)]
Cache = Annotated[list[str] | None, typer.Option(help="warm and/or cold.", rich_help_panel=_SEL)]
Filters = Annotated[list[str] | None, typer.Option("--filter", help="Keep configurations where EXPR holds, "
                                                   "e.g. 'm * n * k <= 2**27'.", rich_help_panel=_SEL)]
Shard = Annotated[str | None, typer.Option("--shard", help="Measure only shard I of N (I/N), for job arrays.",
                                           rich_help_panel=_RUN)]
Out = Annotated[Path, typer.Option("--out", "-o", help="Dataset directory (created or resumed).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
MaxMemory = Annotated[str | None, typer.Option(
    "--max-memory", help="Largest share of free memory a configuration may need, e.g. 50% or 0.5 (default 50%); "
    "above it the row is too_large and nothing is allocated.", rich_help_panel=_RUN)]


@dataclass(frozen=True)
class Selection:
    """What to measure, as ``collect`` and ``plan`` take it: a family and/or a spec, and the flags
    that override the spec's axes (each field is the command-line option of its name)."""

    family: Family = None
    spec: Spec = None
    implementation: Implementation = None
    axis: Axis = None
    size: Size = None
    shape: Shape = None
    batch: Batch = None
    dtype: Dtype = None
    cache: Cache = None
    filters: Filters = None


def _with_selection(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with its ``selection: Selection`` parameter replaced, on the command line,
    by the ``Selection`` fields as parameters (Typer reads the signature), in their order."""
    signature = inspect.signature(command, eval_str=True)
    hints = inspect.get_annotations(Selection, eval_str=True)  # field name -> its Annotated option type
    shared = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                                annotation=hints[f.name]) for f in fields(Selection)]
    parameters = [q for p in signature.parameters.values() for q in (shared if p.name == "selection" else [p])]

    @functools.wraps(command)
    def with_selection(**options: Any) -> None:
        selection = Selection(**{f.name: options.pop(f.name) for f in fields(Selection)})
        command(selection=selection, **options)

    with_selection.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_selection.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_selection


@app.command("collect")
@_with_selection
def collect(
    selection: Selection,
    out: Out = Path("profiles"),
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N (default: the spec's, else auto).",
                                               rich_help_panel=_RUN)] = None,
    energy: Annotated[str, typer.Option(help="auto, nvml-counter, nvml-sampled, rapl, estimate-tdp, none.",
                                        rich_help_panel=_HOW)] = "auto",
    tdp_w: Annotated[float | None, typer.Option(help="TDP in W for an estimate where no meter exists.",
                                                rich_help_panel=_HOW)] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's).",
                                                rich_help_panel=_RUN)] = None,
    warmup_s: Annotated[float | None,
                        typer.Option(help="Warm-up time per configuration.", rich_help_panel=_HOW)] = None,
    min_time_s: Annotated[float | None, typer.Option(help="Least timed time per configuration.",
                                                     rich_help_panel=_HOW)] = None,
    budget_s: Annotated[float | None, typer.Option(help="Most timed time per configuration.",
                                                   rich_help_panel=_HOW)] = None,
    target_ci: Annotated[float | None, typer.Option(help="Target half-width of the median's 95% CI, relative.",
                                                    rich_help_panel=_HOW)] = None,
    energy_window_s: Annotated[float | None, typer.Option(help="Length of each energy window.",
                                                          rich_help_panel=_HOW)] = None,
    time_budget_s: Annotated[float | None, typer.Option(help="Start no configuration after this many seconds.",
                                                        rich_help_panel=_RUN)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the input generator.", rich_help_panel=_HOW)] = 0,
    resume: Annotated[bool, typer.Option(help="Skip configurations already in the dataset.",
                                         rich_help_panel=_RUN)] = True,
    shard_spec: Shard = None,
    executor: Annotated[str, typer.Option(help="local, or ray: one worker per GPU across a Ray cluster.",
                                          rich_help_panel=_RUN)] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local one).",
                                                rich_help_panel=_RUN)] = None,
    workers: Annotated[int | None, typer.Option(help="Ray workers (default: one per GPU; 1 on a CPU).",
                                                rich_help_panel=_RUN)] = None,
    max_memory: MaxMemory = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")] = False,
    as_json: AsJson = False,
) -> None:
    """Measure kernels into a dataset: `perfscope collect gemm --size 512` or `perfscope collect --spec quick`."""
    from perfscope.workflows import collect as collecting  # when run (see perfscope/commands/__init__.py)

    # validate everything cheap before anything runs or prints
    if energy not in METER_CHOICES:
        raise InvalidInputError(f"unknown energy meter {energy!r}: choose one of {', '.join(METER_CHOICES)}")
    for name, value in (("--tdp-w", tdp_w), ("--energy-window-s", energy_window_s),
                        ("--time-budget-s", time_budget_s), ("--threads", threads), ("--workers", workers)):
        if value is not None and value <= 0:
            raise InvalidInputError(f"{name} must be positive, got {value}")
    if executor not in ("local", "ray"):
        raise InvalidInputError(f"unknown executor {executor!r}: use local or ray")
    max_memory_share = collecting.parse_max_memory(max_memory)
    timing = {"warmup_s": warmup_s, "min_time_s": min_time_s, "budget_s": budget_s, "target_ci_rel": target_ci}
    sweep_spec, cases = collecting.sweep_cases(_request(selection, timing, time_budget_s, shard_spec, seed))
    settings = collecting.CollectSettings(
        device=device or sweep_spec.device or "auto", energy=energy, tdp_w=tdp_w, threads=threads,
        energy_window_s=energy_window_s, resume=resume, executor=executor, address=address, workers=workers,
        max_memory_share=max_memory_share)
    render = Renderer(quiet=quiet, as_json=as_json)
    summary = collecting.collect(cases, sweep_spec, out, settings, notify=render.note, progress=render.progress)
    render.sweep_summary(summary.report, energy_method=summary.energy_method, energy_note=summary.energy_note,
                         energy_is_estimate=summary.energy_is_estimate)


@app.command("plan")
@_with_selection
def plan_command(
    selection: Selection,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Count what this dataset already holds.")] = None,
    device: Annotated[str, typer.Option(help="The device whose rows count as measured.")] = "auto",
    shard_spec: Shard = None,
    max_memory: MaxMemory = None,
    as_json: AsJson = False,
) -> None:
    """Print the expanded grid's size and an estimated duration; runs nothing."""
    from perfscope.workflows import collect as collecting  # when run (see perfscope/commands/__init__.py)

    max_memory_share = collecting.parse_max_memory(max_memory)
    sweep_spec, cases = collecting.sweep_cases(_request(selection, {}, None, shard_spec, 0))
    p = collecting.plan_sweep(sweep_spec, cases, dataset=out, device=device, max_memory_share=max_memory_share)
    if as_json:
        print(strict_json.dumps(p.to_dict()))
        return
    for group, count in sorted(p.by_group.items()):
        print(f"{group:28s} {count:8d}")
    print(f"{'total':28s} {p.configurations:8d}  ({p.already_measured} already measured)")
    if p.too_large:
        print(f"{p.too_large} configuration(s) need more than {max_memory_share:.0%} of the free memory of "
              f"{p.device_key}: they will be recorded as too_large, not measured")
    print(f"estimated duration: {_duration(p.estimated_min_s)} to {_duration(p.estimated_max_s)} "
          "(from the timing policy; an estimate, not a measurement)")


def _request(selection: Selection, timing: dict[str, float | None], time_budget_s: float | None,
             shard_spec: str | None, seed: int) -> Any:
    """The workflow's ``SweepRequest`` for these flags (axis flags parsed here)."""
    from perfscope.workflows.collect import SweepRequest, check_family  # when run (see perfscope/commands/__init__.py)

    check_family(selection.family)  # an unknown family is named before any bad axis value
    return SweepRequest(family=selection.family, spec=selection.spec, implementation=selection.implementation,
                        axes=_axes_from_flags(selection), filters=tuple(selection.filters or ()), timing=timing,
                        time_budget_s=time_budget_s, shard=shard_spec, seed=seed)


def _axes_from_flags(selection: Selection) -> dict[str, list[Any]]:
    axes: dict[str, list[Any]] = {}
    for item in selection.axis or []:
        key, sep, values = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"bad axis {item!r}: use KEY=V1,V2")
        axes[key.strip()] = _split([values], _scalar, f"value of {key}")
    if selection.size:
        axes["sizes"] = _split(selection.size, _positive_int, "size")
    if selection.shape:
        axes["shapes"] = _split(selection.shape, _shape, "shape (use MxNxK)")
    if selection.batch:
        axes["n" if selection.family == "conv" else "batch"] = _split(selection.batch, _positive_int, "batch size")
    if selection.dtype:
        axes["dtype"] = _split(selection.dtype, str, "dtype")
    if selection.cache:
        axes["cache"] = _split(selection.cache, str, "cache mode")
    return axes


def _split(values: list[str] | None, convert: Any, what: str) -> list[Any]:
    """Flatten repeated and comma-separated option values, converting each."""
    out = []
    for value in values or []:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(convert(part))
            except ValueError:
                raise InvalidInputError(f"bad {what} {part!r}") from None
    return out


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _shape(text: str) -> list[int]:
    parts = text.lower().split("x")
    if len(parts) != 3:
        raise ValueError(text)
    return [_positive_int(p) for p in parts]


def _scalar(text: str) -> Any:
    """An axis value as YAML reads it: 64 -> int, 0.5 -> float, true -> bool, nchw -> str."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(text) from None
    if not isinstance(value, (int, float, str, bool)):
        raise ValueError(text)
    return value


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unbounded"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
