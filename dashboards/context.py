"""What every page's callbacks share: the data, the loaded model, and the shipped tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perfscope.dashboards.data import DashboardData


@dataclass
class DashboardContext:
    """The data one app serves and the model it compares against (if any)."""

    data: DashboardData
    model: Any | None = None
    model_note: str = ""
    model_path: str = ""
