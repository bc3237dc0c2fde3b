"""``perfscope estimate``: latency, energy, power, carbon, bound and best configuration of
a configuration that was never measured. Light: no torch, triton or dash (``--data``
reads a dataset, which takes pandas and pyarrow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from perfscope import strict_json
from perfscope.cli_app import app
from perfscope.commands.train import read_rows
from perfscope.errors import InvalidInputError

BUILT_IN_FAMILIES = ("gemm", "conv", "attention")  # the families with sizes (others: imported, by parameters)

Int = Annotated[int | None, typer.Option()]


@app.command("estimate")
def estimate_command(
    kernel: Annotated[str, typer.Argument(help="gemm, conv or attention; with --params or --best-config any family "
                                                "the model was trained on (e.g. an imported dedispersion_kernel).")],
    device: Annotated[str, typer.Option(help="Device id, name or dataset key: h100-sxm, 'NVIDIA L4', cpu-amd-epyc.")],
    dtype: Annotated[str, typer.Option(help="fp32, tf32, fp16, bf16, fp8_e4m3, fp8_e5m2.")] = "fp32",
    fp32_math: Annotated[str | None, typer.Option(
        help="How fp32 is multiplied: ieee (FP32 peak, the default) or tf32 (the device's TF32 tensor peak, "
             "as with torch's allow_tf32).")] = None,
    m: Int = None, n: Int = None, k: Int = None, batch: Int = None,
    c: Int = None, h: Int = None, w: Int = None, r: Int = None, s: Int = None,
    stride: Int = None, pad: Int = None, dil: Int = None, groups: Int = None,
    heads: Int = None, kv_heads: Int = None, seq: Int = None, seq_q: Int = None, seq_k: Int = None,
    head_dim: Int = None,
    tile: Annotated[int | None, typer.Option(help="Square tile edge (sets tile m, n and k).")] = None,
    tile_m: Int = None, tile_n: Int = None, tile_k: Int = None,
    causal: Annotated[bool, typer.Option(help="Causal attention.")] = False,
    implementation: Annotated[str | None, typer.Option(help="e.g. torch.matmul, triton.matmul, numba.tiled.")] = None,
    model: Annotated[Path | None, typer.Option(help="A trained model bundle (perfscope train --out).")] = None,
    best: Annotated[bool, typer.Option(
        "--best-config", "--best-tile",
        help="Also predict the best configuration of the parameter space (needs a model): the space observed "
             "at train time, in --data, declared by --space, or for gemm Triton-style tiles.")] = False,
    space: Annotated[str | None, typer.Option(
        help="Declared space for --best-config: 'block_size_x=16,32,64;block_size_y=1,2,4,8'.")] = None,
    params: Annotated[str | None, typer.Option(
        help="The given configuration's tunable parameters: 'block_size_x=32,block_size_y=8' (the gain is "
             "measured against it).")] = None,
    data: Annotated[list[Path] | None, typer.Option(
        help="Dataset(s) whose configurations of the family are the space, and whose measurements of this "
             "problem and device give the regret.")] = None,
    problem_size: Annotated[str | None, typer.Option(
        help="Problem size of an imported kernel (Kernel Tuner's problem_size), e.g. 25000,2048,1.")] = None,
    suggest: Annotated[int | None, typer.Option(
        help="With --best-config: also propose this many configurations to measure on the device (mostly the "
             "predicted fastest, a quarter spread over the rest, none already measured by train --adapt).")] = None,
    region: Annotated[str, typer.Option(help="Grid region for carbon (see data/carbon_intensity.csv).")] = "World",
    intensity: Annotated[float | None, typer.Option(help="Your own grid intensity, gCO2e/kWh.")] = None,
    pue: Annotated[float, typer.Option(help="Data-centre PUE.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Estimate a configuration: `perfscope estimate gemm --m 4096 --n 4096 --k 4096 --dtype bf16 --device h100-sxm`.

    One configuration of an imported kernel: `perfscope estimate dedispersion_kernel --device A100 --model MODEL
    --params 'block_size_x=32,block_size_y=8,...'`; its best configuration: add `--best-config`."""
    # an imported family's configuration, by its tunable parameters (the parameter forest answers)
    from perfscope.workflows.estimate_columns import has_sizes  # light: numpy only

    shape = _shape(kernel, locals(), any_family=best or (params is not None and kernel not in BUILT_IN_FAMILIES))
    # ... or a gemm/conv/attention import whose sizes are unknown (a Kernel Tuner GEMM of one problem)
    imported = not best and params is not None and (kernel not in BUILT_IN_FAMILIES or not has_sizes(kernel, shape))
    for column, value in (("tile_m", tile_m), ("tile_n", tile_n), ("tile_k", tile_k)):
        if value is not None or tile is not None:
            shape[column] = value if value is not None else tile
    if best:
        # loaded when the command runs (see perfscope/commands/__init__.py)
        from perfscope.workflows.config_space import parse_params, parse_space
        from perfscope.workflows.estimate import estimate_with_best_config

        rows = _data_rows(data, as_json) if data else None
        result = estimate_with_best_config(
            kernel, device, dtype, model=model, shape=shape, params=parse_params(params) if params else None,
            implementation=implementation, space=parse_space(space) if space is not None else None, data=rows,
            problem_size=_sizes(problem_size) if problem_size else None, suggest=suggest,
            estimate_options={"region": region, "intensity_gco2e_per_kwh": intensity, "pue": pue,
                              "fp32_math": fp32_math})
    elif imported:
        from perfscope.workflows.config_space import parse_params
        from perfscope.workflows.estimate_params import estimate_params

        for flag, option in (("--space", space), ("--data", data), ("--suggest", suggest)):
            if option:
                raise InvalidInputError(f"{flag} is an option of --best-config")
        if shape:  # sizes or tiles the parameters already decide (--batch, --tile-m, ...): not silently dropped
            raise InvalidInputError(f"{', '.join(sorted(shape))} cannot be given with --params here: the parameters "
                                    "name the configuration (give its tiles as parameters, e.g. MWG=64)")
        result = estimate_params(kernel, device, dtype, model=model, params=parse_params(params or ""),
                                 problem_size=_sizes(problem_size) if problem_size else None,
                                 implementation=implementation, region=region, intensity_gco2e_per_kwh=intensity,
                                 pue=pue)
    else:
        from perfscope.workflows.estimate import estimate

        for flag, option in (("--space", space), ("--params", params), ("--data", data),
                             ("--problem-size", problem_size), ("--suggest", suggest)):
            if option:
                raise InvalidInputError(f"{flag} is an option of --best-config")
        result = estimate(kernel, device, dtype, model=model, region=region, intensity_gco2e_per_kwh=intensity,
                          pue=pue, implementation=implementation, fp32_math=fp32_math, **shape)
    if as_json:
        print(strict_json.dumps(result))
        return
    if imported:
        print(_render_params(result))
        return
    print(_render(result) if "latency_s" in result else _render_best(result["best_config"]))
    if "latency_s" in result and "best_config" in result:
        print(_render_best(result["best_config"], header=False))


