"""The forest's 90% intervals beyond its training data: coverage per row and per shape, and
what the distance coefficient γ of σ(x) = (s + β)·(1 + γ·d) does there.

GPPerf CUTLASS (RTX 4070), clean rows: train on the shapes with m*n*k up to the 75th
percentile of the rows, predict the larger rest (``split="extrapolate"``). The forest's
scores are calibrated as ``ConformalWrapper`` calibrates them: out-of-fold log residuals
of unseen shapes (5 grouped folds of the training side), normalised by σ(x); the
interval of a test row is prediction · exp(±q·σ(x)). Printed:

* per γ: the test coverage per row, how many test shapes have at least 90% of their rows
  covered, the median relative width (high - low) / prediction, and the coverage of two
  sets of rows that a calibration could use without the test rows: the out-of-fold rows
  beyond their fold model's data (d > 0), and a nested pseudo-extrapolation (fit on the
  training rows up to the 75th percentile of their own FLOPs, predict the rest);
* the γ each of those two would pick (the smallest with coverage >= 90%) and the test
  coverage it would give;
* the coverage per test shape at γ = 1 (what perfscope uses) and for plain intervals;
* for comparison, conformalized quantile regression (CQR, Romano et al. 2019): gradient-boosted
  5% and 95% quantiles of log(time / bound) on the forest's features, widened by the conformal
  quantile of their out-of-fold misses on the same grouped folds.

Then (``--device``) the intervals ``perfscope train`` saves, on a new GPU: the Kernel Tuner
dedispersion caches, leave one GPU out, ``param_forest`` in a ``ConformalWrapper``
calibrated on unseen (block_size_x, block_size_y) groups of the training GPUs, judged
zero-shot (the new-device quantile: leave-one-GPU-out scale errors) and after adapting to
k measured configurations of the held-out GPU (random, or chosen by the model), recalibrated
on them as ``train --adapt`` recalibrates; next to it,
the cross-fold interval ``evaluate`` gives a bare model (other GPUs' errors).

    python bench/bench_intervals.py [--gpperf DIR] [--n-jobs 2] [--trees 300] [--device
        [--kernel-tuner DIR] [--sample-per-gpu 2000] [--device-trees 50]] [--skip-gpperf]

The test side has 8 shapes, 7 of them M = 128256: coverage moves in steps of a shape.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_GPPERF = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "gpperf"
DEFAULT_KERNEL_TUNER = DEFAULT_GPPERF.parent / "kernel_tuner" / "dedispersion_milo"
GAMMAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)
ALPHA = 0.1


def scored(model, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(|log residual|, difficulty (s, d)) of a fitted forest on ``rows``."""
    from perfscope.models.intervals import log_scores, measured_target

    return log_scores(measured_target(rows, "latency"), model.predict(rows)), model.interval_difficulty(rows)


def shape_names(rows: pd.DataFrame) -> np.ndarray:
    return (rows["m"].astype(str) + "x" + rows["n"].astype(str) + "x" + rows["k"].astype(str)).to_numpy()


def smallest_gamma(covers: dict[float, float]) -> float | None:
    """The smallest γ whose coverage reaches 1 - alpha (None: none does)."""
    return next((g for g in GAMMAS if covers[g] >= 1 - ALPHA), None)


