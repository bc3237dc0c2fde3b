"""``perfscope estimate``: latency, energy, power, carbon, bound and best tile of a
configuration that was never measured. Light: no torch, triton or dash."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from perfscope.cli_app import app
from perfscope.errors import InvalidInputError

Int = Annotated[int | None, typer.Option()]


@app.command("estimate")
def estimate_command(
    kernel: Annotated[str, typer.Argument(help="gemm, conv or attention.")],
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
    best_tile: Annotated[bool, typer.Option(help="Also predict the best tile (needs a model).")] = False,
    region: Annotated[str, typer.Option(help="Grid region for carbon (see data/carbon_intensity.csv).")] = "World",
    intensity: Annotated[float | None, typer.Option(help="Your own grid intensity, gCO2e/kWh.")] = None,
    pue: Annotated[float, typer.Option(help="Data-centre PUE.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Estimate a configuration: `perfscope estimate gemm --m 4096 --n 4096 --k 4096 --dtype bf16 --device h100-sxm`."""
    from perfscope import strict_json
    from perfscope.workflows.estimate import estimate

    shape = _shape(kernel, locals())
    for column, value in (("tile_m", tile_m), ("tile_n", tile_n), ("tile_k", tile_k)):
        if value is not None or tile is not None:
            shape[column] = value if value is not None else tile
    result = estimate(kernel, device, dtype, model=model, best_tile=best_tile, region=region,
                      intensity_gco2e_per_kwh=intensity, pue=pue, implementation=implementation,
                      fp32_math=fp32_math, **shape)
    if as_json:
        print(strict_json.dumps(result))
        return
    print(_render(result))


def _shape(kernel: str, given: dict[str, Any]) -> dict[str, Any]:
    """Map the flags onto the family's configuration columns, refusing flags it does not use."""
    names = {
        "gemm": {"m": "m", "n": "n", "k": "k", "batch": "batch"},
        "conv": {"n": "conv_n", "batch": "conv_n", "c": "conv_c", "h": "conv_h", "w": "conv_w", "k": "conv_k",
                 "r": "conv_r", "s": "conv_s", "groups": "groups"},
        "attention": {"batch": "batch", "heads": "heads", "kv_heads": "kv_heads", "seq_q": "seq_q",
                      "seq_k": "seq_k", "head_dim": "head_dim"},
    }
    if kernel not in names:
        raise InvalidInputError(f"unknown kernel family {kernel!r}: use gemm, conv or attention")
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
    used = set(names[kernel]) | {flag for flag, _ in both} | {"causal"}
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
    if "best_tile" in r:
        b = r["best_tile"]
        lines.append(f"  best tile   {b['tile_m']}x{b['tile_n']}x{b['tile_k']} ({b['implementation']}): "
                     f"{t(b['latency_s'])}, "
                     f"x{b['gain_over_default']:.3g} over the given configuration")
    lines.append(f"  method      {r['method']}")
    return "\n".join(lines)
