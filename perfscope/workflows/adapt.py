"""Few-shot on a new GPU after training: ``perfscope train ... --adapt DATASET``.

The trained bundle learns the new device from its measured rows
(``perfscope.models.adaptation.adapt_bundle``: the per-device part of the models that
can adapt) and is saved again in place.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from perfscope.errors import InvalidInputError
from perfscope.models.adaptation import adapt_bundle
from perfscope.workflows.train import select_rows

if TYPE_CHECKING:
    import pandas as pd


def adapt_trained(model_dir: str | os.PathLike[str], rows: pd.DataFrame, *, kernels: Sequence[str] | None = None,
                  dtypes: Sequence[str] | None = None, sample: int | None = None, seed: int = 0,
                  choose: str = "random") -> dict[str, Any]:
    """Adapt the bundle ``train`` saved at ``model_dir`` to ``rows`` (the kernel families and
    dtypes it was trained on; ``sample``: k ok rows per ``choose``, ``"random"`` (seeded) or
    ``"model"``, see ``perfscope.models.adaptation``). Returns the adaptation
    report; ``InvalidInputError`` says the bundle stays trained but not adapted."""
    try:
        return adapt_bundle(model_dir, select_rows(rows, kernels=kernels, dtypes=dtypes), sample=sample, seed=seed,
                            choose=choose)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{exc} (the trained bundle at {model_dir} is saved, not adapted)",
                                parameter=exc.parameter) from None