def _data_rows(paths: list[Path], as_json: bool) -> Any:
    return read_rows(paths, strict=False, as_json=as_json)[0]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(v < 1 for v in sizes):
        raise InvalidInputError(f"--problem-size {text!r}: write positive integers, e.g. 25000,2048,1")
    return sizes


def _shape(kernel: str, given: dict[str, Any], any_family: bool = False) -> dict[str, Any]:
    """Map the flags onto the family's configuration columns, refusing flags it does not use
    (``any_family``: a family without sizes, such as an imported kernel, takes none)."""
    names = {
        "gemm": {"m": "m", "n": "n", "k": "k", "batch": "batch"},
        "conv": {"n": "conv_n", "batch": "conv_n", "c": "conv_c", "h": "conv_h", "w": "conv_w", "k": "conv_k",
                 "r": "conv_r", "s": "conv_s", "groups": "groups"},
        "attention": {"batch": "batch", "heads": "heads", "kv_heads": "kv_heads", "seq_q": "seq_q",
                      "seq_k": "seq_k", "head_dim": "head_dim"},
    }
    if kernel not in names and not any_family:
        raise InvalidInputError(f"unknown kernel family {kernel!r}: use gemm, conv or attention (or, for a family "
                                "a model was trained on, --params or --best-config)")
    names.setdefault(kernel, {})
    shape: dict[str, Any] = {}
    for flag, column in names[kernel].items():
        if given.get(flag) is not None:
            shape[column] = given[flag]
    both = {"conv": (("stride", ("stride_h", "stride_w")), ("pad", ("pad_h", "pad_w")), ("dil", ("dil_h", "dil_w"))),
            "attention": (("seq", ("seq_q", "seq_k")),)}.get(kernel, ())
    for flag, columns in both:
        if given.get(flag) is not None:
            for column in columns:
                shape.setdefault(column, given[flag])
    if kernel == "attention":
        shape["causal"] = bool(given.get("causal"))
    used = set(names[kernel]) | {flag for flag, _ in both} | ({"causal"} if kernel == "attention" else set())
    stray = [f"--{f.replace('_', '-')}" for f in ("m", "n", "k", "batch", "c", "h", "w", "r", "s", "stride", "pad",
                                                 "dil", "groups", "heads", "kv_heads", "seq", "seq_q", "seq_k",
                                                 "head_dim") if given.get(f) is not None and f not in used]
    if stray:
        raise InvalidInputError(f"{' '.join(stray)} do not apply to {kernel}")
    return shape


