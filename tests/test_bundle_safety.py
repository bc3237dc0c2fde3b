"""Hostile model bundles: non-regular files, oversized files, deep JSON and malformed
manifests or states are one-line refusals (``ModelFileError``), never hangs or crashes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest
from synthetic_rows import rows_with_energy  # tests/ is on sys.path (rootdir import mode)

from perfscope.models import bundle_files
from perfscope.models.bundle_format import sealed
from perfscope.models.forest import ForestModel
from perfscope.models.persistence import MANIFEST, ModelFileError, load_bundle, save_bundle
from perfscope.models.roofline_model import RooflineModel


@pytest.fixture(autouse=True)
def _no_calibrated_profiles(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFSCOPE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def fitted():
    rows = rows_with_energy(sizes=(256, 512))
    return rows, {"roofline": RooflineModel().fit(rows), "forest": ForestModel(n_estimators=3).fit(rows)}


@pytest.fixture
def bundle(tmp_path, fitted):
    rows, models = fitted
    return save_bundle(tmp_path / "model", models, rows=rows)


def _reseal(bundle, name: str, document: dict) -> None:
    """Rewrite model ``name``'s document and the manifest with fresh hashes (a careful forger)."""
    document.pop("content_sha256", None)
    data = json.dumps(sealed(document)).encode()
    (bundle / f"{name}.json").write_bytes(data)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest.pop("content_sha256")
    manifest["models"][name]["files"][f"{name}.json"] = hashlib.sha256(data).hexdigest()
    (bundle / MANIFEST).write_text(json.dumps(sealed(manifest)))


def _refused(bundle, match: str) -> str:
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=match) as caught:
        load_bundle(bundle)
    assert time.perf_counter() - start < 5
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_untouched_bundle_loads(bundle):
    assert set(load_bundle(bundle).models) == {"roofline", "forest"}


def test_a_symlink_to_dev_zero_is_refused_without_reading(bundle):
    (bundle / "forest.npz").unlink()
    os.symlink("/dev/zero", bundle / "forest.npz")
    _refused(bundle, "symbolic link")


def test_a_fifo_is_refused_without_opening(bundle):
    (bundle / "forest.npz").unlink()
    os.mkfifo(bundle / "forest.npz")  # opening it for reading would block forever
    _refused(bundle, "not a regular file.*FIFO")


def test_a_manifest_symlink_is_refused(bundle, tmp_path):
    target = tmp_path / "elsewhere.json"
    (bundle / MANIFEST).rename(target)
    os.symlink(target, bundle / MANIFEST)
    _refused(bundle, "symbolic link")


def test_an_oversized_file_is_refused_before_reading(bundle, monkeypatch):
    monkeypatch.setattr(bundle_files, "MAX_ARRAY_BYTES", 100)
    _refused(bundle, "more than the 100 a model file may have")


def test_a_200000_deep_manifest_is_a_one_line_refusal(bundle):
    (bundle / MANIFEST).write_text("[" * 200_000 + "]" * 200_000)
    _refused(bundle, "nests 200000 levels")


def test_json_depth_ignores_brackets_inside_strings():
    assert bundle_files.json_depth(b'{"a": ["[[[[", {"b": "}}}\\"[["}]}') == 3
    assert bundle_files.json_depth(b"") == 0


@pytest.mark.parametrize("state", ["bogus", {"kind": "roofline"}, {"kind": "roofline", "peaks": 3}, None, [1, 2]])
def test_a_bogus_state_is_a_one_line_refusal(bundle, state):
    document = json.loads((bundle / "roofline.json").read_text())
    document["state"] = state
    _reseal(bundle, "roofline", document)
    _refused(bundle, "state")


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update(models=[1]), "models is a list"),
    (lambda m: m["models"].update({"../x": m["models"]["roofline"]}), "not a plain name"),
    (lambda m: m["models"]["roofline"]["files"].update({"/etc/passwd": "0" * 64}), "only roofline.json"),
    (lambda m: m["models"]["roofline"]["files"].update({"roofline.json": 5}), "not a SHA-256"),
    (lambda m: m["models"]["roofline"].pop("kind"), "kind is missing"),
])
def test_a_malformed_manifest_is_refused_by_name(bundle, change, match):
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest.pop("content_sha256")
    change(manifest)
    (bundle / MANIFEST).write_text(json.dumps(sealed(manifest)))
    _refused(bundle, match)


def test_estimate_with_a_hostile_bundle_exits_2_with_one_line(bundle):
    (bundle / MANIFEST).write_text("{" * 100_000)
    done = subprocess.run([sys.executable, "-m", "perfscope", "estimate", "gemm", "--m", "64", "--n", "64", "--k", "64",
                           "--device", "h100-sxm", "--model", str(bundle)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
