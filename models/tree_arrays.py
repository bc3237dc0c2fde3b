"""Regression forests as plain numpy arrays: export from scikit-learn, validate, predict without it.

``export_forest`` turns a fitted ``RandomForestRegressor`` (or ``ExtraTreesRegressor``),
single- or multi-output, into a ``ForestArrays``: every tree's nodes concatenated
(``tree_offsets[t]`` is the first node of tree ``t``; child indices stay local to their
tree, -1 for a leaf, as in ``sklearn.tree._tree.Tree``). ``ForestArrays.predict`` (and
the module's ``predict``) gives scikit-learn's predictions to the last bit, with numpy
only, by doing what scikit-learn does:

* X is cast to float32 (``validate_data(..., dtype=np.float32)``), and a row goes left
  where ``x <= threshold`` with the float32 value promoted to the float64 threshold
  (``Tree._apply_dense``); a NaN goes where ``missing_go_to_left`` says. Comparing
  ``x`` with the largest float32 not above the threshold is the same test, done in
  float32 here;
* the forest's prediction is the tree values summed in tree order from zero, then
  divided by the number of trees (``ForestRegressor.predict`` with one job).

Traversal is vectorised over rows and trees and loops over depth (every (tree, row)
pair steps down one level per iteration; leaves point to themselves). A tree's
output depends only on which side of each of its thresholds every feature falls, so
large batches are first reduced to the distinct rows of threshold bins and only those
are traversed (exact: rows with equal bins reach the same leaves in every tree).

``ForestArrays`` validates its arrays on construction (shapes, dtypes, every child
index inside its tree and after its parent, one parent per node, leaves marked on both
sides, split features in range, finite values) and refuses bad ones with
``perfscope.models.persistence.ModelFileError``: a loaded file can describe at worst a
wrong forest, never an out-of-bounds read or an endless walk. ``export_forest``'s arrays,
taken from a forest scikit-learn just fitted, are trusted (cast, not checked), and the
walk's tables are built on first prediction: a forest that is only saved costs neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from perfscope.errors import InvalidInputError, ModelFileError

FIELDS = ("tree_offsets", "children_left", "children_right", "feature", "threshold", "value",
          "missing_go_to_left", "n_features", "feature_importances")
"""The arrays of a ``ForestArrays`` (``to_arrays``/``from_arrays``), all of plain dtypes."""

LEAF = -1  # children of a leaf (sklearn's _TREE_LEAF)
UNDEFINED = -2  # feature of a leaf (sklearn's _TREE_UNDEFINED)
DEDUPLICATE_MIN_ROWS = 256  # below this, binning costs more than it saves
PAIRS_PER_CHUNK = 1 << 18  # (tree, row) pairs walked at once: a few MB per buffer, cache-friendly


def _refuse(name: str, problem: str) -> None:
    raise ModelFileError(f"{name}: {problem}: the file is corrupt or crafted; do not use it (retrain the model)")


class ForestArrays:
    """A fitted regression forest as arrays; ``predict`` needs numpy only (see module docstring).

    Attributes: ``n_trees``, ``n_outputs``, ``n_features``, ``node_count``, ``max_depth``
    (deepest leaf, root at 0), ``feature_importances`` (scikit-learn's impurity
    importances at export, or None), and the arrays of ``FIELDS``.
    """

    def __init__(self, *, tree_offsets: Any, children_left: Any, children_right: Any, feature: Any, threshold: Any,
                 value: Any, missing_go_to_left: Any, n_features: Any, feature_importances: Any = None,
                 name: str = "forest", trusted: bool = False) -> None:
        given = dict(tree_offsets=tree_offsets, children_left=children_left, children_right=children_right,
                     feature=feature, threshold=threshold, value=value, missing_go_to_left=missing_go_to_left,
                     n_features=n_features, feature_importances=feature_importances)
        # ``trusted``: arrays just taken from a fitted scikit-learn forest (export_forest), not
        # read from a file: only cast, not checked (the checks cost seconds on millions of nodes)
        arrays = _canonical(given) if trusted else _validated(given, name)
        self.tree_offsets: np.ndarray = arrays["tree_offsets"]
        self.children_left: np.ndarray = arrays["children_left"]
        self.children_right: np.ndarray = arrays["children_right"]
        self.feature: np.ndarray = arrays["feature"]
        self.threshold: np.ndarray = arrays["threshold"]
        self.value: np.ndarray = arrays["value"]
        self.missing_go_to_left: np.ndarray = arrays["missing_go_to_left"]
        self.n_features = int(arrays["n_features"])
        self.feature_importances: np.ndarray | None = arrays["feature_importances"]
        self.n_trees = len(self.tree_offsets) - 1
        self.node_count = len(self.feature)
        self.n_outputs = self.value.shape[1]
        self.max_depth = _max_depth(self)
        self._prepared = False  # the walk's tables: built on first use (a forest only saved needs none)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], name: str = "forest") -> ForestArrays:
        """A forest from ``to_arrays`` output (as read from a file); ``ModelFileError`` if malformed."""
        unknown = sorted(set(arrays) - set(FIELDS))
        if unknown:
            _refuse(name, f"unexpected arrays {', '.join(unknown)}")
        missing = [f for f in FIELDS if f not in arrays and f != "feature_importances"]
        if missing:
            _refuse(name, f"missing arrays {', '.join(missing)}")
        return cls(**{f: arrays.get(f) for f in FIELDS}, name=name)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The forest as named arrays of plain dtypes (no objects: loadable with ``allow_pickle=False``)."""
        out = {f: getattr(self, f) for f in FIELDS if f != "n_features"}
        out["n_features"] = np.array(self.n_features, dtype=np.int64)
        if self.feature_importances is None:
            del out["feature_importances"]
        return out

    def __repr__(self) -> str:
        return (f"ForestArrays(n_trees={self.n_trees}, n_outputs={self.n_outputs}, n_features={self.n_features}, "
                f"node_count={self.node_count}, max_depth={self.max_depth})")

    # -- prediction -------------------------------------------------------------------
    def _prepare(self) -> None:
        """Global tables for the walk: leaves loop to themselves; float32 thresholds; bin edges."""
        nodes = np.arange(self.node_count)
        tree_of = np.repeat(np.arange(self.n_trees), np.diff(self.tree_offsets))
        base = self.tree_offsets[:-1][tree_of]
        leaf = self.children_left == LEAF
        left = np.where(leaf, nodes, self.children_left + base)
        right = np.where(leaf, nodes, self.children_right + base)
        self._children = np.column_stack([left, right]).ravel().astype(np.intp)  # [2 * node + goes_right]
        self._feature = np.where(leaf, 0, self.feature).astype(np.intp)
        self._threshold32 = _float32_at_most(np.where(leaf, 0.0, self.threshold))
        self._nan_left = self.missing_go_to_left.astype(bool) & ~leaf
        self._roots = self.tree_offsets[:-1].astype(np.intp)
        internal = ~leaf
        self._edges = {int(f): np.unique(self.threshold[internal & (self.feature == f)])
                       for f in np.unique(self.feature[internal])}
        self._prepared = True

    def _check_X(self, X: Any) -> np.ndarray:
        if not self._prepared:
            self._prepare()
        X32 = np.asarray(X, dtype=np.float32)
        if X32.ndim != 2 or X32.shape[1] != self.n_features:
            raise InvalidInputError(f"X has shape {X32.shape}; this forest takes (rows, {self.n_features})")
        return np.ascontiguousarray(X32)

    def apply(self, X: Any) -> np.ndarray:
        """The leaf each row reaches in each tree: (rows, trees) node indices local to each tree
        (scikit-learn's ``forest.apply``)."""
        X32 = self._check_X(X)
        leaves = np.empty((self.n_trees, len(X32)), dtype=np.intp)
        for start, stop in _chunks(len(X32), self.n_trees):
            leaves[:, start:stop] = self._walk(X32[start:stop])
        return (leaves - self._roots[:, None]).T

    def predict(self, X: Any) -> np.ndarray:
        """Mean of the trees' leaf values per row: (rows,) for one output, (rows, outputs) otherwise,
        float64, equal to scikit-learn's ``predict`` on the forest this was exported from."""
        X32 = self._check_X(X)
        inverse = None
        if len(X32) >= DEDUPLICATE_MIN_ROWS:
            first, inverse = self._distinct_bins(X32)
            X32 = X32[first]
        out = np.empty((len(X32), self.n_outputs))
        for start, stop in _chunks(len(X32), self.n_trees):
            leaves = self._walk(X32[start:stop])
            # summed over trees in tree order from zero, as ForestRegressor.predict does
            # (a reduction over the outer axis adds whole rows one after another)
            total = self.value.take(leaves.ravel(), axis=0).reshape(self.n_trees, stop - start, self.n_outputs)
            out[start:stop] = np.add.reduce(total, axis=0, initial=0.0)
        out /= self.n_trees
        if inverse is not None:
            out = out[inverse]
        return out[:, 0] if self.n_outputs == 1 else out

    def predict_spread(self, X: Any, output: int = 0) -> np.ndarray:
        """Standard deviation over the trees of their predictions of ``output``, per row: how much
        the trees disagree (same binning shortcut as ``predict``)."""
        X32 = self._check_X(X)
        inverse = None
        if len(X32) >= DEDUPLICATE_MIN_ROWS:
            first, inverse = self._distinct_bins(X32)
            X32 = X32[first]
        out = np.empty(len(X32))
        column = self.value[:, output]
        for start, stop in _chunks(len(X32), self.n_trees):
            out[start:stop] = column.take(self._walk(X32[start:stop])).std(axis=0)
        return out[inverse] if inverse is not None else out

    def split_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lowest, highest) split threshold of each feature over all trees (NaN for a feature never
        split on): the span of the training data the forest can tell apart."""
        low = np.full(self.n_features, np.nan)
        high = np.full(self.n_features, np.nan)
        if not self._prepared:
            self._prepare()
        for f, edges in self._edges.items():  # sorted distinct thresholds per feature
            low[f], high[f] = edges[0], edges[-1]
        return low, high

    def _walk(self, X32: np.ndarray) -> np.ndarray:
        """(trees, rows) global leaf indices: every pair steps one level per iteration."""
        n_rows = len(X32)
        flat = X32.ravel()
        row_base = (np.arange(n_rows, dtype=np.intp) * self.n_features)[None, :]
        node = np.repeat(self._roots[:, None], n_rows, axis=1)
        step = np.empty_like(node)
        x = np.empty(node.shape, dtype=np.float32)
        threshold = np.empty_like(x)
        goes_right = np.empty_like(node)  # 0 or 1, as an index offset
        has_nan = bool(np.isnan(flat).any())
        # preallocated buffers and mode="clip" (indices are valid by construction): no
        # temporaries and no buffered copies in the loop
        for _ in range(self.max_depth):
            np.take(self._feature, node, out=step, mode="clip")
            step += row_base
            np.take(flat, step, out=x, mode="clip")
            np.take(self._threshold32, node, out=threshold, mode="clip")
            np.greater(x, threshold, out=goes_right, casting="unsafe")
            if has_nan:  # NaN compares false: it goes where missing_go_to_left says
                goes_right |= np.isnan(x) & ~self._nan_left.take(node)
            np.multiply(node, 2, out=step)
            step += goes_right
            np.take(self._children, step, out=node, mode="clip")
        return node

    def _distinct_bins(self, X32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index of one row per distinct bin vector, inverse mapping every row to it).

        A feature's bin is the number of its split thresholds below the value (NaN its own
        bin): ``x <= t`` for every threshold ``t`` follows from it. Bin vectors are packed
        into one integer per row by mixed radix, re-numbered densely whenever the next
        radix could overflow int64.
        """
        key = np.zeros(len(X32), dtype=np.int64)
        span = 1
        for f, edges in self._edges.items():
            values = X32[:, f].astype(np.float64)
            bins = np.searchsorted(edges, values, side="left")
            bins[np.isnan(values)] = len(edges) + 1
            radix = len(edges) + 2
            if span > np.iinfo(np.int64).max // radix:
                _, key = np.unique(key, return_inverse=True)
                span = int(key.max()) + 1
            key = key * radix + bins
            span *= radix
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return first, inverse.reshape(-1)


