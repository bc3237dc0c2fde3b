"""``perfscope collect`` and ``perfscope plan``: what to measure, from flags or a spec."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from perfscope.cli_app import app
from perfscope.errors import Interrupted, InvalidInputError

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
    from perfscope.collectors.memory_guard import parse_max_memory
    from perfscope.meters import METER_CHOICES

    # validate everything cheap before anything runs or prints
    if energy not in METER_CHOICES:
        raise InvalidInputError(f"unknown energy meter {energy!r}: choose one of {', '.join(METER_CHOICES)}")
    for name, value in (("--tdp-w", tdp_w), ("--energy-window-s", energy_window_s),
                        ("--time-budget-s", time_budget_s), ("--threads", threads), ("--workers", workers)):
        if value is not None and value <= 0:
            raise InvalidInputError(f"{name} must be positive, got {value}")
    if executor not in ("local", "ray"):
        raise InvalidInputError(f"unknown executor {executor!r}: use local or ray")
    max_memory_share = parse_max_memory(max_memory)
    sweep_spec = build_spec(selection, {"warmup_s": warmup_s, "min_time_s": min_time_s, "budget_s": budget_s,
                                        "target_ci_rel": target_ci}, time_budget_s)
    cases = _cases(sweep_spec, shard_spec, seed=seed)
    _run(cases, sweep_spec, out, device or sweep_spec.device or "auto", energy, tdp_w, threads, energy_window_s,
         resume, executor, address, workers, quiet, as_json, max_memory_share)


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
    from perfscope import strict_json
    from perfscope.collectors.memory_guard import parse_max_memory, too_large_reason
    from perfscope.collectors.spec import plan
    from perfscope.devices import select_device

    max_memory_share = parse_max_memory(max_memory)
    sweep_spec = build_spec(selection, {}, None)
    cases = _cases(sweep_spec, shard_spec)
    measured: set[str] = set()
    dev = select_device(device)
    if out is not None and out.exists():
        from perfscope.store import ProfileStore

        measured = {cid for _, cid in ProfileStore(out).measured_keys(dev.key)}
    p = plan(sweep_spec, cases, measured)
    too_large = sum(too_large_reason(c.for_device(dev.kind), dev, max_memory_share) is not None for c in cases)
    if as_json:
        print(strict_json.dumps({"spec": sweep_spec.name, "configurations": p.total, "by_group": p.by_group,
                          "already_measured": p.already_measured, "too_large": too_large, "device": dev.key,
                          "estimated_min_s": round(p.min_s, 1), "estimated_max_s": round(p.max_s, 1)},
                         ))
        return
    for group, count in sorted(p.by_group.items()):
        print(f"{group:28s} {count:8d}")
    print(f"{'total':28s} {p.total:8d}  ({p.already_measured} already measured)")
    if too_large:
        print(f"{too_large} configuration(s) need more than {max_memory_share:.0%} of the free memory of "
              f"{dev.key}: they will be recorded as too_large, not measured")
    print(f"estimated duration: {_duration(p.min_s)} to {_duration(p.max_s)} "
          "(from the timing policy; an estimate, not a measurement)")


def _cases(sweep_spec: Any, shard_spec: str | None, *, seed: int = 0) -> list[Any]:
    """The spec's cases, only shard ``shard_spec`` ("I/N") of them when given."""
    from perfscope.collectors.spec import expand, parse_shard, shard

    cases = expand(sweep_spec, seed=seed)
    return cases if shard_spec is None else shard(cases, *parse_shard(shard_spec))


def build_spec(selection: Selection, timing: dict[str, float | None], time_budget_s: float | None) -> Any:
    """The sweep spec that flags and/or a spec file describe (flags override the file)."""
    from perfscope.collectors.families import FAMILIES
    from perfscope.collectors.spec import flag_spec, load_spec, with_overrides

    family, spec, implementation = selection.family, selection.spec, selection.implementation
    if family is not None and family not in FAMILIES:
        raise InvalidInputError(f"unknown kernel family {family!r}: use {', '.join(FAMILIES)}")
    overrides = _axes_from_flags(selection)
    if spec is not None:
        base = load_spec(spec)
        sweeps = [s for s in base.sweeps if (family is None or s.kernel == family)
                  and (implementation is None or s.implementation == implementation)]
        if not sweeps:
            message = f"spec {base.name!r} has no {family or ''} {implementation or ''} sweep"
            raise InvalidInputError(message.replace("  ", " "))
    elif family is None:
        raise InvalidInputError("say what to measure: a kernel family (gemm, conv, attention) or --spec")
    else:
        base = flag_spec(family, implementation)
        sweeps = list(base.sweeps)
    result = with_overrides(base, sweeps, overrides, tuple(selection.filters or ()), timing, time_budget_s)
    _ = result.policy  # validate timing now
    return result


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


def _run(cases: list[Any], sweep_spec: Any, out: Path, device_spec: str, energy: str, tdp_w: float | None,
         threads: int | None, energy_window_s: float | None, resume: bool, executor: str,
         address: str | None, workers: int | None, quiet: bool, as_json: bool, max_memory_share: float) -> None:
    from perfscope.cli_render import Renderer
    from perfscope.collectors.executors import WorkerSettings, run_ray
    from perfscope.collectors.protocol import RunContext
    from perfscope.collectors.sweep import run_sweep
    from perfscope.devices import select_device
    from perfscope.meters import select_meter
    from perfscope.store import ProfileStore, new_run_id

    render = Renderer(quiet=quiet, as_json=as_json)
    store = ProfileStore(out, create=True)
    run_id = new_run_id()
    if executor == "ray":
        settings = WorkerSettings(dataset=str(out.resolve()), device=device_spec, energy=energy, tdp_w=tdp_w,
                                  timing=sweep_spec.timing.model_dump(exclude_none=True),
                                  energy_window_s=energy_window_s, resume=resume,
                                  time_budget_s=sweep_spec.time_budget_s, threads=threads,
                                  max_memory_share=max_memory_share)
        report = run_ray(cases, settings, run_id, address=address, workers=workers)
        render.sweep_summary(report, energy_method=energy)
        return
    dev = select_device(device_spec, notify=render.note)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    meter = select_meter(dev, energy, tdp_w=tdp_w)
    ctx = RunContext(run_id=run_id, device=dev, meter=meter, policy=sweep_spec.policy,
                     energy_window_s=energy_window_s, max_memory_share=max_memory_share)
    saved: list[str] = []  # statuses of the rows appended so far, for the Ctrl-C message

    def on_row(row: Any) -> None:
        saved.append(row.status)
        progress.advance(row)

    try:
        with render.progress() as progress:
            report = run_sweep(cases, store, ctx, resume=resume, time_budget_s=sweep_spec.time_budget_s,
                               on_start=progress.start, on_row=on_row)
    except KeyboardInterrupt:  # Typer would exit 130 silently; say what was kept
        raise Interrupted(f"interrupted: {len(saved)} rows saved in {out} (run the same command again to "
                          "resume)") from None
    finally:
        meter.close()
    render.sweep_summary(report, energy_method=meter.method, energy_note=getattr(meter, "reason", None),
                         energy_is_estimate=meter.is_estimate)


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
    import yaml

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
