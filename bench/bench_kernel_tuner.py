"""Predictor figures on real auto-tuning data: Kernel Tuner dedispersion caches on six GPUs.

Imports every ``*.json.gz`` of the folder as shipped (with the T1 file when present) and
prints, for ``ParameterForestModel`` and the bar to beat (a plain
``RandomForestRegressor(n_estimators=60)`` on the raw parameters, log time), per GPU:

* unseen (block_size_x, block_size_y) groups, 5-fold (what matters for an auto-tuner);
* leave one GPU out: zero-shot, and with k = 10, 20, 50 measured configurations of the
  held-out GPU (``adapt``): k drawn at random (``+{k}shot``) and k chosen by the model
  (``+{k}shot_chosen``: ``perfscope.models.few_shot.adapt_to_chosen``, two batches, mostly
  the predicted fastest), with each held-out GPU's regret. Error figures leave the k
  measured rows out; regret counts them (the adapted model predicts them as measured).

    python bench/bench_kernel_tuner.py [--folder DIR] [--trees 200] [--n-jobs 2] [--gpus A100,W6600]
        [--sample-per-gpu N] [--device-features kind|spec|none]

``--sample-per-gpu N`` evaluates N configurations drawn at random per GPU (seed 0) instead
of all of them: faster, and regret is then over the best of the sample.

Timing is wall-clock on whatever machine runs it (shared machines say so).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "kernel_tuner" / "dedispersion_milo"
COLUMNS = ["model", "n_predicted", "median_abs_pct_error", "r2", "spearman", "regret", "coverage",
           "interval_width_median", "reason"]


class PlainForest:
    """The bar to beat: RandomForestRegressor(n_estimators=60) on the raw tunable parameters, log time."""

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict:
        return {"random_state": self.random_state}

    def set_params(self, **params) -> PlainForest:
        self.random_state = params.get("random_state", self.random_state)
        return self

    def _design(self, rows) -> np.ndarray:
        return rows[[c for c in rows.columns if c.startswith("param_")]].to_numpy(dtype=float)

    def fit(self, rows, y=None) -> PlainForest:
        from sklearn.ensemble import RandomForestRegressor

        self.forest_ = RandomForestRegressor(n_estimators=60, random_state=self.random_state, n_jobs=2)
        self.forest_.fit(self._design(rows), np.log(rows["time_median_ms"].to_numpy() / 1e3))
        return self

    def predict(self, rows) -> np.ndarray:
        return np.exp(self.forest_.predict(self._design(rows)))


def load(folder: Path, gpus: list[str] | None) -> pd.DataFrame:
    import pyarrow as pa

    from perfscope.importers import import_kernel_tuner

    t1 = next(iter(folder.glob("*.T1.json")), None)
    paths = [p for p in sorted(folder.glob("*.json.gz")) if not gpus or p.name.split(".")[0] in gpus]
    tables = [import_kernel_tuner(p, t1=t1) for p in paths]
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def caches_missing(folder: Path, option: str = "--folder") -> bool:
    """True (and says so) when ``folder`` holds no caches to bench: the bench is skipped."""
    if folder.is_dir():
        return False
    print(f"Kernel Tuner caches not found at {folder}: skipped (pass {option} DIR)")
    return True


def gpu_labels(rows: pd.DataFrame) -> list[str]:
    """Each row's GPU as its cache's file stem (``A100`` for ``...:A100.json.gz``)."""
    return [Path(str(s).split(":")[-1]).name.split(".")[0] for s in rows["source"]]


def per_device_regret(predictions: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Model x held-out device: regret of the pick (one context per device: one problem size)."""
    from perfscope.models.efficiency import ok_rows

    devices = ok_rows(rows)["device_key"].astype(str).to_numpy()  # ``row`` is a position among the ok rows
    regrets = {}
    for (model, _fold), part in predictions.groupby(["model", "fold"], sort=False):
        y, p = part["y_true"].to_numpy(dtype=float), part["y_pred"].to_numpy(dtype=float)
        device = devices[int(part["row"].iloc[0])].removeprefix("cuda-nvidia-").removeprefix("rocm-amd-")
        regrets[(model, device)] = y[np.argmin(p)] / y.min()
    return pd.Series(regrets).unstack()


def main(argv: list[str] | None = None) -> int:
    from sklearn.base import clone  # noqa: F401  (the evaluation clones models)

    from perfscope.models.evaluation import cross_validated_predictions, evaluate, summarize
    from perfscope.models.param_forest import ParameterForestModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--gpus", default="", help="comma-separated file stems (default: all)")
    parser.add_argument("--sample-per-gpu", type=int, default=0, help="configurations drawn per GPU (0: all)")
    parser.add_argument("--device-features", default="kind", choices=("kind", "spec", "none"),
                        help="device figures the parameter forest sees (ParameterForestModel.device_features)")
    parser.add_argument("--skip-device", action="store_true")
    parser.add_argument("--skip-grouped", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
    if caches_missing(args.folder):
        return 0
    from perfscope.hostload import ForeignLoad

    load_share = ForeignLoad()
    load_share.start()
    start = time.perf_counter()
    rows = load(args.folder, [g for g in args.gpus.split(",") if g])
    if args.sample_per_gpu > 0:
        rows = pd.concat([part.sample(min(args.sample_per_gpu, len(part)), random_state=0)
                          for _, part in rows.groupby("device_key", sort=False)], ignore_index=True)
    print(f"# imported {len(rows)} rows, {rows['device_key'].nunique()} GPUs in {time.perf_counter() - start:.0f} s")
    models = {"param_forest": ParameterForestModel(n_estimators=args.trees, n_jobs=args.n_jobs,
                                                         device_features=args.device_features),
              "plain_rf60": PlainForest()}
    per_gpu = []
    for device in [] if args.skip_grouped else rows["device_key"].unique():
        start = time.perf_counter()
        table = evaluate(models, rows[rows["device_key"] == device].reset_index(drop=True), split="shape",
                         n_splits=5, group_by=["block_size_x", "block_size_y"])
        print(f"\n## {device}: unseen (block_size_x, block_size_y), 5-fold ({time.perf_counter() - start:.0f} s)")
        print(table[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        per_gpu.append(table.assign(device=device))
    if per_gpu:
        grouped = pd.concat(per_gpu)
        figures = ["median_abs_pct_error", "r2", "spearman", "regret", "coverage", "interval_width_median"]
        print("\n## mean over GPUs, unseen (block_size_x, block_size_y) groups (targets: median <= 2.5%, "
              "Spearman >= 0.90, regret <= 1.03)")
        print(grouped.groupby("model")[figures].mean().to_string(float_format=lambda v: f"{v:.3f}"))
    if not args.skip_device:
        start = time.perf_counter()
        predictions = cross_validated_predictions({"param_forest": models["param_forest"]}, rows, split="device",
                                                  targets=("latency",))
        table = summarize(predictions)
        print(f"\n## leave one GPU out: zero-shot and k-shot ({time.perf_counter() - start:.0f} s; targets zero-shot "
              "median <= 20%, regret <= 1.10; 20 configurations: median <= 5%, regret <= 1.05)")
        print(table[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print("\n## regret per held-out GPU (true time of the predicted fastest over the true best)")
        print(per_device_regret(predictions, rows).to_string(float_format=lambda v: f"{v:.3f}"))
    share = load_share.share()
    print(f"\n# other processes' share of all CPUs over the run: {'unknown' if share is None else f'{share:.0%}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
