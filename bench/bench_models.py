"""Predictor figures on real data: GPPerf's CUTLASS sweep (RTX 4070) and a perfscope CPU profile.

Prints, side by side, for perfscope's ForestModel and RooflineModel, a log-linear fit on
FLOPs, bytes and waves, and the GPPerf paper's model: R^2 on the raw target, mean and
median absolute percentage error, share within ±10% and the coverage of 90% intervals,
for leave-one-shape-out (no shape of the test fold is seen in training) and for a
shuffled 5-fold random split (which leaks near-replicates: kept to compare with the
published figures). Then extrapolation: train on the GPPerf shapes with m*n*k up to
the 75th percentile, predict the larger rest, every model in a ConformalWrapper
calibrated on the training side (grouped by shape), with normalised intervals (tree
spread and distance beyond the data) and, for comparison, plain ones.

    python bench/bench_models.py [--gpperf DIR] [--cpu-dataset PATH] [--n-jobs 2] [--only-extrapolation]

GPPerf data is read from --gpperf DIR (skipped with a message when absent).
Its power was read by nvidia-smi after each run, often at idle: energy and power
figures are reported on that weak ground truth, never tuned to. The CPU profile needs
a calibrated profile of its CPU (`perfscope calibrate --device cpu`, found through
$PERFSCOPE_HOME). Hyper-parameters are fixed on principle (see perfscope/models/forest.py),
not chosen on these figures.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from perfscope.errors import PerfscopeError

DEFAULT_GPPERF = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "gpperf"
COLUMNS = {"model": "model", "target": "target", "n_rows": "rows", "n_folds": "folds", "r2": "R^2",
           "mean_abs_pct_error": "mean %", "median_abs_pct_error": "median %", "within_10pct": "<=10%",
           "coverage": "cover90", "interval_width_median": "width", "coverage_method": "coverage by"}


def show(title: str, table: pd.DataFrame, seconds: float) -> None:
    """Print one figures table."""
    view = table[list(COLUMNS)].rename(columns=COLUMNS)
    print(f"\n## {title}  ({seconds:.0f} s)")
    print(view.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def gpperf_models(n_jobs: int | None, trees: int) -> dict:
    from perfscope.models.energy_model import EnergyModel
    from perfscope.models.forest import ForestModel, PaperBaselineModel
    from perfscope.models.roofline_model import LogLinearModel, RooflineModel

    return {"forest": ForestModel(n_estimators=trees, n_jobs=n_jobs), "roofline": RooflineModel(),
            "log_linear": LogLinearModel(), "paper_baseline": PaperBaselineModel(n_jobs=n_jobs),
            "energy_nnls": EnergyModel(latency_model=RooflineModel())}


def run_gpperf(folder: Path, n_jobs: int | None, trees: int) -> None:
    """Leave-one-shape-out and random-split figures on the CUTLASS rows: without contention, all, the paper's."""
    from perfscope.importers.gpperf import import_gpperf
    from perfscope.models.efficiency import admit_contended, count_contended, usable_energy_mask
    from perfscope.models.evaluation import cross_validated_predictions, evaluate, summarize

    if not (folder / "cutlass_results.csv").is_file():
        print(f"GPPerf data not found at {folder}: skipped (pass --gpperf DIR)")
        return
    rows = import_gpperf(folder).to_pandas()
    timed = rows[rows["source"].str.endswith("cutlass_results.csv")
                 & rows["status"].isin(["ok", "contended"])].reset_index(drop=True)
    everything = admit_contended(timed)  # contended rows relabelled ok: judged like the rest
    clean = timed[timed["status"] == "ok"].reset_index(drop=True)
    with_power = everything[usable_energy_mask(everything, include_doubtful=True)].reset_index(drop=True)
    print(f"# GPPerf CUTLASS sweep, {timed['device_name'].iloc[0]}: {len(timed)} timed rows, "
          f"{timed[['m', 'n', 'k']].drop_duplicates().shape[0]} shapes; {count_contended(timed)} contended (GPU read "
          f"busy after the run: another workload shared it), {len(with_power)} with power "
          "(doubtful: read after the run)")
    models = gpperf_models(n_jobs, trees)
    subsets = (("rows without contention (what perfscope trains on)", clean),
               ("all timed rows, contended included", everything),
               ("the paper's rows with power, contended included", with_power))
    for label, data in subsets:
        start = time.perf_counter()
        predictions = cross_validated_predictions(models, data, "shape", None, 0, include_doubtful_energy=True)
        table = summarize(predictions)
        show(f"GPPerf, {label} ({len(data)} rows, {data[['m', 'n', 'k']].drop_duplicates().shape[0]} shapes): "
             "leave-one-shape-out", table, time.perf_counter() - start)
        if data is everything:
            shape_breakdown(predictions, data)
        start = time.perf_counter()
        table = evaluate(models, data, split="random", n_splits=5, seed=0, include_doubtful_energy=True)
        show(f"GPPerf, {label}: random 5-fold", table, time.perf_counter() - start)
    print("\nPublished (paper's rows, random 80/20): runtime R^2 0.98, mean 15.57%; power R^2 0.78, median 5.42%."
          "\nGPPerf README, same model leave-one-shape-out: runtime R^2 0.35, median 51%; power R^2 0.18.")