def predict(forest: ForestArrays, X: Any) -> np.ndarray:
    """``forest.predict(X)``: scikit-learn's prediction of the exported forest, with numpy only."""
    return forest.predict(X)


def export_forest(forest: Any) -> ForestArrays:
    """A fitted scikit-learn ``RandomForestRegressor`` or ``ExtraTreesRegressor`` as ``ForestArrays``."""
    # scikit-learn: seconds to import; only fitting needs it
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(forest, (RandomForestRegressor, ExtraTreesRegressor)):
        raise InvalidInputError(f"cannot export a {type(forest).__name__}: only averaging regression forests "
                             "(RandomForestRegressor, ExtraTreesRegressor)")
    check_is_fitted(forest)
    trees = [estimator.tree_ for estimator in forest.estimators_]
    counts = [t.node_count for t in trees]
    return ForestArrays(
        tree_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        children_left=np.concatenate([t.children_left for t in trees]),
        children_right=np.concatenate([t.children_right for t in trees]),
        feature=np.concatenate([t.feature for t in trees]),
        threshold=np.concatenate([t.threshold for t in trees]),
        value=np.concatenate([t.value[:, :, 0] for t in trees]),
        missing_go_to_left=np.concatenate([t.missing_go_to_left for t in trees]).astype(np.uint8),
        n_features=forest.n_features_in_, feature_importances=forest.feature_importances_, trusted=True)


