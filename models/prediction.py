"""What a trained bundle predicts for configuration rows: latency with its interval, energy,
and (``estimate_rows``) the roofline model's explanation beside them.

``bundle_predictions`` works on column arrays without pandas (what ``perfscope estimate``
calls); ``estimate_rows`` frames the result for the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def bundle_predictions(bundle: Any, rows: Any, *, computed: Any = None) -> dict[str, np.ndarray]:
    """What a loaded bundle predicts for configuration rows (no times needed), as arrays.

    ``rows``: a DataFrame, or a mapping of column name -> array (then no pandas is
    imported; ``computed`` may then give ``(device, feature_columns(rows, device))`` that the
    caller already has, see ``perfscope.models.roofline_model.roofline_columns``). Keys:
    ``latency_s``, ``latency_low_s``, ``latency_high_s`` (the forest with its conformal
    interval), and ``energy_j`` (+ ``energy_low_j``, ``energy_high_j`` when the forest
    learnt energy; otherwise the energy model at the forest's latency, no interval; absent
    when the bundle has neither).
    """
    forest = bundle["forest"] if "forest" in bundle.models else bundle["param_forest"]
    # every target in one pass over the features
    predicted = (forest.predict_with_intervals(rows) if computed is None
                 else forest.predict_with_intervals(rows, computed=computed))
    latency, low, high = predicted["latency"]
    out = {"latency_s": latency, "latency_low_s": low, "latency_high_s": high}
    if "energy" in predicted:
        out["energy_j"], out["energy_low_j"], out["energy_high_j"] = predicted["energy"]
    elif "energy" in bundle.models:
        out["energy_j"] = bundle["energy"].predict(rows, time_s=latency)
    return out


def estimate_rows(bundle: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """Predictions of a loaded bundle (``load_bundle``) for configuration rows (no times needed).

    Columns: ``latency_s``, ``latency_low_s``, ``latency_high_s`` (forest with its
    interval), ``roofline_latency_s``, ``bound_time_s``, ``bound``, ``efficiency``
    (roofline), and ``energy_j`` (+ ``energy_low_j``, ``energy_high_j`` when the forest
    learnt energy; otherwise the energy model at the forest's latency, no interval):
    ``bundle_predictions`` with the roofline model's explanation.
    """
    import pandas as pd  # only here: bundle_predictions, on the estimate path, stays pandas-free

    predicted = bundle_predictions(bundle, rows)
    if "roofline" not in bundle.models:  # e.g. a kernel without FLOPs: no roofline explanation
        return pd.DataFrame({name: value for name, value in predicted.items()}, index=rows.index)
    explained = bundle["roofline"].estimator_.explain(rows)
    columns = {name: predicted[name] for name in ("latency_s", "latency_low_s", "latency_high_s")}
    columns.update({"roofline_latency_s": explained["latency_s"].to_numpy(),
                    "bound_time_s": explained["bound_time_s"].to_numpy(), "bound": explained["bound"].to_numpy(),
                    "efficiency": explained["efficiency"].to_numpy()})
    columns.update({name: value for name, value in predicted.items() if name.startswith("energy")})
    return pd.DataFrame(columns, index=rows.index)
