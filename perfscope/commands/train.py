"""``perfscope train`` and ``perfscope evaluate``: fit predictors, judge them on unseen shapes."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from perfscope import strict_json
from perfscope.cli_app import app
from perfscope.cli_render import Renderer
from perfscope.errors import InvalidInputError

Datasets = Annotated[list[Path], typer.Argument(help="One or more perfscope datasets.")]
Kernel = Annotated[list[str] | None, typer.Option(help="Only these kernel families.")]
Device = Annotated[list[str] | None, typer.Option(help="Only these device keys.")]
Dtype = Annotated[list[str] | None, typer.Option(help="Only these dtypes.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")]
IncludeContended = Annotated[bool, typer.Option(
    "--include-contended", help="Also use rows timed while another workload shared the device (status contended).")]
Strict = Annotated[bool, typer.Option("--strict", help="Fail (exit 2) if any data file had to be skipped.")]
GroupBy = Annotated[str | None, typer.Option(
    "--group-by", help="Hold out unseen combinations of these tunable parameters (comma-separated), "
                       "e.g. block_size_x,block_size_y. Default: shapes; a one-shape sweep: its two most "
                       "varied parameters.")]


def _names(text: str | None) -> list[str] | None:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    return names or None


@app.command("train")
def train_command(
    datasets: Datasets,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model bundle directory to write.")],
    kernel: Kernel = None,
    device: Device = None,
    dtype: Dtype = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    include_contended: IncludeContended = False,
    strict: Strict = False,
    group_by: GroupBy = None,
    adapt: Annotated[list[Path] | None, typer.Option(
        help="Dataset(s) with k measured configurations of a new GPU: after training, adapt the model to it "
             "(its scale and, with >= 8 rows, a small residual forest) so the bundle predicts that GPU.")] = None,
    adapt_sample: Annotated[int | None, typer.Option(
        help="Adapt to this many ok rows of --adapt instead of all (see --adapt-choose).")] = None,
    adapt_choose: Annotated[str, typer.Option(
        help="Which --adapt-sample rows: random (seeded by --seed) or model (per GPU, the ones the trained model "
             "would have measured: mostly its predicted fastest, in two batches).")] = "random",
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Forest fitting threads (-1: every core).")] = -1,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Fit the roofline, energy and forest models, print their grouped-split figures, save them.

    Few-shot on a new GPU: `perfscope train base --out model --adapt new_gpu --adapt-sample 20`."""
    from perfscope.workflows.train import train  # when run (see perfscope/commands/__init__.py)

    if adapt_sample is not None and not adapt:
        raise InvalidInputError("--adapt-sample needs --adapt DATASET")
    # adapt_bundle checks these too: repeated here so a bad option fails before minutes of training
    if adapt_choose not in ("random", "model"):
        raise InvalidInputError(f"--adapt-choose must be random or model, got {adapt_choose!r}")
    if adapt_choose == "model" and adapt_sample is None:
        raise InvalidInputError("--adapt-choose model needs --adapt-sample K")
    if n_jobs == 0 or n_jobs < -1:
        raise InvalidInputError(f"--n-jobs must be -1 (every core) or a positive count, got {n_jobs}")
    check_writable(out)  # before minutes of training, not after
    rows, read = read_rows(datasets, strict=strict, as_json=as_json)
    adapt_rows = read_rows(adapt, strict=strict, as_json=as_json)[0] if adapt else None  # read before training
    report = train(rows, out_dir=out, kernels=kernel, devices=device, dtypes=dtype, seed=seed,
                   include_contended=include_contended, group_by=_names(group_by), n_jobs=n_jobs,
                   progress=None if quiet or as_json else _progress)
    adaptation = None
    if adapt_rows is not None:
        from perfscope.workflows.adapt import adapt_trained  # when run (see perfscope/commands/__init__.py)

        adaptation = adapt_trained(out, adapt_rows, kernels=kernel, dtypes=dtype, sample=adapt_sample, seed=seed,
                                   choose=adapt_choose)
    if as_json:
        print(strict_json.dumps({**report.to_dict(), "adaptation": adaptation, **_files_summary(read)}))
        return
    print(f"trained on {report.n_rows} rows, {report.n_shapes} shapes ({', '.join(report.kernels)}; "
          f"{', '.join(report.devices)}); saved to {report.out_dir}")
    held_out = (f"unseen ({', '.join(report.group_by)}) combinations" if report.group_by
                else "shapes held out of training")
    print(f"judged on {held_out} (grouped 5-fold):")
    print(_table(report.evaluation))
    for name, reason in report.skipped.items():
        print(f"{name}: not fitted: {reason}")
    if adaptation is not None:
        print(f"adapted {', '.join(adaptation['models'])} to {', '.join(adaptation['devices'])} with "
              f"{adaptation['n_rows']} measured rows; saved to {report.out_dir}")
        for name, reason in adaptation["not_adapted"].items():
            print(f"{name}: not adapted: {reason}")


