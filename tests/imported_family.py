"""A small imported Kernel Tuner family and a parameter-forest bundle trained on it (few
trees: fast), shared by the workflow, callback and browser tests of imported families."""

from __future__ import annotations

from pathlib import Path

from test_best_config import _bundle_of  # noqa: E402 (tests/ is on sys.path)
from test_kernel_tuner_import import _cache  # noqa: E402

from perfscope.importers import import_kernel_tuner, write_imported

FAMILY = "dedisp"
DEVICE = "NVIDIA RTX A4000"
PROBLEM = "1000,64"


def imported_family(tmp: Path, trees: int = 8) -> tuple[Path, Path]:
    """(dataset, model bundle) of the 12-configuration ``dedisp`` cache on an RTX A4000
    (time 0.1 x block_size_x + tile_size_x ms: block_size_x=1, tile_size_x=1 is fastest)."""
    table = import_kernel_tuner(_cache(tmp / "cache.json", kernel_name=FAMILY, device_name=DEVICE))
    dataset = tmp / "dataset"
    write_imported(table, dataset)
    model = _bundle_of(table.to_pandas(), tmp / "model", trees=trees)
    return dataset, Path(model)