def _peak(r: dict[str, Any]) -> str:
    """The compute peak the bound used, and why that one."""
    used, value = r.get("peak_used"), r.get("peak_flops_per_s")
    if used is None or value is None or value != value:
        return f"none: {r['device']} has no {r['dtype']} peak"
    why = " (fp32 with tf32 math: TF32 tensor peak)" if used == "tf32" and r["dtype"] == "fp32" else ""
    if r["dtype"] == "fp32" and used == "fp32":
        why = {"ieee": " (ieee fp32 math)", "tf32": " (tf32 math, but the device has no TF32 peak: FP32 peak)"}.get(
            r.get("fp32_math") or "", " (fp32 math mode unknown: FP32 peak)")
    return f"{used} {value / 1e12:.4g} TFLOP/s{why}"


def _render(r: dict[str, Any]) -> str:
    def t(seconds: float) -> str:
        return f"{seconds * 1e3:.4g} ms" if seconds >= 1e-4 else f"{seconds * 1e6:.4g} us"

    lines = [
        f"{r['kernel']} {r['dtype']} on {r['device']} ({r['device_source']} figures)",
        f"  latency     {t(r['latency_s'])}  [{t(r['latency_low_s'])} .. {t(r['latency_high_s'])}]",
        f"  bound       {r['bound']}-bound, roofline {t(r['bound_time_s'])}, efficiency {r['efficiency']:.0%}",
        f"  peak        {_peak(r)}",
    ]
    if r.get("energy_j") is not None and r["energy_j"] == r["energy_j"]:
        lines += [f"  energy      {r['energy_j']:.4g} J  ({r['energy_method']})",
                  f"  power       {r['power_w']:.4g} W",
                  f"  carbon      {r['carbon_gco2e']:.4g} gCO2e at {r['carbon_intensity_gco2e_per_kwh']:g} g/kWh, "
                  f"PUE {r['pue']:g} ({r['carbon_intensity_source']})"]
    else:
        lines.append(f"  energy      unknown ({r['energy_method']})")
    if "best_tile" in r and "best_config" not in r:
        b = r["best_tile"]
        lines.append(f"  best tile   {b['tile_m']}x{b['tile_n']}x{b['tile_k']} ({b['implementation']}): "
                     f"{t(b['latency_s'])}, "
                     f"x{b['gain_over_default']:.3g} over the given configuration")
    lines.append(f"  method      {r['method']}")
    return "\n".join(lines)


