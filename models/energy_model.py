"""Energy per call as idle power x time + joules per FLOP x FLOPs + joules per byte x bytes.

``EnergyModel`` fits, per group (device and dtype, falling back to the device, then to
all rows), the three non-negative coefficients of

    energy_gross_j = idle_power_w · time_s + j_per_flop · flops + j_per_byte · min_bytes

with ``scipy.optimize.nnls`` on rows with measured energy (``energy_is_estimate``
False, a real meter; ``energy_quality`` not ``"doubtful"`` unless
``include_doubtful_energy``). Rows are weighted by 1 / energy, so the fit minimises
relative error (energies span orders of magnitude; an absolute fit would only see the
largest kernels); columns are scaled to unit maximum before the solve.

Time is an input: ``predict(X, time_s=...)`` uses the given times, else the
``latency_model`` (fitted alongside, so the energy of a configuration never run can
be estimated), else the rows' measured time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from perfscope.columns import Columns, as_columns, columns_size, take
from perfscope.errors import InvalidInputError
from perfscope.models.efficiency import measured_energy_j, measured_latency_s, ok_mask
from perfscope.models.estimator_base import LightEstimator, LightRegressorMixin, check_is_fitted
from perfscope.work import work_and_traffic

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported by ``report`` only (it returns a DataFrame), scipy and scikit-learn
# by ``fit``: a loaded model predicts on column arrays (``perfscope estimate``) without them.

DEFAULT_ENERGY_LEVELS: tuple[tuple[str, ...], ...] = (("device_key", "dtype"), ("device_key",), ())
COEFFICIENTS = ("idle_power_w", "j_per_flop", "j_per_byte")


def fit_energy_coefficients(time_s: Any, flops: Any, min_bytes: Any, energy_j: Any) -> np.ndarray:
    """Non-negative (idle_power_w, j_per_flop, j_per_byte) minimising the relative error of
    idle·t + e_flop·F + e_byte·B against ``energy_j`` (``scipy.optimize.nnls``)."""
    from scipy.optimize import nnls  # heavy; only fitting needs it, estimates do not

    design = np.column_stack([np.asarray(x, dtype=float) for x in (time_s, flops, min_bytes)])
    energy = np.asarray(energy_j, dtype=float)
    weighted = design / energy[:, None]
    scale = np.max(np.abs(weighted), axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(weighted / scale, np.ones(len(energy)))
    return solution / scale


def _keys(rows: Columns, columns: Sequence[str]) -> np.ndarray:
    """One string key per row: the values of ``columns`` joined by U+001F (not NUL: numpy
    strips trailing NULs from strings), the empty string for no columns or a missing cell."""
    size = columns_size(rows)
    key = np.full(size, "", dtype=object)
    for i, c in enumerate(columns):
        if c not in rows:
            values = np.full(size, "", dtype=object)
        else:  # each distinct cell converted once (a column is mostly one device, one dtype)
            cells = np.asarray(rows[c], dtype=object)
            text = {v: "" if v is None or (isinstance(v, float) and v != v) else str(v)
                    for v in dict.fromkeys(cells.tolist())}
            values = (np.full(size, text[cells[0]], dtype=object) if len(text) == 1
                      else np.array([text[v] for v in cells.tolist()], dtype=object))
        key = values if i == 0 else key + "\x1f" + values
    return key


class EnergyModel(LightRegressorMixin, LightEstimator):
    """Energy per call (J) from time, FLOPs and bytes with fitted non-negative coefficients.

    Parameters: ``latency_model`` (an unfitted latency model, or None), ``include_doubtful_energy``,
    ``levels`` (groupings, finest first; ``()`` is all rows), ``min_group_rows``.

    Fitted: ``coefficients_`` (one dict per group: ``level``, ``keys`` (the values of the
    level's columns), ``idle_power_w``,
    ``j_per_flop``, ``j_per_byte``, ``n_rows``, ``median_abs_pct_error`` of the fit in
    percent), ``latency_model_`` (or None), ``n_rows_``, ``targets_`` (``("energy",)``: the
    latency model's own figures belong to it).
    """

    def __init__(self, latency_model: Any = None, include_doubtful_energy: bool = False,
                 levels: Sequence[Sequence[str]] = DEFAULT_ENERGY_LEVELS, min_group_rows: int = 8) -> None:
        self.latency_model = latency_model
        self.include_doubtful_energy = include_doubtful_energy
        self.levels = levels
        self.min_group_rows = min_group_rows

    def fit(self, X: Any, y: Any = None) -> EnergyModel:
        """Fit on the ok rows of ``X`` with usable measured energy (``y``: energy in J, default measured)."""
        from sklearn.base import clone  # seconds to import; only fitting needs it

        given = as_columns(X)
        rows = take(given, ok_mask(given)) if y is None else given
        energy = measured_energy_j(rows, self.include_doubtful_energy) if y is None else np.asarray(y, dtype=float)
        time_s = measured_latency_s(rows)
        flops, min_bytes = work_and_traffic(rows)
        usable = np.isfinite(energy) & (energy > 0) & np.isfinite(time_s) & np.isfinite(flops) & np.isfinite(min_bytes)
        if usable.sum() < max(self.min_group_rows, 3):
            doubtful = "" if self.include_doubtful_energy else " (rows marked doubtful are left out)"
            raise InvalidInputError(f"{int(usable.sum())} rows with measured energy{doubtful}: an energy model needs "
                                 f"at least {max(self.min_group_rows, 3)}; measure with an energy meter")
        fit_rows = take(rows, usable)
        t, f, b, e = time_s[usable], flops[usable], min_bytes[usable], energy[usable]
        records = []
        for level, columns in enumerate(self.levels):
            keys = _keys(fit_rows, columns)
            for key in dict.fromkeys(keys.tolist()):
                mine = keys == key
                if mine.sum() < self.min_group_rows:
                    continue
                coef = fit_energy_coefficients(t[mine], f[mine], b[mine], e[mine])
                fitted = coef[0] * t[mine] + coef[1] * f[mine] + coef[2] * b[mine]
                record: dict[str, Any] = {"level": level, "keys": key.split("\x1f") if columns else []}
                record.update(dict(zip(COEFFICIENTS, map(float, coef), strict=True)))
                record.update(n_rows=int(mine.sum()),
                              median_abs_pct_error=float(np.median(np.abs(fitted / e[mine] - 1))) * 100)
                records.append(record)
        self.coefficients_ = records
        self.latency_model_ = clone(self.latency_model).fit(given) if self.latency_model is not None else None
        self.n_rows_ = int(usable.sum())
        self.targets_ = ("energy",)
        return self

    def _coefficients_for(self, rows: Columns) -> np.ndarray:
        """(idle_power_w, j_per_flop, j_per_byte) per row: its finest level's group that was fitted."""
        size = columns_size(rows)
        out = np.full((size, 3), np.nan)
        unknown = (np.nan, np.nan, np.nan)
        for level, columns in enumerate(self.levels):
            todo = np.isnan(out[:, 0])
            if not todo.any():
                break
            table = {"\x1f".join(r["keys"]): tuple(float(r[c]) for c in COEFFICIENTS)
                     for r in self.coefficients_ if r["level"] == level}
            if not table:
                continue
            found = np.array([table.get(k, unknown) for k in _keys(rows, columns).tolist()],
                             dtype=float).reshape(size, 3)
            fill = todo & np.isfinite(found[:, 0])
            out[fill] = found[fill]
        return out

    def predict(self, X: Any, time_s: Any = None) -> np.ndarray:
        """Energy per call (J) per row; time from ``time_s``, else the latency model, else measured.

        ``X``: profile rows as columns or a DataFrame."""
        check_is_fitted(self)
        rows = as_columns(X)
        if time_s is not None:
            time_s = np.broadcast_to(np.asarray(time_s, dtype=float), (columns_size(rows),))
        elif self.latency_model_ is not None:
            time_s = np.asarray(self.latency_model_.predict(rows), dtype=float)
        else:
            time_s = measured_latency_s(rows)
            if np.isnan(time_s).all() and columns_size(rows):
                raise InvalidInputError("no time to predict energy from: give time_s, fit with a latency_model, "
                                     "or pass rows with a measured time_median_ms")
        flops, min_bytes = work_and_traffic(rows)
        coef = self._coefficients_for(rows)
        return coef[:, 0] * time_s + coef[:, 1] * flops + coef[:, 2] * min_bytes

    def predict_energy(self, X: Any, time_s: Any = None) -> np.ndarray:
        """Same as ``predict``: energy per call in J."""
        return self.predict(X, time_s)

    def predict_latency(self, X: Any) -> np.ndarray:
        """The latency model's prediction (s); only with a ``latency_model``."""
        check_is_fitted(self)
        if self.latency_model_ is None:
            raise InvalidInputError("this energy model has no latency model: it takes time as an input")
        return np.asarray(self.latency_model_.predict(X), dtype=float)

    def report(self) -> pd.DataFrame:
        """The fitted coefficients per group (see the class docstring)."""
        import pandas as pd  # kept off the light estimate path

        check_is_fitted(self)
        return pd.DataFrame([{"level": r["level"], **dict(zip(self.levels[r["level"]], r["keys"], strict=True)),
                              **{k: v for k, v in r.items() if k not in ("level", "keys")}}
                             for r in self.coefficients_])

    # -- persistence (a latency model is saved by perfscope.models.persistence) ----------
    def _to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        check_is_fitted(self)
        records = [{"level": int(r["level"]), "keys": [str(k) for k in r["keys"]],
                    **{c: float(r[c]) for c in COEFFICIENTS}, "n_rows": int(r["n_rows"]),
                    "median_abs_pct_error": float(r["median_abs_pct_error"])} for r in self.coefficients_]
        return {"params": {"include_doubtful_energy": self.include_doubtful_energy,
                           "levels": [list(c) for c in self.levels], "min_group_rows": self.min_group_rows},
                "coefficients": records, "n_rows": self.n_rows_}, {}

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], objects: Mapping[str, Any],
                    latency_model: Any = None) -> EnergyModel:
        params = dict(state["params"])
        params["levels"] = tuple(tuple(c) for c in params["levels"])
        model = cls(latency_model=latency_model, **params)
        model.coefficients_ = [{"level": int(r["level"]), "keys": [str(k) for k in r["keys"]],
                                **{c: float(r[c]) for c in COEFFICIENTS}, "n_rows": int(r["n_rows"]),
                                "median_abs_pct_error": float(r["median_abs_pct_error"])}
                               for r in state["coefficients"]]
        model.latency_model_ = latency_model
        model.n_rows_ = int(state["n_rows"])
        model.targets_ = ("energy",)
        return model
