"""Ranking figures of out-of-fold predictions, and groupings by tunable parameters.

An auto-tuner asks a model which configuration is fastest, so besides errors the
evaluation reports, within each *context* (rows that share everything but the tunable
parameters: kernel, shape, dtype and device):

* ``spearman``: the rank correlation of predicted and true times, averaged over the
  contexts with at least three rows;
* ``regret``: the true time of the configuration predicted fastest over the true best
  time, averaged over the contexts (1.0 is a perfect pick).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from perfscope.errors import UserInputError


def context_labels(rows: pd.DataFrame) -> np.ndarray:
    """One integer per context: shape (``evaluation.shape_groups``) and device."""
    from perfscope.models.evaluation import shape_groups

    device = rows["device_key"].astype(str).to_numpy() if "device_key" in rows else np.zeros(len(rows), dtype=str)
    shape = shape_groups(rows).astype(str)
    return pd.factorize(pd.Series(shape, dtype=object) + "\x00" + pd.Series(device, dtype=object))[0]


def parameter_groups(rows: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """One integer per distinct combination of the tunable parameters ``names`` (``--group-by``)."""
    from perfscope.models.param_features import parameters

    params = parameters(rows)
    missing = [n for n in names if n not in params]
    if missing:
        known = ", ".join(sorted(params)) or "none"
        raise UserInputError(f"--group-by names {', '.join(missing)}, which the rows do not have as parameters "
                             f"(they have: {known})")
    size = len(params[names[0]]) if names else 0
    keys = pd.Series(["\x00".join(str(params[n][i]) for n in names) for i in range(size)], dtype=object)
    return pd.factorize(keys)[0]


def most_varied_parameters(rows: pd.DataFrame, count: int = 2) -> list[str]:
    """The ``count`` tunable parameters with the most distinct values (ties by name): how a
    one-shape sweep is grouped when nothing else is asked."""
    from perfscope.models.param_features import parameters, tunable_names

    params = parameters(rows)
    varied = [(len({str(v) for v in params[n]}), n) for n in tunable_names(params)]
    varied = [item for item in varied if item[0] > 1]
    varied.sort(key=lambda item: (-item[0], item[1]))
    return [n for _, n in varied[:count]]


def ranking_figures(y_true: np.ndarray, y_pred: np.ndarray, contexts: np.ndarray) -> tuple[float, float]:
    """(mean Spearman within contexts, mean regret over contexts); NaN when undefined."""
    from scipy.stats import spearmanr

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
