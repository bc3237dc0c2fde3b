"""Regret of ``estimate --best-config`` on a GPU the model never saw, before and after
``train --adapt`` with k measured configurations: Kernel Tuner dedispersion, six GPUs.

For each GPU as the target: a parameter forest is trained on the other five GPUs' rows
and saved as a bundle; ``best_config`` (what ``perfscope estimate --best-config --data``
runs) picks the predicted fastest of the target's 11,130 configurations and reports its
regret (measured time of the pick / measured best time). Then
``perfscope.models.adaptation.adapt_bundle`` (what ``perfscope train --adapt DATASET
--adapt-sample K`` runs after training) adapts the saved bundle to K random measured rows
of the target, and the regret is measured again; then the same with the K rows chosen by
the model (``--adapt-choose model``: ``perfscope.models.few_shot.adapt_to_chosen``, two
batches, mostly the predicted fastest). The bar: the fastest of the K measured
configurations (what the K measurements give without any model); the adapted model
predicts its measured rows as measured, so it picks another configuration only where it
predicts that one faster than the fastest measurement.

Lighter than ``perfscope train`` so that it runs in minutes on a shared machine: one fit
(``--trees`` trees, default 50; the class default is 200) inside a split-conformal wrapper
(25% of the (block_size_x, block_size_y) groups calibrate the interval, the forest is
fitted on the rest), no cross-validated evaluation.

    python bench/bench_best_config.py [--folder DIR] [--trees 50] [--k 20] [--seed 0] [--gpus A100,W6600]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
from bench_kernel_tuner import DEFAULT, caches_missing, gpu_labels, load  # bench/ is on sys.path when run as a script

KERNEL = "dedispersion_kernel"


def bundle_for(rows: pd.DataFrame, out: Path, trees: int, n_jobs: int | None) -> Path:
    from perfscope.models.groups import parameter_groups
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.param_forest import ParameterForestModel
    from perfscope.models.param_space import observed_spaces
    from perfscope.models.persistence import save_bundle

    wrapper = ConformalWrapper(ParameterForestModel(n_estimators=trees, n_jobs=n_jobs), method="split",
                               groups=lambda frame: parameter_groups(frame, ["block_size_x", "block_size_y"]))
    names = {str(k): str(v) for k, v in rows.groupby(rows["device_key"].astype(str))["device_name"].first().items()}
    return save_bundle(out, {"param_forest": wrapper.fit(rows)}, rows=rows,
                       metadata={"parameter_spaces": observed_spaces(rows), "device_names": names})


def main(argv: list[str] | None = None) -> int:
    from perfscope.hostload import ForeignLoad
    from perfscope.models.adaptation import adapt_bundle
    from perfscope.models.persistence import load_bundle
    from perfscope.workflows.best_config import best_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--gpus", default="", help="comma-separated targets (file stems; default: all)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
    if caches_missing(args.folder):
        return 0
    load_window = ForeignLoad()
    load_window.start()
    start = time.perf_counter()
    rows = load(args.folder, None)  # bench_kernel_tuner's: every cache with the T1 file, as shipped
    rows["gpu"] = gpu_labels(rows)
    print(f"# imported {len(rows)} rows, {rows['gpu'].nunique()} GPUs in {time.perf_counter() - start:.0f} s; "
          f"{args.trees} trees, k = {args.k}, seed {args.seed}")
    targets = [g for g in args.gpus.split(",") if g] or sorted(rows["gpu"].unique())
    lines = []
    for gpu in targets:
        start = time.perf_counter()
        base = rows[rows["gpu"] != gpu].reset_index(drop=True)
        target = rows[rows["gpu"] == gpu].reset_index(drop=True)
        device = str(target["device_name"].iloc[0] or target["device_key"].iloc[0])
        with tempfile.TemporaryDirectory() as tmp:
            path = bundle_for(base, Path(tmp) / "model", args.trees, args.n_jobs)
            zero = best_config(KERNEL, str(target["device_key"].iloc[0]), model=path, data=target)
            key = str(target["device_key"].iloc[0])
            zero = best_config(KERNEL, key, model=path, data=target)
            regrets = []
            for choose in ("random", "model"):
                out = Path(tmp) / choose
                report = adapt_bundle(path, target, sample=args.k, seed=args.seed, choose=choose, out_dir=out)
                adapted = best_config(KERNEL, key, model=out, data=target)
                measured = load_bundle(out)["param_forest"].estimator_.measured_mask(target)
                best = adapted["measured"]["best_time_s"]
                regrets += [adapted["measured"]["regret"], target["time_median_ms"][measured].min() / 1e3 / best]
        lines.append((gpu, device, zero["measured"]["regret"], *regrets, report["n_rows"], time.perf_counter() - start))
        print(f"{gpu}: zero-shot regret {lines[-1][2]:.3f}; {args.k} random rows: adapted {regrets[0]:.3f}, best "
              f"measured {regrets[1]:.3f}; {args.k} chosen by the model: adapted {regrets[2]:.3f}, best measured "
              f"{regrets[3]:.3f} ({lines[-1][-1]:.0f} s)", flush=True)
    table = pd.DataFrame(lines, columns=["gpu", "device", "zero_shot", "random_adapted", "random_best_measured",
                                         "chosen_adapted", "chosen_best_measured", "adapt_rows", "wall_s"])
    print(f"\nregret (measured time of the pick / measured best), k = {args.k}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    means = table[["zero_shot", "random_adapted", "random_best_measured", "chosen_adapted",
                   "chosen_best_measured"]].mean()
    print("\nmean regret: " + ", ".join(f"{name} {value:.3f}" for name, value in means.items()))
    share = load_window.share()
    print("other processes used " + (f"{share:.0%} of the CPUs meanwhile (wall times are of a shared machine)"
                                     if share is not None else "an unknown share of the CPUs (no /proc/stat)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
