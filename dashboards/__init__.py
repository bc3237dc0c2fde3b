"""The Dash dashboard.

``create_app(datasets, model_path)`` builds the app (pages: overview, roofline,
waterline / efficiency gap, scaling laws, carbon cost, tile explorer, estimate);
``serve(datasets, model_path, host, port)`` runs it, on 127.0.0.1 unless told otherwise.
Both import Dash only when called, so importing perfscope never pays for it. The figure
functions (``perfscope.dashboards.figures``) are pure: rows in, a plotly figure out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["create_app", "serve"]


def create_app(datasets: Sequence[Path | str] | None = None, model_path: Path | str | None = None,
               **kwargs: Any) -> Any:
    """Build the dashboard app (see ``perfscope.dashboards.app.create_app``)."""
    # loads dash and plotly; `import perfscope.dashboards` stays light
    from perfscope.dashboards.app import create_app as _create_app

    return _create_app(datasets, model_path, **kwargs)


def serve(datasets: Sequence[Path | str] | None = None, model_path: Path | str | None = None,
          host: str = "127.0.0.1", port: int = 8050) -> None:
    """Serve the dashboard (blocking) on ``host``:``port`` (see ``perfscope.dashboards.app.serve``)."""
    # loads dash and plotly; `import perfscope.dashboards` stays light
    from perfscope.dashboards.app import serve as _serve

    _serve(datasets, model_path, host=host, port=port)
