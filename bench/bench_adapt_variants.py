"""Which part of few-shot adaptation helps the pick on a GPU left out: Kernel Tuner
dedispersion, six GPUs, k random measured configurations (several draws) and k chosen by
the model.

For each GPU as the target, a parameter forest is fitted on the other five GPUs' rows,
then adapted (``ParameterForestModel.adapt``) to the target's k rows in three ways:

* ``full``: what ``adapt`` does (mixture of landscapes, scale, residual forest);
* ``no_residual``: the mixture and the scale, no residual forest;
* ``shift_only``: the pooled landscape shifted by the measured scale (the zero-shot ranking).

Each is judged two ways: the pick of ``predict`` (measured configurations predicted as
measured: what ``estimate --best-config`` ranks by) and the pick of the model's own
prediction for every configuration (``raw``). Regret = measured time of the pick / the
GPU's measured best; the error is the median absolute % error on the rows not measured.
The variants are made by raising ``perfscope.models.few_shot``'s row thresholds, so the
code that runs is the product's.

``--cv-select``: also choose the variant per draw by 5-fold cross-validation on the k
measured rows alone (adapt on four fifths, predict the rest; the lowest median absolute
log error, or the highest Spearman), as a user could without knowing the rest, and print
the regret of that choice.

    python bench/bench_adapt_variants.py [--trees 50] [--k 20] [--seeds 0,1,2] [--folder DIR] [--cv-select]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_kernel_tuner import DEFAULT, caches_missing, gpu_labels, load  # bench/ is on sys.path when run as a script

NEVER = 10**9
VARIANTS = {  # few_shot thresholds raised so that adapt skips a part
    "full": {},
    "no_residual": {"MIN_ROWS_FOR_RESIDUALS": NEVER},
    "shift_only": {"MIN_ROWS_FOR_MIXTURE": NEVER, "MIN_ROWS_FOR_RESIDUALS": NEVER},
}


def adapted(model, rows: pd.DataFrame, variant: str):
    """A copy of ``model`` adapted to ``rows`` with the parts of ``variant`` only."""
    from perfscope.models import few_shot

    saved = {name: getattr(few_shot, name) for name in VARIANTS[variant]}
    for name in saved:
        setattr(few_shot, name, NEVER)
    try:
        return _detached(model).adapt(rows)
    finally:
        for name, value in saved.items():
            setattr(few_shot, name, value)


def _detached(model):
    """A copy of ``model`` whose per-device state ``adapt`` writes is its own (the fitted
    forests, which adapt only reads, are shared: a deep copy of them costs seconds)."""
    out = copy.copy(model)
    for name in ("scales_", "mixtures_", "residual_forests_", "measured_", "device_figures_"):
        setattr(out, name, dict(getattr(model, name)))
    return out


def _raw(model, rows: pd.DataFrame) -> np.ndarray:
    """The model's own prediction, measured configurations included (not replaced by their measurement)."""
    kept, model.measured_ = model.measured_, {}
    try:
        return model.predict(rows)
    finally:
        model.measured_ = kept


def cross_validated(model, rows: pd.DataFrame, variant: str, seed: int, folds: int = 5) -> tuple[float, float]:
    """(median |log error|, Spearman) of ``variant`` adapted on k - k/folds of ``rows`` and
    predicting the rest, over ``folds`` folds: what the k measured rows alone say of it."""
    from scipy.stats import spearmanr

    log_time = np.log(rows["time_median_ms"].to_numpy() / 1e3)
    held_out = np.full(len(rows), np.nan)
    order = np.random.default_rng(seed).permutation(len(rows))
    for fold in range(folds):
        test = order[fold::folds]
        fitted = adapted(model, rows.iloc[np.setdiff1d(order, test)], variant)
        held_out[test] = np.log(_raw(fitted, rows.iloc[test]))
    return float(np.median(np.abs(held_out - log_time))), float(spearmanr(held_out, log_time).correlation)


def judged(model, target: pd.DataFrame, measured: np.ndarray) -> tuple[float, float, float]:
    """(regret of predict's pick, regret of the raw prediction's pick, median % error off the measured rows)."""
    y_s = target["time_median_ms"].to_numpy() / 1e3
    predicted = model.predict(target)
    raw = _raw(model, target)
    error = float(np.median(np.abs(predicted[~measured] / y_s[~measured] - 1)) * 100)
    return y_s[np.argmin(predicted)] / y_s.min(), y_s[np.argmin(raw)] / y_s.min(), error


def main(argv: list[str] | None = None) -> int:
    from perfscope.models.few_shot import adapt_to_chosen
    from perfscope.models.param_forest import ParameterForestModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--cv-select", action="store_true", help="also pick the variant by CV on the k rows")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
    if caches_missing(args.folder):
        return 0
    rows = load(args.folder, None)
    rows["gpu"] = gpu_labels(rows)
    lines = []
    for gpu in sorted(rows["gpu"].unique()):
        start = time.perf_counter()
        base = rows[rows["gpu"] != gpu].reset_index(drop=True)
        target = rows[rows["gpu"] == gpu].reset_index(drop=True)
        model = ParameterForestModel(n_estimators=args.trees, n_jobs=args.n_jobs).fit(base)
        y_s = target["time_median_ms"].to_numpy()
        zero = y_s[np.argmin(model.predict(target))] / y_s.min()
        draws = [(f"random {s}", np.sort(np.random.default_rng(int(s)).choice(len(target), args.k, replace=False)))
                 for s in args.seeds.split(",")]
        draws.append(("chosen", adapt_to_chosen(copy.deepcopy(model), target, args.k)[1]))
        for draw, positions in draws:
            measured = np.zeros(len(target), dtype=bool)
            measured[positions] = True
            for variant in VARIANTS:
                regret, raw, error = judged(adapted(model, target.iloc[positions], variant), target, measured)
                cv_error, cv_spearman = (cross_validated(model, target.iloc[positions], variant, len(lines))
                                         if args.cv_select else (np.nan, np.nan))
                lines.append({"gpu": gpu, "draw": draw, "variant": variant, "zero_shot": zero, "regret": regret,
                              "regret_raw": raw, "median_pct_error": error,
                              "best_measured": y_s[positions].min() / y_s.min(),
                              "cv_error": cv_error, "cv_spearman": cv_spearman})
        print(f"{gpu}: {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(lines)
    table["kind"] = np.where(table["draw"] == "chosen", "chosen", "random")
    print(f"\nregret per GPU and draw, k = {args.k}, {args.trees} trees (predict's pick)")
    print(table.pivot_table(index=["gpu", "draw"], columns="variant", values="regret").to_string(
        float_format=lambda v: f"{v:.3f}"))
    print("\nmean over GPUs (and draws)")
    print(table.groupby(["kind", "variant"])[["zero_shot", "regret", "regret_raw", "median_pct_error",
                                               "best_measured"]].mean().to_string(float_format=lambda v: f"{v:.3f}"))
    if args.cv_select:
        for criterion in ("cv_error", "cv_spearman"):  # a constant held-out prediction has no Spearman: left out
            draws = table.dropna(subset=[criterion]).groupby(["kind", "gpu", "draw"])[criterion]
            chosen = table.loc[draws.idxmin() if criterion == "cv_error" else draws.idxmax()]
            print(f"\nvariant chosen per draw by {criterion} on the k rows (CV): mean regret / raw-pick regret")
            print(chosen.groupby("kind")[["regret", "regret_raw"]].mean().to_string(float_format=lambda v: f"{v:.3f}"))
            print("chosen:", chosen["variant"].value_counts().to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