def _render_params(r: dict[str, Any]) -> str:
    """An imported family's estimate (``estimate_params``) as lines."""
    def t(seconds: float) -> str:
        return f"{seconds * 1e3:.4g} ms" if seconds >= 1e-4 else f"{seconds * 1e6:.4g} us"

    config = " ".join(f"{k}={v}" for k, v in r["config"].items() if k != "implementation")
    lines = [f"{r['kernel']} {r['dtype']} on {r['device']} (model device {r['device_key']}: {r['device_source']})",
             f"  config      {config}" + ("" if r["observed"] else "  (not in the trained space: no launch geometry)"),
             f"  latency     {t(r['latency_s'])}  [{t(r['latency_low_s'])} .. {t(r['latency_high_s'])}]",
             "  bound       none: the import gave no FLOPs or bytes for this family"]
    if r["energy_j"] == r["energy_j"]:
        lines += [f"  energy      {r['energy_j']:.4g} J  ({r['energy_method']})",
                  f"  carbon      {r['carbon_gco2e']:.4g} gCO2e at {r['carbon_intensity_gco2e_per_kwh']:g} g/kWh, "
                  f"PUE {r['pue']:g} ({r['carbon_intensity_source']})"]
    else:
        lines.append(f"  energy      unknown ({r['energy_method']})")
    lines.append(f"  method      {r['method']}")
    return "\n".join(lines)


def _render_best(b: dict[str, Any], header: bool = True) -> str:
    """The ``best_config`` answer as lines (the estimate's lines come first when there are any)."""
    def t(seconds: float | None) -> str:
        if seconds is None:
            return "?"
        return f"{seconds * 1e3:.4g} ms" if seconds >= 1e-4 else f"{seconds * 1e6:.4g} us"

    def shown(config: dict[str, Any]) -> str:
        return " ".join(f"{k}={v}" for k, v in config.items() if k != "implementation") or "(defaults)"

    best, space = b["best"], b["space"]
    lines = [f"{b['kernel']} {b['dtype']} on {b['device']} (model device {b['device_key']})"] if header else []
    problem = ", ".join(f"{k}={v}" for k, v in b["problem"].items())
    config = best["config"]
    if all(k in config for k in ("tile_m", "tile_n", "tile_k")):
        lines.append(f"  best tile   {config['tile_m']}x{config['tile_n']}x{config['tile_k']} "
                     f"({config.get('implementation')}): {t(best['latency_s'])}"
                     + (f", x{b['gain_over_given']:.3g} over the given configuration" if b["gain_over_given"] else ""))
    lines += [
        f"  best config {shown(config)}" + (f"  [{config['implementation']}]" if config.get("implementation") else ""),
        f"  predicted   {t(best['latency_s'])}  [{t(best['latency_low_s'])} .. {t(best['latency_high_s'])}]"
        + (f"  ({best['n_tied']} configurations tie at this time)" if best["n_tied"] > 1 else ""),
        f"  searched    {space['n_candidates']} configurations ({space['source']} space"
        + (f"; {space['n_unobserved']} never observed, no launch geometry" if space["n_unobserved"] else "")
        + (f"; problem {problem}" if problem else "") + f"), ranked by {b['model']}",
    ]
    gains = [f"x{b['gain_over_median']:.3g} over the median configuration"]
    if b["given"] is not None:
        gains.insert(0, f"x{b['gain_over_given']:.3g} over the given configuration ({t(b['given']['latency_s'])})")
    lines.append("  gain        " + "; ".join(gains))
    measured = b.get("measured")
    if measured is not None:
        chosen = ("not measured" if measured["chosen_time_s"] is None
                  else f"{t(measured['chosen_time_s'])}, regret {measured['regret']:.3f}")
        lines.append(f"  measured    chosen {chosen}; best measured {t(measured['best_time_s'])} "
                     f"({shown(measured['best_config'])}) over {measured['n_configurations']} configurations")
    elif "measured" in b and b.get("measured") is None and b["space"]["source"] == "data":
        lines.append("  measured    no measurements of this problem on this device in --data")
    lines.append(f"  method      {b['method']}")
    to_measure = b.get("to_measure")
    if to_measure is not None:
        lines.append(f"  measure next ({len(to_measure['configs'])} of {to_measure['k']} asked; "
                     f"{to_measure['n_measured_already']} already measured left out):")
        lines += [f"    {shown(c['config'])}  predicted {t(c['latency_s'])}  ({c['why']})"
                  for c in to_measure["configs"]]
    return "\n".join(lines)
