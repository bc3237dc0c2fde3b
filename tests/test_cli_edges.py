"""Command-line edges: huge integers, strict JSON, unwritable outputs, absent meters and
datasets, and Ctrl-C during a sweep."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfscope import strict_json
from perfscope.store import ProfileStore

REPO = Path(__file__).resolve().parents[1]


def _perfscope(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfscope", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _one_line_error(done: subprocess.CompletedProcess, code: int = 2) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def _strict_loads(text: str):
    def refuse(constant: str):
        raise AssertionError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_strict_json_turns_non_finite_numbers_into_null():
    import numpy as np

    text = strict_json.dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float64("nan"),
                              "d": np.int64(3), "e": (1, 2), "f": Path("/x")})
    assert _strict_loads(text) == {"a": None, "b": [None, 1.5], "c": None, "d": 3, "e": [1, 2], "f": "/x"}


def test_estimate_refuses_integers_past_int64():
    err = _one_line_error(_perfscope("estimate", "gemm", "--m", "9223372036854775808", "--n", "4", "--k", "4",
                                     "--device", "h100-sxm"))
    assert "64-bit" in err


def test_estimate_json_is_strict_where_energy_is_unknown():
    done = _perfscope("estimate", "gemm", "--m", "64", "--n", "64", "--k", "64", "--device", "cpu-amd-epyc", "--json")
    assert done.returncode == 0, done.stderr
    result = _strict_loads(done.stdout)
    assert result["energy_j"] is None and result["latency_s"] > 0


def test_train_refuses_an_unwritable_out_before_training(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file / "model", a_file, Path("/proc/perfscope-model")):
        start = time.perf_counter()
        err = _one_line_error(_perfscope("train", str(REPO / "data" / "samples" / "cpu-quick"), "--out", str(out)))
        assert "cannot write the model" in err or "is a file" in err
        assert time.perf_counter() - start < 60  # refused at once, not after training
    assert not (tmp_path / "file" / "model").exists()


def test_explicit_rapl_where_there_is_none_exits_2(tmp_path, monkeypatch):
    from perfscope.devices.cpu import CpuDevice
    from perfscope.errors import MeterUnavailableError
    from perfscope.meters import select_meter

    with pytest.raises(MeterUnavailableError) as caught:
        select_meter(CpuDevice(), "rapl", powercap_root=tmp_path / "no-powercap")
    from perfscope.cli import exit_code

    assert exit_code(caught.value) == 2
    if not Path("/sys/class/powercap/intel-rapl:0").exists():
        err = _one_line_error(_perfscope("collect", "gemm", "--size", "8", "--device", "cpu", "--energy", "rapl",
                                         "-o", str(tmp_path / "ds")))
        assert "RAPL" in err or "rapl" in err


def test_dashboard_check_on_a_missing_dataset_exits_2(tmp_path):
    err = _one_line_error(_perfscope("dashboard", "--check", str(tmp_path / "nothing-here")))
    assert "no such dataset" in err


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited
    # "ignore": the child must get the default disposition to see the Ctrl-C a user sends.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_a_sweep_says_how_many_rows_were_saved(tmp_path):
    out = tmp_path / "ds"
    sizes = ",".join(str(8 * i) for i in range(1, 61))
    proc = subprocess.Popen([sys.executable, "-m", "perfscope", "collect", "gemm", "--size", sizes, "--device", "cpu",
                             "--energy", "none", "--warmup-s", "0.01", "--min-time-s", "0.05", "--budget-s", "0.1",
                             "-o", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len([p for p in out.rglob("*.parquet")]) < 2:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted:" in lines[0] and "Traceback" not in stderr, stderr
    saved = int(lines[0].split("interrupted: ")[1].split()[0])
    assert saved >= 2
    assert ProfileStore(out).read(["config_id"]).table.num_rows == saved  # every row it counted is in the dataset


def test_ctrl_c_in_any_command_says_interrupted_and_exits_130(monkeypatch, capsys):
    import typer

    from perfscope import cli

    stub = typer.Typer()

    @stub.command()
    def slow() -> None:
        raise KeyboardInterrupt

    @stub.command()
    def other() -> None:  # two commands, so Typer dispatches by name
        pass

    monkeypatch.setattr(cli, "app", stub)
    monkeypatch.setattr(sys, "argv", ["perfscope", "slow"])
    with pytest.raises(SystemExit) as caught:
        cli.main()
    assert caught.value.code == 130
    assert capsys.readouterr().err.strip() == "perfscope: error: interrupted"


def test_every_json_output_goes_through_strict_json():
    import re

    sources = [*(REPO / "perfscope" / "commands").glob("*.py"), REPO / "perfscope" / "cli_render.py"]
    loose = [f"{path.name}:{n}" for path in sources for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"(?<!strict_)json\.dumps?\(", line)]
    assert not loose, f"--json output written without strict_json (NaN would be printed): {loose}"


def test_library_errors_carry_no_exit_status_and_the_cli_maps_them():
    """Library exceptions are plain domain errors; only perfscope.cli knows exit statuses."""
    from perfscope import errors
    from perfscope.cli import exit_code

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.PerfscopeError)]
    assert classes and not any("exit_code" in vars(c) for c in classes)
    assert exit_code(errors.InvalidInputError("x")) == 2 and issubclass(errors.InvalidInputError, ValueError)
    assert exit_code(errors.NotFoundError("x")) == 2 and issubclass(errors.NotFoundError, LookupError)
    assert exit_code(errors.StateError("x")) == 2
    assert exit_code(errors.Interrupted("x")) == 130
    assert exit_code(errors.MeasurementError("x")) == 1
    assert errors.UserInputError is errors.InvalidInputError  # the former name still works


def test_the_cli_names_the_option_of_an_argument_the_library_refused(tmp_path):
    # the library says which argument is at fault (``max_memory``); only the CLI speaks of --max-memory
    err = _one_line_error(_perfscope("collect", "gemm", "--size", "8", "--device", "cpu", "--energy", "none",
                                     "--max-memory", "lots", "-o", str(tmp_path / "ds")))
    assert "memory limit" in err and "(option --max-memory)" in err


def test_library_logs_through_logging_and_the_cli_shows_it_with_verbose():
    import logging

    import perfscope.collectors.spec  # noqa: F401 (its logger exists once imported)

    assert logging.getLogger("perfscope.collectors.spec").handlers == []  # the library installs none
    assert all(isinstance(h, logging.NullHandler) for h in logging.getLogger("perfscope").handlers)
    quiet = _perfscope("plan", "gemm", "--size", "8")
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = _perfscope("-v", "plan", "gemm", "--size", "8")
    assert loud.returncode == 0 and "perfscope.collectors.spec" in loud.stderr and "1 configuration" in loud.stderr


def test_store_and_model_file_errors_are_state_errors():
    from perfscope import errors

    assert issubclass(errors.StoreError, errors.StateError) and issubclass(errors.ModelFileError, errors.StateError)
    assert not issubclass(errors.StateError, errors.InvalidInputError)  # the input was fine; what exists is not