def check_writable(out: Path) -> None:
    """``InvalidInputError`` unless a model bundle can be written at ``out``: it is a directory or
    can become one, and a file can be created in it (or in its nearest existing parent)."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file, not a directory")
    place = out
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise InvalidInputError(f"cannot write the model to {out}: {place} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as exc:
        raise InvalidInputError(f"cannot write the model to {out}: {exc.strerror or exc} ({place})") from None


@app.command("evaluate")
def evaluate_command(
    datasets: Datasets,
    split: Annotated[str, typer.Option(help="shape (unseen shapes, default), random, device, or extrapolate "
                                            "(train on FLOPs up to the 75th percentile, predict the rest).")] = "shape",
    folds: Annotated[int | None, typer.Option(help="Folds (default 5; 0 means leave one group out).")] = 5,
    kernel: Kernel = None,
    device: Device = None,
    dtype: Dtype = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    include_contended: IncludeContended = False,
    strict: Strict = False,
    group_by: GroupBy = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Every model side by side: R^2, mean/median % error, share within 10%, interval coverage."""
    from perfscope.workflows.train import evaluate_datasets, to_records  # when run (see commands/__init__.py)

    rows, read = read_rows(datasets, strict=strict, as_json=as_json)
    table = evaluate_datasets(rows, split=split, n_splits=None if folds == 0 else folds, seed=seed,
                              kernels=kernel, devices=device, dtypes=dtype, include_contended=include_contended,
                              group_by=_names(group_by), progress=None if quiet or as_json else _progress)
    groups = table.attrs.get("group_by")  # the parameters held out by combination (shape split only)
    if as_json:
        print(strict_json.dumps({"split": split, "group_by": groups, "results": to_records(table),
                                 **_files_summary(read)}))
        return
    print(f"split: {split}" + (f" (groups: unseen combinations of {', '.join(groups)})" if groups else ""))
    print(_table(table))


def read_rows(datasets: list[Path], *, strict: bool, as_json: bool) -> tuple[Any, Any]:
    """The datasets' rows as a DataFrame and the ``ReadResult`` (skipped files warned about
    as ``ls`` does; with ``strict``, any skipped file is an error)."""
    from perfscope.workflows.train import read_rows as read  # when run (see perfscope/commands/__init__.py)

    rows, result = read(datasets)
    Renderer(quiet=False, as_json=as_json).skipped_files(result.problems, strict=strict)
    return rows, result


def _files_summary(read: Any) -> dict[str, Any]:
    return {"files_read": read.files_read, "files_skipped": len(read.problems), "skipped_files": read.skipped_files()}


def _progress(message: str) -> None:
    print(message, file=sys.stderr)


def _table(frame) -> str:
    columns = [c for c in ("model", "target", "r2", "mean_abs_pct_error", "median_abs_pct_error", "within_10pct",
                           "spearman", "regret", "coverage", "n_rows", "reason") if c in frame.columns]
    return frame[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}")
