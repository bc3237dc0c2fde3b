"""Saving model bundles is atomic: a failed or killed save never leaves a half-written
bundle, and saving again into what one left works."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from synthetic_rows import rows_with_energy  # tests/ is on sys.path (rootdir import mode)

from perfscope.models import persistence
from perfscope.models.forest import ForestModel
from perfscope.models.persistence import MANIFEST, ModelFileError, load_bundle, save_bundle
from perfscope.models.roofline_model import RooflineModel


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    rows = rows_with_energy(sizes=(256, 512))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERFSCOPE_HOME", str(tmp_path_factory.mktemp("home")))
        return {"roofline": RooflineModel().fit(rows), "forest": ForestModel(n_estimators=4).fit(rows)}


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_save_failing_midway_keeps_the_previous_bundle_and_leaves_nothing(tmp_path, models, monkeypatch):
    out = save_bundle(tmp_path / "m", {"roofline": models["roofline"]})
    before = sorted(os.listdir(out))
    real = persistence._write_bytes

    def disk_full_at_the_manifest(path, data):
        if path.name == MANIFEST:
            raise ModelFileError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}")
        real(path, data)

    monkeypatch.setattr(persistence, "_write_bytes", disk_full_at_the_manifest)
    with pytest.raises(ModelFileError, match="No space left"):
        save_bundle(out, models)
    assert sorted(os.listdir(out)) == before and list(load_bundle(out).models) == ["roofline"]
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []  # no staging directory left


def test_saving_into_what_an_interrupted_older_save_left_works(tmp_path, models):
    out = save_bundle(tmp_path / "m", models)
    (out / MANIFEST).unlink()  # cut short before the manifest, as older versions could be
    (out / ".forest.npz.tmp").write_bytes(b"half")
    save_bundle(out, {"roofline": models["roofline"]})
    assert list(load_bundle(out).models) == ["roofline"] and ".forest.npz.tmp" not in os.listdir(out)


def test_leftovers_of_a_killed_save_are_cleared_and_a_bundle_moved_aside_is_put_back(tmp_path, models):
    out = save_bundle(tmp_path / "m", {"roofline": models["roofline"]})
    pid = _dead_pid()
    staging = tmp_path / f".m.tmp-{pid}"
    staging.mkdir()
    (staging / "forest.npz").write_bytes(b"half")
    os.rename(out, tmp_path / f".m.old-{pid}")  # killed between moving the old bundle aside and renaming
    save_bundle(tmp_path / "other", {"roofline": models["roofline"]})  # an unrelated save clears nothing here
    assert staging.exists()
    save_bundle(out, models)
    assert sorted(load_bundle(out).models) == ["forest", "roofline"]
    assert sorted(n for n in os.listdir(tmp_path) if n != "home") == ["m", "other"]


def test_a_directory_of_other_json_files_is_still_refused(tmp_path, models):
    mine = tmp_path / "configs"
    mine.mkdir()
    (mine / "settings.json").write_text(json.dumps({"theme": "dark"}))
    with pytest.raises(ModelFileError, match="holds no perfscope model"):
        save_bundle(mine, models)
    assert os.listdir(mine) == ["settings.json"]