# ---- helpers ------------------------------------------------------------------------------

def _float32_at_most(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 threshold: for a float32 x,
    ``x <= t`` (x promoted to float64) exactly when ``x <= result``."""
    with np.errstate(over="ignore"):
        t32 = threshold.astype(np.float32)
    above = t32.astype(np.float64) > threshold
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _chunks(n_rows: int, n_trees: int) -> list[tuple[int, int]]:
    step = max(1, PAIRS_PER_CHUNK // max(n_trees, 1))
    return [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)] or [(0, 0)]


def _array(arrays: Mapping[str, Any], field: str, kind: str, ndim: int, name: str) -> np.ndarray:
    value = arrays[field]
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.dtype.kind not in kind or value.ndim != ndim:
        _refuse(name, f"array {field} has dtype {value.dtype} and {value.ndim} dimensions; expected "
                      f"{ndim} dimension(s) of kind {kind!r}")
    return value


def _canonical(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Trusted arrays in the canonical dtypes of ``_validated``, unchecked."""
    importances = arrays.get("feature_importances")
    dtypes = {"tree_offsets": np.int64, "children_left": np.int64, "children_right": np.int64, "feature": np.int64,
              "threshold": np.float64, "value": np.float64, "missing_go_to_left": np.uint8}
    out: dict[str, Any] = {field: np.asarray(arrays[field]).astype(dtype, copy=False)
                           for field, dtype in dtypes.items()}
    out["n_features"] = int(arrays["n_features"])
    out["feature_importances"] = None if importances is None else np.asarray(importances, dtype=np.float64)
    return out


def _validated(arrays: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Arrays in canonical dtypes after every structural check (``ModelFileError`` otherwise)."""
    offsets = _array(arrays, "tree_offsets", "iu", 1, name).astype(np.int64)
    left = _array(arrays, "children_left", "iu", 1, name).astype(np.int64)
    right = _array(arrays, "children_right", "iu", 1, name).astype(np.int64)
    feature = _array(arrays, "feature", "iu", 1, name).astype(np.int64)
    threshold = _array(arrays, "threshold", "f", 1, name).astype(np.float64)
    value = _array(arrays, "value", "f", 2, name).astype(np.float64)
    nan_left = _array(arrays, "missing_go_to_left", "biu", 1, name).astype(np.uint8)
    n_features_array = _array(arrays, "n_features", "iu", 0, name)
    n_features = int(n_features_array)
    importances = None
    if arrays.get("feature_importances") is not None:
        importances = _array(arrays, "feature_importances", "f", 1, name).astype(np.float64)
    n_nodes = len(feature)
    if not (len(left) == len(right) == len(threshold) == len(value) == len(nan_left) == n_nodes):
        _refuse(name, "node arrays of different lengths")
    if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != n_nodes or np.any(np.diff(offsets) < 1):
        _refuse(name, "tree offsets do not split the nodes into non-empty trees")
    if n_features < 1 or value.shape[1] < 1:
        _refuse(name, "no features or no outputs")
    if importances is not None and (importances.shape != (n_features,) or not np.isfinite(importances).all()):
        _refuse(name, "feature importances do not match the features")
    tree_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    local = np.arange(n_nodes) - offsets[:-1][tree_of]
    size = np.diff(offsets)[tree_of]
    leaf = left == LEAF
    internal = ~leaf
    # a child comes after its parent inside the same tree: no cycle, no jump between trees
    bad_child = internal & ((left <= local) | (left >= size) | (right <= local) | (right >= size))
    if (leaf != (right == LEAF)).any() or bad_child.any():
        _refuse(name, "a decision tree has out-of-range node indices")
    if (internal & ((feature < 0) | (feature >= n_features))).any() or (leaf & (feature != UNDEFINED)).any():
        _refuse(name, "a decision tree splits on a feature out of range, or a leaf names a feature")
    parents = np.bincount(np.concatenate([(left + offsets[:-1][tree_of])[internal],
                                          (right + offsets[:-1][tree_of])[internal]]), minlength=n_nodes)
    if (parents != (local > 0)).any():
        _refuse(name, "a decision tree node has no parent or several (not a tree)")
    if np.isnan(threshold[internal]).any() or not np.isfinite(value).all() or (nan_left > 1).any():
        _refuse(name, "a decision tree has a NaN threshold, a non-finite value or a bad missing-value flag")
    return {"tree_offsets": offsets, "children_left": left, "children_right": right, "feature": feature,
            "threshold": threshold, "value": value, "missing_go_to_left": nan_left,
            "n_features": n_features, "feature_importances": importances}


def _max_depth(forest: ForestArrays) -> int:
    """Depth of the deepest leaf (root at 0), level by level over all trees at once."""
    left = forest.children_left
    right = forest.children_right
    base = np.repeat(forest.tree_offsets[:-1], np.diff(forest.tree_offsets))
    frontier = forest.tree_offsets[:-1]
    depth = 0
    while True:
        inner = frontier[left[frontier] != LEAF]
        if len(inner) == 0:
            return depth
        frontier = np.concatenate([left[inner] + base[inner], right[inner] + base[inner]])
        depth += 1
