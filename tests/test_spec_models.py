"""Typed sweep specs: one model per kernel family, a JSON Schema for editors, one name per concept."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from perfscope.collectors.protocol import case_config_id
from perfscope.collectors.spec import expand, load_spec, parse_spec, spec_json_schema, with_overrides
from perfscope.collectors.spec_models import ConvSweep, GemmSweep
from perfscope.dtypes import DTYPES, Dtype, bytes_per_element, check_dtype, is_fp8, is_tf32
from perfscope.errors import InvalidInputError

SPECS = Path(__file__).resolve().parents[1] / "collectors" / "specs"
SCHEMA = SPECS / "spec.schema.json"


def _ids(spec) -> list[str]:
    return [case_config_id(c) for c in expand(spec)]


def test_the_shipped_schema_is_the_one_the_models_generate():
    # regenerate: python -c "import json; from perfscope.collectors.spec import spec_json_schema as s;
    #   open('collectors/specs/spec.schema.json','w').write(json.dumps(s(), indent=1, sort_keys=True) + '\n')"
    assert json.loads(SCHEMA.read_text()) == spec_json_schema()


def test_every_preset_validates_against_the_schema_and_a_bad_dtype_does_not():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    for path in sorted(SPECS.glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"sweeps": [{"kernel": "gemm", "axes": {"dtype": ["fp64"]}}]}, schema)


def test_a_spec_is_validated_once_into_typed_family_models():
    spec = parse_spec({"name": "t", "timing": {"warmup_s": 0.01},
                       "sweeps": [{"kernel": "gemm", "axes": {"sizes": 8, "dtype": ["fp32", "bf16"]}},
                                  {"kernel": "conv", "axes": {"n": [1], "c": [4], "h": [8], "w": [8], "k": [4],
                                                              "r": [3], "s": [3], "pad": [1]}}]})
    gemm, conv = spec.sweeps
    assert isinstance(gemm, GemmSweep) and isinstance(conv, ConvSweep)
    assert gemm.axes.sizes == [8] and gemm.axes.dtype == ["fp32", "bf16"]  # a scalar is a one-value axis
    assert spec.policy.warmup_s == 0.01


@pytest.mark.parametrize("sweep,where", [
    ({"kernel": "gemm", "axes": {"sizes": [8], "dtype": ["fp64"]}}, "axes.dtype"),
    ({"kernel": "gemm", "axes": {"sizes": [0]}}, "axes.sizes"),
    ({"kernel": "gemm", "axes": {"sizes": ["8"]}}, "axes.sizes"),
    ({"kernel": "gemm", "axes": {"sizes": [8], "colour": [1]}}, "unknown key"),
    ({"kernel": "gemm", "axes": {"sizes": [8], "tile_m": [64]}}, "do not apply to implementation torch"),
    ({"kernel": "attention", "axes": {"backend": ["cublas"]}}, "axes.backend"),
    ({"kernel": "conv", "axes": {"layout": ["nhwc"]}}, "axes.layout"),
])
def test_a_bad_axis_is_one_line_naming_where_it_is(sweep, where):
    with pytest.raises(InvalidInputError, match=where) as caught:
        parse_spec({"name": "t", "sweeps": [sweep]}, origin="mine.yaml")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("mine.yaml: ")


def test_old_and_column_spellings_are_aliases_of_one_name():
    tiles = {"sizes": [64], "dtype": ["fp16"], "tile_m": [64], "tile_n": [64], "tile_k": [32]}
    short = parse_spec({"sweeps": [{"kernel": "gemm", "implementation": "triton",
                                    "axes": {**tiles, "group_m": [8], "num_warps": [4], "num_stages": [3]}}]})
    column = parse_spec({"sweeps": [{"kernel": "gemm", "implementation": "triton",
                                     "axes": {**tiles, "tile_group_m": [8], "tile_num_warps": [4],
                                              "tile_num_stages": [3]}}]})
    assert short.sweeps[0].axes.tile_num_warps == [4] and _ids(short) == _ids(column)
    conv = {"c": [4], "h": [8], "w": [8], "k": [4], "r": [3], "s": [3], "pad": [1]}
    by_n = parse_spec({"sweeps": [{"kernel": "conv", "axes": {"n": [2], **conv}}]})
    by_batch = parse_spec({"sweeps": [{"kernel": "conv", "axes": {"batch": [2], **conv}}]})
    by_column = parse_spec({"sweeps": [{"kernel": "conv", "axes": {"conv_n": [2], **conv}}]})
    assert _ids(by_n) == _ids(by_batch) == _ids(by_column)
    assert expand(by_n)[0].config_columns()["conv_n"] == 2


def test_overrides_are_validated_model_copies():
    base = parse_spec({"name": "b", "timing": {"warmup_s": 0.5},
                       "sweeps": [{"kernel": "gemm", "axes": {"sizes": [8, 16], "dtype": ["fp32"]}}]})
    merged = with_overrides(base, list(base.sweeps), {"dtype": ["bf16"]}, ("m <= 8",), {"min_time_s": 0.1}, None)
    assert [(c.m, c.dtype) for c in expand(merged)] == [(8, "bf16")]
    assert merged.policy.warmup_s == 0.5 and merged.policy.min_time_s == 0.1
    assert base.sweeps[0].axes.dtype == ["fp32"]  # the base spec is untouched
    with pytest.raises(InvalidInputError, match="axes.dtype"):
        with_overrides(base, list(base.sweeps), {"dtype": ["fp64"]}, (), {}, None)


def test_dtype_vocabulary_and_predicates():
    assert set(Dtype.__args__) == set(DTYPES)
    assert [d for d in DTYPES if is_fp8(d)] == ["fp8_e4m3", "fp8_e5m2"]
    assert [d for d in DTYPES if is_tf32(d)] == ["tf32"]
    assert bytes_per_element("tf32") == 4 and bytes_per_element("fp8_e5m2") == 1
    assert check_dtype("bf16") == "bf16"
    with pytest.raises(InvalidInputError, match="unknown dtype 'fp64'"):
        check_dtype("fp64")


# sha256 of the newline-joined config ids, in expansion order, measured before the specs became models
PRESET_IDS = {"default": (2636, "c41ae3b7c9131e15"), "full": (82056, "482be63268a60ab4"),
              "gpperf": (189, "d2c1a1fff78eb24b"), "quick": (123, "832205bacda27b60")}


@pytest.mark.slow  # the full preset expands 82,056 configurations (~10 s)
@pytest.mark.parametrize("name", sorted(PRESET_IDS))
def test_presets_expand_to_the_same_configurations_as_before(name):
    ids = _ids(load_spec(name))
    assert (len(ids), hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]) == PRESET_IDS[name]


def test_a_spec_may_name_its_device_and_a_bad_one_is_refused():
    spec = parse_spec({"device": "cuda:1", "sweeps": [{"kernel": "gemm", "axes": {"sizes": [8]}}]})
    assert spec.device == "cuda:1"
    assert parse_spec({"sweeps": [{"kernel": "gemm"}]}).device is None  # collect then uses --device (auto)
    with pytest.raises(InvalidInputError, match="device"):
        parse_spec({"device": "gpu0", "sweeps": [{"kernel": "gemm"}]})


def test_library_lookups_of_unknown_names_are_not_found_errors():
    from perfscope.devices.registry import device_spec
    from perfscope.errors import NotFoundError

    with pytest.raises(NotFoundError, match="unknown device 'no-such-gpu'"):
        device_spec("no-such-gpu")


def test_an_unknown_preset_is_not_found():
    from perfscope.errors import NotFoundError

    with pytest.raises(NotFoundError, match="unknown preset 'nope'"):
        load_spec("nope")
