"""Ranking figures of out-of-fold predictions, and the parameters a one-shape sweep is grouped by.

An auto-tuner asks a model which configuration is fastest, so besides errors the
evaluation reports, within each *context* (rows that share everything but the tunable
parameters: kernel, shape, dtype and device):

* ``spearman``: the rank correlation of predicted and true times, averaged over the
  contexts with at least three rows;
* ``regret``: the true time of the configuration predicted fastest over the true best
  time, averaged over the contexts (1.0 is a perfect pick).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perfscope.models.param_features import parameters, tunable_names


def most_varied_parameters(rows: pd.DataFrame, count: int = 2) -> list[str]:
    """The ``count`` tunable parameters with the most distinct values (ties by name): how a
    one-shape sweep is grouped when nothing else is asked."""
    params = parameters(rows)
    varied = [(len({str(v) for v in params[n]}), n) for n in tunable_names(params)]
    varied = [item for item in varied if item[0] > 1]
    varied.sort(key=lambda item: (-item[0], item[1]))
    return [n for _, n in varied[:count]]


def ranking_figures(y_true: np.ndarray, y_pred: np.ndarray, contexts: np.ndarray) -> tuple[float, float]:
    """(mean Spearman within contexts, mean regret over contexts); NaN when undefined."""
    from scipy.stats import spearmanr  # heavy; only fitting needs it, estimates do not

    spearmans, regrets = [], []
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    for context in np.unique(contexts[ok]):
        mine = ok & (contexts == context)
        y, p = y_true[mine], y_pred[mine]
        if len(y) >= 1:
            regrets.append(float(y[np.argmin(p)] / np.min(y)))
        if len(y) >= 3 and np.ptp(y) > 0 and np.ptp(p) > 0:
            spearmans.append(float(spearmanr(y, p)[0]))
    return (float(np.mean(spearmans)) if spearmans else float("nan"),
            float(np.mean(regrets)) if regrets else float("nan"))