def run_extrapolation(folder: Path, n_jobs: int | None, trees: int) -> None:
    """Train on the GPPerf shapes up to the 75th percentile of m*n*k, predict the rest, with 90% intervals."""
    from perfscope.importers.gpperf import import_gpperf
    from perfscope.models.evaluation import evaluate
    from perfscope.models.forest import ForestModel
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.param_forest import ParameterForestModel
    from perfscope.models.roofline_model import LogLinearModel, RooflineModel

    if not (folder / "cutlass_results.csv").is_file():
        print(f"GPPerf data not found at {folder}: extrapolation skipped (pass --gpperf DIR)")
        return
    rows = import_gpperf(folder).to_pandas()
    clean = rows[rows["source"].str.endswith("cutlass_results.csv") & (rows["status"] == "ok")].reset_index(drop=True)
    work = clean["m"] * clean["n"] * clean["k"]
    cut = np.percentile(work, 75)
    shapes = clean[["m", "n", "k"]].drop_duplicates()
    n_train_shapes = int((shapes["m"] * shapes["n"] * shapes["k"] <= cut).sum())
    models = {"forest": ConformalWrapper(ForestModel(n_estimators=trees, n_jobs=n_jobs)),
              "forest, plain intervals": ConformalWrapper(ForestModel(n_estimators=trees, n_jobs=n_jobs),
                                                          normalise="none"),
              "param_forest": ConformalWrapper(ParameterForestModel(n_jobs=n_jobs)),
              "roofline": ConformalWrapper(RooflineModel()), "log_linear": ConformalWrapper(LogLinearModel())}
    start = time.perf_counter()
    table = evaluate(models, clean, split="extrapolate")
    show(f"GPPerf extrapolation: trained on {n_train_shapes} shapes with m*n*k <= {cut:.3g} (75th percentile of "
         f"rows), predicting {len(shapes) - n_train_shapes} larger shapes ({int((work > cut).sum())} rows); 90% "
         "intervals calibrated on the training shapes (target coverage 85-95%)", table, time.perf_counter() - start)


def shape_breakdown(predictions: pd.DataFrame, data: pd.DataFrame) -> None:
    """The forest's leave-one-shape-out latency error per shape, worst first, with the GPU temperature."""
    part = predictions[(predictions["model"] == "forest") & (predictions["target"] == "latency")]
    rows = data.iloc[part["row"].to_numpy()]
    frame = pd.DataFrame({"shape": rows["m"].astype(str).to_numpy() + "x" + rows["n"].astype(str).to_numpy() + "x"
                          + rows["k"].astype(str).to_numpy(),
                          "error_pct": (part["y_pred"].to_numpy() / part["y_true"].to_numpy() - 1) * 100,
                          "time_ms": part["y_true"].to_numpy() * 1e3,
                          "temperature_c": rows["temperature_c_before"].to_numpy()})
    per_shape = frame.groupby("shape").agg(time_ms=("time_ms", "median"), median_error_pct=("error_pct", "median"),
                                           temperature_c=("temperature_c", "median"))
    per_shape = per_shape.reindex(per_shape["median_error_pct"].abs().sort_values(ascending=False).index)
    print("\nforest, leave-one-shape-out, worst shapes (median signed error; GPU temperature of the runs):")
    print(per_shape.head(6).to_string(float_format=lambda v: f"{v:.1f}"))
    hot = frame["temperature_c"] > 50
    y = part["y_true"].to_numpy()
    p = part["y_pred"].to_numpy()
    for label, mask in (("rows measured at <= 50 C", ~hot.to_numpy()), ("rows measured at > 50 C", hot.to_numpy())):
        if mask.any():
            r2 = 1 - np.sum((y[mask] - p[mask]) ** 2) / np.sum((y[mask] - y[mask].mean()) ** 2)
            print(f"  {label}: {mask.sum()} rows, R^2 {r2:.3f}, median error "
                  f"{np.median(np.abs(p[mask] / y[mask] - 1)) * 100:.2f}%")


