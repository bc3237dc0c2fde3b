"""The ``perfscope`` command: thin Typer commands over the library.

User errors (``PerfscopeError``) become one line on stderr and a non-zero exit;
heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from perfscope.errors import PerfscopeError, UserInputError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Measure, model and explain the performance of GPU kernels.")
collect_app = typer.Typer(no_args_is_help=True, help="Measure kernels into a profile dataset.")
app.add_typer(collect_app, name="collect")


def main() -> None:
    """Console entry point: run the app, mapping perfscope errors to exit codes.

    Click (inside Typer) handles usage errors itself (exit status 2); perfscope's own
    errors propagate out of it and become one line here.
    """
    try:
        app()
    except PerfscopeError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted: rows measured so far are saved", 130)


def _fail(message: str, code: int) -> None:
    print(f"perfscope: error: {message}", file=sys.stderr)
    sys.exit(code)


def _split(values: list[str] | None, convert: Callable[[str], Any], what: str) -> list[Any]:
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
                raise UserInputError(f"bad {what} {part!r}") from None
    return out


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3:
        raise ValueError(text)
    m, n, k = (_positive_int(p) for p in parts)
    return m, n, k


@collect_app.command("gemm")
def collect_gemm(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory (created or resumed).")] = Path("profiles"),
    preset: Annotated[str | None, typer.Option(help="A shipped sweep preset: quick, default.")] = None,
    size: Annotated[list[str] | None, typer.Option(help="Square sizes m=n=k, e.g. 256,512.")] = None,
    shape: Annotated[list[str] | None, typer.Option(help="Shapes MxNxK, e.g. 1024x512x64.")] = None,
    batch: Annotated[list[str] | None, typer.Option(help="Batch sizes, e.g. 1,8.")] = None,
    dtype: Annotated[list[str] | None, typer.Option(help="fp32, tf32, fp16, bf16 (comma-separated).")] = None,
    cache: Annotated[list[str] | None, typer.Option(help="warm and/or cold.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    energy: Annotated[str, typer.Option(help="auto, nvml-counter, nvml-sampled, rapl, estimate-tdp, none.")] = "auto",
    tdp_w: Annotated[float | None, typer.Option(help="TDP in W for an estimate where no meter exists.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's).")] = None,
    warmup_s: Annotated[float | None, typer.Option(help="Warm-up time per configuration.")] = None,
    min_time_s: Annotated[float | None, typer.Option(help="Least timed time per configuration.")] = None,
    budget_s: Annotated[float | None, typer.Option(help="Most timed time per configuration.")] = None,
    target_ci: Annotated[float | None, typer.Option(help="Target half-width of the median's 95% CI, relative.")] = None,
    energy_window_s: Annotated[float | None, typer.Option(help="Length of each energy window.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the input generator.")] = 0,
    resume: Annotated[bool, typer.Option(help="Skip configurations already in the dataset.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Sweep GEMM (torch.matmul / torch.bmm) over shapes, batch sizes and dtypes."""
    spec: dict[str, Any] = {}
    if preset is not None:
        from perfscope.collectors.specs import load_preset

        spec = load_preset(preset)
    grids = spec.get("gemm", {})
    grids = [dict(g) for g in (grids if isinstance(grids, list) else [grids])]
    overrides = {
        "sizes": _split(size, _positive_int, "size"),
        "shapes": _split(shape, _shape, "shape (use MxNxK)"),
        "batch": _split(batch, _positive_int, "batch size"),
        "dtypes": _split(dtype, str, "dtype"),
        "cache": _split(cache, str, "cache mode"),
    }
    for grid in grids:
        if overrides["sizes"] or overrides["shapes"]:  # explicit shapes replace the preset's
            grid["sizes"], grid["shapes"] = overrides["sizes"], overrides["shapes"]
        grid.update({k: v for k, v in overrides.items() if v and k not in ("sizes", "shapes")})
    timing = dict(spec.get("timing", {}))
    timing.update({k: v for k, v in {"warmup_s": warmup_s, "min_time_s": min_time_s,
                                     "budget_s": budget_s, "target_ci_rel": target_ci}.items() if v is not None})
    from perfscope.collectors.gemm import gemm_cases

    try:
        cases = [case for grid in grids for case in gemm_cases(seed=seed, **grid)]
    except TypeError as exc:  # an unknown key in a preset or spec
        raise UserInputError(f"bad gemm grid: {exc}") from None
    _run_collect(cases, out, device, energy, tdp_w, threads, timing, energy_window_s, resume, quiet, as_json)


def _run_collect(cases: list[Any], out: Path, device_spec: str, energy: str, tdp_w: float | None,
                 threads: int | None, timing: dict[str, Any], energy_window_s: float | None,
                 resume: bool, quiet: bool, as_json: bool) -> None:
    from perfscope.cli_render import Renderer
    from perfscope.collectors.protocol import RunContext
    from perfscope.collectors.sweep import run_sweep
    from perfscope.devices import select_device
    from perfscope.meters import select_meter
    from perfscope.store import ProfileStore, new_run_id
    from perfscope.timing import TimingPolicy

    from perfscope.meters import METER_CHOICES

    if energy not in METER_CHOICES:  # before anything runs or prints
        raise UserInputError(f"unknown energy meter {energy!r}: choose one of {', '.join(METER_CHOICES)}")
    if tdp_w is not None and tdp_w <= 0:
        raise UserInputError(f"--tdp-w must be positive, got {tdp_w}")
    if energy_window_s is not None and energy_window_s <= 0:
        raise UserInputError(f"--energy-window-s must be positive, got {energy_window_s}")
    try:
        policy = TimingPolicy(**timing)
    except TypeError as exc:
        raise UserInputError(f"bad timing settings: {exc}") from None
    render = Renderer(quiet=quiet, as_json=as_json)
    store = ProfileStore(out, create=True)
    dev = select_device(device_spec, notify=render.note)
    if threads is not None:
        if threads < 1:
            raise UserInputError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    meter = select_meter(dev, energy, tdp_w=tdp_w)
    ctx = RunContext(run_id=new_run_id(), device=dev, meter=meter, policy=policy,
                     energy_window_s=energy_window_s)
    try:
        with render.progress() as progress:
            report = run_sweep(cases, store, ctx, resume=resume, on_start=progress.start,
                               on_row=progress.advance)
    finally:
        meter.close()
    render.sweep_summary(report, meter)


@app.command("ls")
def ls(
    dataset: Annotated[Path, typer.Argument(help="A perfscope dataset directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Summarise a dataset: rows by device, kernel and dtype."""
    from perfscope.cli_render import Renderer
    from perfscope.store import ProfileStore
    from perfscope.summary import summarise

    store = ProfileStore(dataset)
    result = store.read(["device_key", "kernel", "dtype", "status", "time_median_ms",
                         "achieved_flops_per_s", "energy_method", "noisy", "run_id", "config_id"])
    Renderer(quiet=False, as_json=as_json).dataset_summary(dataset, summarise(result.table), result.problems)
