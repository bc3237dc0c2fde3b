"""Importers: measurements made elsewhere, as rows of perfscope's schema.

Each importer returns a ``pyarrow.Table`` with ``perfscope.schema.arrow_schema()``
whose rows say where they came from (``source = "import:<format>:<file name>"``);
``write_imported`` adds such a table to a profile dataset.
"""

from __future__ import annotations

from perfscope.importers.common import write_imported
from perfscope.importers.csv_mapping import import_csv, parse_mapping
from perfscope.importers.gpperf import import_gpperf
from perfscope.importers.kernel_tuner import import_kernel_tuner

__all__ = ["import_csv", "import_gpperf", "import_kernel_tuner", "parse_mapping", "write_imported"]
