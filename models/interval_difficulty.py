"""How hard a row is to predict, for normalised conformal intervals (``perfscope.models.intervals``).

σ(x) = (s(x) + β)·(1 + γ·d(x)), the locally weighted conformal score of Lei et al. 2018
(section 5.2; β as the sensitivity term of Johansson et al. 2014):

* s(x): the standard deviation of the trees' predictions (log time): the trees
  disagree where the training data is thin;
* β: the median s over the calibration rows (keeps σ away from zero where the trees
  agree);
* d(x): how far x lies beyond the training data: per feature, the distance past the
  lowest or highest training value, in units of that span, weighted by the feature's
  importance. A forest predicts a constant beyond its data, so its error there grows
  with the distance (to first order, linearly), where the tree spread stays flat;
* γ (``distance_scale``, default 1): how strongly d widens σ. It is a fixed prior, not
  fitted: the training rows say little about errors far beyond them (docs/models.md,
  "Intervals", has the measurements).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def design_range(design: np.ndarray) -> list[list[float]]:
    """[lowest, highest] value of each feature column of a training design (what models keep as
    ``design_range_`` for ``forest_difficulty``), as JSON-ready lists."""
    design = np.asarray(design, dtype=float)
    return [design.min(axis=0).tolist(), design.max(axis=0).tolist()]


def out_of_range_distance(forest: Any, design: np.ndarray, value_range: Any = None) -> np.ndarray:
    """d(x) of each row of ``design`` (see module docstring): 0 inside the training values of
    every feature (``value_range``: ``design_range`` of the training design; without it, the
    span of the forest's split thresholds, which leaves out the extreme values)."""
    low, high = (np.asarray(v, dtype=float) for v in value_range) if value_range is not None \
        else forest.split_ranges()
    span = high - low
    usable = np.isfinite(span) & (span > 0)
    weights = forest.feature_importances if forest.feature_importances is not None else np.ones(len(span))
    weights = np.where(usable, weights, 0.0)
    if weights.sum() <= 0:
        return np.zeros(len(design))
    design = np.asarray(design, dtype=float)
    with np.errstate(invalid="ignore"):
        beyond = np.fmax(np.fmax(design - high, low - design), 0.0) / np.where(usable, span, 1.0)
    beyond = np.where(usable & np.isfinite(beyond), beyond, 0.0)
    return beyond @ (weights / weights.sum())


def forest_difficulty(forest: Any, design: np.ndarray, value_range: Any = None, output: int = 0) -> np.ndarray:
    """(rows, 2): the trees' spread of ``output`` (s) and the distance beyond the training values
    (d) per row of ``design``, for a ``ForestArrays`` whose ``output`` is a log time
    (``interval_difficulty``)."""
    return np.column_stack([forest.predict_spread(design, output),
                            out_of_range_distance(forest, design, value_range)])


def difficulty_scale(difficulty: np.ndarray, beta: float, distance_scale: float = 1.0) -> np.ndarray:
    """σ(x) = (s + β)·(1 + γ·d) per row of ``forest_difficulty`` output, γ = ``distance_scale``."""
    difficulty = np.asarray(difficulty, dtype=float)
    return (difficulty[:, 0] + beta) * (1.0 + distance_scale * difficulty[:, 1])


def spread_offset(spreads: np.ndarray) -> float:
    """β: the median tree spread of the calibration rows (1.0 when the trees always agree)."""
    finite = np.asarray(spreads, dtype=float)[np.isfinite(spreads)]
    beta = float(np.median(finite)) if len(finite) else 0.0
    return beta if beta > 0 else 1.0
