"""``perfscope train`` and ``perfscope evaluate``: fit predictors, judge them on unseen shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perfscope import strict_json
from perfscope.cli_app import app
from perfscope.errors import UserInputError

Datasets = Annotated[list[Path], typer.Argument(help="One or more perfscope datasets.")]
Kernel = Annotated[list[str] | None, typer.Option(help="Only these kernel families.")]
Device = Annotated[list[str] | None, typer.Option(help="Only these device keys.")]
Dtype = Annotated[list[str] | None, typer.Option(help="Only these dtypes.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")]
IncludeContended = Annotated[bool, typer.Option(
    "--include-contended", help="Also use rows timed while another workload shared the device (status contended).")]


@app.command("train")
def train_command(
    datasets: Datasets,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model bundle directory to write.")],
    kernel: Kernel = None,
    device: Device = None,
    dtype: Dtype = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    include_contended: IncludeContended = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Fit the roofline, energy and forest models, print their grouped-split figures, save them."""
    from perfscope.models.training import train

    check_writable(out)  # before minutes of training, not after
    report = train(datasets, out_dir=out, kernels=kernel, devices=device, dtypes=dtype, seed=seed,
                   include_contended=include_contended, progress=None if quiet or as_json else _progress)
    if as_json:
        print(strict_json.dumps(report.to_dict()))
        return
    print(f"trained on {report.n_rows} rows, {report.n_shapes} shapes ({', '.join(report.kernels)}; "
          f"{', '.join(report.devices)}); saved to {report.out_dir}")
    print("judged on shapes held out of training (grouped 5-fold):")
    print(_table(report.evaluation))


def check_writable(out: Path) -> None:
    """``UserInputError`` unless a model bundle can be written at ``out``: it is a directory or
    can become one, and a file can be created in it (or in its nearest existing parent)."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file, not a directory")
    place = out
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise UserInputError(f"cannot write the model to {out}: {place} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as exc:
        raise UserInputError(f"cannot write the model to {out}: {exc.strerror or exc} ({place})") from None


@app.command("evaluate")
def evaluate_command(
    datasets: Datasets,
    split: Annotated[str, typer.Option(help="shape (unseen shapes, default), random or device.")] = "shape",
    folds: Annotated[int | None, typer.Option(help="Folds (default 5; 0 means leave one group out).")] = 5,
    kernel: Kernel = None,
    device: Device = None,
    dtype: Dtype = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    include_contended: IncludeContended = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Every model side by side: R^2, mean/median % error, share within 10%, interval coverage."""
    from perfscope.models.evaluation import to_records
    from perfscope.models.training import evaluate_datasets

    table = evaluate_datasets(datasets, split=split, n_splits=None if folds == 0 else folds, seed=seed,
                              kernels=kernel, devices=device, dtypes=dtype, include_contended=include_contended,
                              progress=None if quiet or as_json else _progress)
    if as_json:
        print(strict_json.dumps({"split": split, "results": to_records(table)}))
        return
    print(f"split: {split}")
    print(_table(table))


def _progress(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def _table(frame) -> str:
    columns = [c for c in ("model", "target", "r2", "mean_abs_pct_error", "median_abs_pct_error", "within_10pct",
                           "interval_coverage", "n_rows") if c in frame.columns]
    return frame[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}")