def run_cpu(path: Path, n_jobs: int | None, trees: int) -> None:
    """Leave-one-shape-out and random figures on a perfscope CPU dataset (latency only)."""
    from perfscope.devices.registry import resolve_row_devices
    from perfscope.models.evaluation import evaluate
    from perfscope.models.forest import ForestModel, PaperBaselineModel
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.roofline_model import LogLinearModel, RooflineModel
    from perfscope.workflows.train import read_datasets

    rows = read_datasets(path)
    rows = rows[rows["status"] == "ok"].reset_index(drop=True)
    if len(rows) < 2:
        print(f"\nCPU dataset {path}: skipped: fewer than two ok rows")
        return
    try:
        devices = resolve_row_devices(rows["device_key"].astype(str).tolist(), rows["device_name"].tolist())
    except PerfscopeError as exc:
        print(f"\nCPU dataset {path}: skipped: {exc}")
        return
    described = ", ".join(f"{k} ({d.source_kind}: {d.peaks_flops_per_s.get('fp32', float('nan')) / 1e9:.1f} "
                          f"GFLOP/s fp32, {(d.mem_bandwidth_bytes_per_s or float('nan')) / 1e9:.1f} GB/s)"
                          for k, d in devices.items())
    print(f"\n# perfscope CPU profile {path}: {len(rows)} ok rows, "
          f"{rows[['m', 'n', 'k', 'batch', 'dtype']].drop_duplicates().shape[0]} shapes; {described}")
    print(f"  timing: median CI half-width over median: p50 {rows['time_ci_rel'].median() * 100:.1f}%, "
          f"max {rows['time_ci_rel'].max() * 100:.1f}%; {int(rows['noisy'].fillna(False).sum())} rows flagged noisy")
    jobs = n_jobs if len(rows) > 2000 else None  # on a few rows, worker start-up costs more than it saves
    models = {"forest": ConformalWrapper(ForestModel(n_estimators=trees, n_jobs=jobs)),
              "roofline": ConformalWrapper(RooflineModel()), "log_linear": LogLinearModel(),
              "paper_baseline": PaperBaselineModel(n_jobs=jobs)}
    for split, n_splits in (("shape", None), ("random", 5)):
        start = time.perf_counter()
        table = evaluate(models, rows, split=split, n_splits=n_splits, seed=0)
        title = "leave-one-shape-out" if split == "shape" else "random 5-fold"
        show(f"CPU, {title} (forest and roofline judged on their own nested conformal intervals)", table,
             time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpperf", type=Path, default=DEFAULT_GPPERF, help="folder of GPPerf's CSVs")
    parser.add_argument("--cpu-dataset", type=Path, default=None, help="a perfscope dataset measured on a CPU")
    parser.add_argument("--n-jobs", type=int, default=None, help="forest fitting jobs")
    parser.add_argument("--trees", type=int, default=300, help="ForestModel trees (default: its own default)")
    parser.add_argument("--skip-gpperf", action="store_true")
    parser.add_argument("--only-extrapolation", action="store_true", help="only the GPPerf extrapolation figures")
    args = parser.parse_args(argv)
    # scikit-learn's forest warns once per tree when its joblib workers run under n_jobs > 1
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
    if args.only_extrapolation:
        run_extrapolation(args.gpperf, args.n_jobs, args.trees)
        return 0
    if not args.skip_gpperf:
        run_gpperf(args.gpperf, args.n_jobs, args.trees)
        run_extrapolation(args.gpperf, args.n_jobs, args.trees)
    if args.cpu_dataset is not None:
        run_cpu(args.cpu_dataset, args.n_jobs, args.trees)
    elif args.skip_gpperf:
        print("nothing to do: give --cpu-dataset or drop --skip-gpperf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