def cqr_coverage(inside: pd.DataFrame, outside: pd.DataFrame) -> tuple[float, float]:
    """(test coverage, median relative width) of CQR intervals (see module docstring)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import GroupKFold

    from perfscope.models.forest import ForestModel
    from perfscope.models.groups import shape_groups
    from perfscope.models.intervals import conformal_quantile, measured_target

    design_model = ForestModel(n_estimators=1).fit(inside)  # only for its feature design and bound

    def design(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bound, x = design_model._design_of(rows, None)
        return x, np.log(measured_target(rows, "latency") / bound), np.log(bound)

    def quantiles(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
        return np.column_stack([HistGradientBoostingRegressor(loss="quantile", quantile=level, random_state=0)
                                .fit(x, y).predict(x_new) for level in (ALPHA / 2, 1 - ALPHA / 2)])

    x, y, _ = design(inside)
    misses = np.empty(len(y))
    for train, test in GroupKFold(n_splits=5, shuffle=True, random_state=0).split(x, groups=shape_groups(inside)):
        band = quantiles(x[train], y[train], x[test])
        misses[test] = np.maximum(band[:, 0] - y[test], y[test] - band[:, 1])
    widen = conformal_quantile(misses, ALPHA)
    x_new, y_new, _ = design(outside)
    band = quantiles(x, y, x_new)
    low, high = band[:, 0] - widen, band[:, 1] + widen
    width = 2 * np.sinh((high - low) / 2)  # (high - low) / the band's geometric midpoint
    return float(np.mean((y_new >= low) & (y_new <= high))), float(np.median(width))


def run_device(folder: Path, sample_per_gpu: int, trees: int, n_jobs: int | None) -> None:
    """Coverage of the saved (wrapped) intervals on a held-out GPU, zero-shot and k-shot."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_kernel_tuner import COLUMNS, caches_missing, load

    from perfscope.models.evaluation import cross_validated_predictions, summarize
    from perfscope.models.intervals import ConformalWrapper
    from perfscope.models.param_forest import ParameterForestModel

    if caches_missing(folder, "--kernel-tuner"):
        return
    start = time.perf_counter()
    rows = load(folder, None)
    if sample_per_gpu > 0:
        rows = pd.concat([part.sample(min(sample_per_gpu, len(part)), random_state=0)
                          for _, part in rows.groupby("device_key", sort=False)], ignore_index=True)
    models = {"param_forest": ParameterForestModel(n_estimators=trees, n_jobs=n_jobs),
              "saved intervals": ConformalWrapper(ParameterForestModel(n_estimators=trees, n_jobs=n_jobs),
                                                  groups=block_groups)}
    predictions = cross_validated_predictions(models, rows, "device", 5, 0)
    table = summarize(predictions)
    print(f"\n## leave one GPU out, {len(rows)} rows ({sample_per_gpu or 'all'} per GPU), {trees} trees: "
          f"coverage of 90% intervals ({time.perf_counter() - start:.0f} s)")
    print(table[COLUMNS + ["coverage_method"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    # per held-out GPU: the saved intervals' coverage, and its zero-shot scale error (the spec
    # rule fitted on the other GPUs: what the new-device quantile has to cover)
    errors = ParameterForestModel(n_estimators=1, device_landscapes=False).fit(rows).scale_errors()
    saved = predictions[predictions["model"].str.startswith("saved intervals")
                        & ~predictions["measured"].fillna(False).astype(bool)]
    device = rows["device_key"].astype(str).to_numpy()[saved["row"].to_numpy()]
    covered = (saved["y_true"] >= saved["low"]) & (saved["y_true"] <= saved["high"])
    per_gpu = covered.groupby([saved["model"].to_numpy(), device]).mean().unstack(0)
    per_gpu.insert(0, "scale error", pd.Series(errors))
    print("\n## saved intervals' coverage per held-out GPU (scale error: log, predicted - fitted)")
    print(per_gpu.to_string(float_format=lambda v: f"{v:.3f}"))


def block_groups(rows: pd.DataFrame) -> np.ndarray:
    """Groups of the calibration: (block_size_x, block_size_y) combinations, as ``train`` groups a sweep."""
    from perfscope.models.groups import parameter_groups

    return parameter_groups(rows, ["block_size_x", "block_size_y"])


def main(argv: list[str] | None = None) -> int:
    from perfscope.importers.gpperf import import_gpperf
    from perfscope.models.evaluation import cross_validated_predictions, extrapolation_fold
    from perfscope.models.forest import ForestModel
    from perfscope.models.intervals import conformal_quantile, difficulty_scale, log_scores, spread_offset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpperf", type=Path, default=DEFAULT_GPPERF, help="folder of GPPerf's CSVs")
    parser.add_argument("--n-jobs", type=int, default=None, help="forest fitting jobs")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--device", action="store_true", help="also the leave-one-GPU-out coverage")
    parser.add_argument("--kernel-tuner", type=Path, default=DEFAULT_KERNEL_TUNER, help="folder of the caches")
    parser.add_argument("--sample-per-gpu", type=int, default=2000, help="configurations per GPU (0: all)")
    parser.add_argument("--device-trees", type=int, default=50)
    parser.add_argument("--skip-gpperf", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
    if args.device:
        run_device(args.kernel_tuner, args.sample_per_gpu, args.device_trees, args.n_jobs)
    if args.skip_gpperf:
        return 0
    if not (args.gpperf / "cutlass_results.csv").is_file():
        print(f"GPPerf data not found at {args.gpperf}: skipped (pass --gpperf DIR)")
        return 0
    start = time.perf_counter()
    rows = import_gpperf(args.gpperf).to_pandas()
    clean = rows[rows["source"].str.endswith("cutlass_results.csv") & (rows["status"] == "ok")].reset_index(drop=True)
    train, test = extrapolation_fold(clean)
    inside, outside = clean.iloc[train].reset_index(drop=True), clean.iloc[test].reset_index(drop=True)

    def forest():
        return ForestModel(n_estimators=args.trees, n_jobs=args.n_jobs)

    oof = cross_validated_predictions({"forest": forest()}, inside, "shape", 5, 0, targets=("latency",))
    cal_r = log_scores(oof["y_true"].to_numpy(), oof["y_pred"].to_numpy())
    cal_d = oof[["spread", "excess"]].to_numpy(dtype=float)
    beta = spread_offset(cal_d[:, 0])
    test_r, test_d = scored(forest().fit(inside), outside)
    nested_train, nested_test = extrapolation_fold(inside)
    nested_r, nested_d = scored(forest().fit(inside.iloc[nested_train]), inside.iloc[nested_test])
    shapes = shape_names(outside)
    far = cal_d[:, 1] > 0

    table, covers_far, covers_nested, per_shape = [], {}, {}, {}
    for gamma in GAMMAS:
        q = conformal_quantile(cal_r / difficulty_scale(cal_d, beta, gamma), ALPHA)
        half = q * difficulty_scale(test_d, beta, gamma)
        inside_interval = test_r <= half
        per_shape[gamma] = pd.Series(inside_interval).groupby(shapes).mean()
        covers_far[gamma] = float(np.mean(cal_r[far] <= q * difficulty_scale(cal_d[far], beta, gamma)))
        covers_nested[gamma] = float(np.mean(nested_r <= q * difficulty_scale(nested_d, beta, gamma)))
        table.append({"gamma": gamma, "q": q, "test cover90": float(np.mean(inside_interval)),
                      "shapes >= 90%": f"{int((per_shape[gamma] >= 0.9).sum())}/{len(per_shape[gamma])}",
                      "width": float(np.median(2 * np.sinh(half))),
                      "oof beyond data": covers_far[gamma], "nested pseudo-extrap.": covers_nested[gamma]})
    print(f"# GPPerf extrapolation: {len(inside)} training rows ({len(np.unique(shape_names(inside)))} shapes), "
          f"{len(outside)} test rows ({len(per_shape[1.0])} shapes); calibration: {len(cal_r)} out-of-fold rows, "
          f"{int(far.sum())} of them beyond their fold's data ({oof['group'][far].nunique()} shapes); nested "
          f"pseudo-extrapolation: {len(nested_r)} rows; β = {beta:.2e}")
    print(f"d (distance beyond the data, spans): out-of-fold max {cal_d[:, 1].max():.3f}, nested max "
          f"{nested_d[:, 1].max():.3f}, test median {np.median(test_d[:, 1]):.2f} (max {test_d[:, 1].max():.1f}); "
          f"tree spread s: test median {np.median(test_d[:, 0]):.1e}, nested {np.median(nested_d[:, 0]):.1e}")
    print("\n## coverage of 90% intervals by γ (target 85-95%; width: median (high - low) / prediction)")
    print(pd.DataFrame(table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for label, covers in (("out-of-fold rows beyond their fold's data", covers_far),
                          ("nested pseudo-extrapolation", covers_nested)):
        gamma = smallest_gamma(covers)
        picked = "none reaches 90%" if gamma is None else \
            f"γ = {gamma} -> test coverage {np.mean(per_shape[gamma].reindex(shapes).to_numpy()):.3f}"
        print(f"calibrated on {label}: {picked}")
    plain_q = conformal_quantile(cal_r, ALPHA)
    breakdown = pd.DataFrame({"shape": shapes, "d": test_d[:, 1], "error": test_r, "plain": test_r <= plain_q})
    breakdown = breakdown.groupby("shape").agg(rows=("d", "size"), d=("d", "median"), median_abs_log_error=(
        "error", "median"), cover_plain=("plain", "mean"))
    breakdown["cover_gamma_1"] = per_shape[1.0]
    print("\n## per test shape (γ = 1, perfscope's default; plain: σ = 1)")
    print(breakdown.to_string(float_format=lambda v: f"{v:.3f}"))
    cqr_cover, cqr_width = cqr_coverage(inside, outside)
    print(f"\nCQR (boosted 5%/95% quantiles of log time / bound, conformalized on the same folds): test coverage "
          f"{cqr_cover:.3f}, median width {cqr_width:.3f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{time.perf_counter() - start:.0f} s (load average {load:.1f} on a shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
