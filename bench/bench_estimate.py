#!/usr/bin/env python
"""Estimate speed: the CLI's cold start, one in-process estimate, vectorised estimates.

Targets (issue): `perfscope estimate` cold start <= 1 s; a single in-process estimate
p50 <= 2 ms; >= 100,000 estimates per second vectorised. Prints figures; no exit status.

Run:  python bench/bench_estimate.py [--model DIR --model-device KEY] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np


def cold_start_s(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "perfscope", "estimate", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def single_p50_ms(call, repeats: int = 200) -> float:
    call()  # warm caches (device specs, imports)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def vectorised_per_s(device: str, model, n: int = 100_000) -> float:
    from perfscope.estimate import estimate_many

    rng = np.random.default_rng(0)
    configs = {"m": rng.integers(64, 8192, n), "n": rng.integers(64, 8192, n), "k": rng.integers(64, 8192, n)}
    estimate_many("gemm", {k: v[:100] for k, v in configs.items()}, device, dtype="fp32", model=model)
    t0 = time.perf_counter()
    frame = estimate_many("gemm", configs, device, dtype="fp32", model=model)
    elapsed = time.perf_counter() - t0
    assert len(frame) == n
    return n / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a trained bundle (perfscope train --out)")
    p.add_argument("--model-device", default="cpu-amd-epyc", help="device key the bundle was trained on")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    from perfscope.estimate import estimate

    shape = ["--m", "4096", "--n", "4096", "--k", "4096"]
    print(f"cold start, roofline fallback (median of {args.repeats}): "
          f"{cold_start_s(['gemm', *shape, '--device', 'h100-sxm', '--json'], args.repeats):.3f} s  (target <= 1 s)")
    p50 = single_p50_ms(lambda: estimate("gemm", "h100-sxm", "bf16", m=4096, n=4096, k=4096))
    print(f"single estimate in-process, roofline fallback, p50: {p50:.2f} ms  (target <= 2 ms)")
    print(f"vectorised, roofline fallback: {vectorised_per_s('h100-sxm', None):,.0f} estimates/s  (target >= 100,000)")
    if args.model:
        from perfscope.models.persistence import load_bundle

        print(f"cold start with --model (median of {args.repeats}): "
              f"{cold_start_s(['gemm', *shape, '--device', args.model_device, '--model', args.model, '--json'], args.repeats):.3f} s")
        bundle = load_bundle(args.model)
        p50 = single_p50_ms(lambda: estimate("gemm", args.model_device, "fp32", m=4096, n=4096, k=4096, model=bundle),
                            repeats=50)
        print(f"single estimate in-process with the model loaded once, p50: {p50:.2f} ms")
        print(f"vectorised with the model: {vectorised_per_s(args.model_device, bundle):,.0f} estimates/s")


if __name__ == "__main__":
    main()
