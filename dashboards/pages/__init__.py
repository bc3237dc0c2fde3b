"""The dashboard's pages, registered from code by ``perfscope.dashboards.app.create_app``.

Each module has ``KEY``, ``PATH``, ``NAME``, ``ORDER``, a ``layout(**query)`` that
depends on no app (Dash keeps registered pages in one process-wide registry) and
``register(app, context) -> dict`` that adds its callbacks to one app and returns them
by name (tests call them directly).
"""

from __future__ import annotations

from perfscope.dashboards.pages import carbon, efficiency, energy, estimate, overview, roofline, scaling, tiles

PAGES = (overview, roofline, efficiency, scaling, carbon, energy, tiles, estimate)
