"""The catalog's declarations: ids, required fields, defaults, disagreement notes, listings."""

from __future__ import annotations

import json

import pytest

from service.catalog import (
    ENDPOINTS,
    IMAGE_MAX_BYTES,
    SUPPORTED_ENDPOINTS,
    describe_endpoint,
    describe_passthrough,
    get_endpoint,
    input_json_schema,
    schema_name,
)
from service.prices import PriceTable
from tests.catalog.cases import (
    ALL_ENDPOINTS,
    EXPECTED_ENUMS,
    EXTEND,
    FAST_EXTEND,
    FAST_FLF,
    FAST_I2V,
    FLF,
    I2V,
    R2V,
    REQUIRED,
    VEO2,
)

# fal's documented defaults (the union's choice where sources differ; see the notes).
_VEO31_DEFAULTS = {
    "aspect_ratio": "auto",
    "duration": "8s",
    "resolution": "720p",
    "generate_audio": True,
    "auto_fix": False,
    "safety_tolerance": "4",
}
EXPECTED_DEFAULTS = {
    I2V: _VEO31_DEFAULTS,
    FAST_I2V: _VEO31_DEFAULTS,
    FLF: _VEO31_DEFAULTS,
    FAST_FLF: _VEO31_DEFAULTS,
    R2V: {**_VEO31_DEFAULTS, "aspect_ratio": "16:9"},
    EXTEND: {**_VEO31_DEFAULTS, "duration": "7s"},
    FAST_EXTEND: {**_VEO31_DEFAULTS, "duration": "7s"},
    VEO2: {"aspect_ratio": "auto", "duration": "5s"},
}

# Fields where the seed docs disagree: each must carry a note saying how it was resolved.
EXPECTED_NOTES = [
    (I2V, "aspect_ratio"),
    (I2V, "resolution"),
    (I2V, "negative_prompt"),
    (I2V, "seed"),
    (I2V, "auto_fix"),
    (I2V, "safety_tolerance"),
    (I2V, "generate_audio"),
    (FAST_I2V, "aspect_ratio"),
    (FLF, "first_frame_url"),
    (FLF, "last_frame_url"),
    (FAST_FLF, "safety_tolerance"),
    (R2V, "image_urls"),
    (R2V, "aspect_ratio"),
    (R2V, "duration"),
    (R2V, "resolution"),
    (R2V, "auto_fix"),
    (R2V, "safety_tolerance"),
    (R2V, "generate_audio"),
    (EXTEND, "duration"),
    (EXTEND, "resolution"),
    (EXTEND, "video_url"),
    (FAST_EXTEND, "duration"),
    (FAST_EXTEND, "resolution"),
]


def test_catalog_holds_exactly_the_eight_seed_endpoints() -> None:
    assert SUPPORTED_ENDPOINTS == ALL_ENDPOINTS
    assert tuple(ENDPOINTS) == SUPPORTED_ENDPOINTS


def test_get_endpoint_returns_none_for_unknown_ids() -> None:
    assert get_endpoint(I2V) is ENDPOINTS[I2V]
    assert get_endpoint("fal-ai/veo3.1/image-to-video/") is None
    assert get_endpoint("fal-ai/flux/dev") is None


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_app_id_is_owner_and_app(endpoint: str) -> None:
    expected = "fal-ai/veo2" if endpoint == VEO2 else "fal-ai/veo3.1"
    assert ENDPOINTS[endpoint].app_id == expected


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_required_fields_are_as_documented(endpoint: str) -> None:
    assert set(ENDPOINTS[endpoint].required_fields) == set(REQUIRED[endpoint])


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_enums_are_the_union_of_the_sources(endpoint: str) -> None:
    spec = ENDPOINTS[endpoint]
    enums = {f.name: f.enum for f in spec.fields if f.kind == "enum"}
    assert enums == EXPECTED_ENUMS[endpoint]


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_defaults_are_fals_documented_ones(endpoint: str) -> None:
    spec = ENDPOINTS[endpoint]
    defaults = {f.name: f.default for f in spec.fields if f.default is not None}
    assert defaults == EXPECTED_DEFAULTS[endpoint]


@pytest.mark.parametrize(("endpoint", "name"), EXPECTED_NOTES)
def test_disagreements_are_recorded_next_to_the_field(endpoint: str, name: str) -> None:
    note = ENDPOINTS[endpoint].field_map[name].note
    assert note and len(note) > 20


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_file_fields_declare_kind_and_limits(endpoint: str) -> None:
    for spec in ENDPOINTS[endpoint].fields:
        if spec.kind not in ("file", "file_list"):
            assert spec.file is None
            continue
        assert spec.file is not None
        if spec.name == "video_url":
            assert spec.file.kind == "video" and spec.file.max_duration_s == 8.0
        else:
            assert spec.file.kind == "image" and spec.file.max_bytes == IMAGE_MAX_BYTES
            assert set(spec.file.media_types) == {"image/jpeg", "image/png", "image/webp"}


def test_reference_images_are_one_to_three() -> None:
    image_urls = ENDPOINTS[R2V].field_map["image_urls"]
    assert (image_urls.min_items, image_urls.max_items) == (1, 3)


def test_schema_names_are_unique_and_readable() -> None:
    names = [schema_name(ENDPOINTS[e]) for e in ALL_ENDPOINTS]
    assert len(set(names)) == len(names)
    assert schema_name(ENDPOINTS[FAST_I2V]) == "Veo31FastImageToVideoInput"
    assert schema_name(ENDPOINTS[VEO2]) == "Veo2ImageToVideoInput"


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_input_schema_mirrors_the_declarations(endpoint: str) -> None:
    spec = ENDPOINTS[endpoint]
    schema = input_json_schema(spec)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(REQUIRED[endpoint])
    assert list(schema["properties"]) == [f.name for f in spec.fields]
    for field in spec.fields:
        prop = schema["properties"][field.name]
        assert prop["description"]
        if field.enum:
            assert prop["enum"] == list(field.enum)
        if field.default is not None:
            assert prop["default"] == field.default
        if field.note:
            assert prop["x-vidhook-note"] == field.note


def test_input_schema_is_a_fresh_copy_each_time() -> None:
    first = input_json_schema(ENDPOINTS[I2V])
    first["properties"].clear()
    assert input_json_schema(ENDPOINTS[I2V])["properties"]


def test_file_schema_length_bound_fits_an_8_mib_data_uri() -> None:
    prop = input_json_schema(ENDPOINTS[I2V])["properties"]["image_url"]
    longest = len("data:image/jpeg;base64,") + 4 * -(-IMAGE_MAX_BYTES // 3)
    assert longest <= prop["maxLength"] < longest + 16
    assert "data:<media type>;base64,<payload>" in prop["description"]


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_endpoint_description_is_json_ready_and_priced(endpoint: str) -> None:
    entry = describe_endpoint(ENDPOINTS[endpoint], PriceTable.default())
    json.dumps(entry)
    assert entry["endpoint"] == endpoint
    assert entry["input_schema"]["type"] == "object"
    assert "$schema" not in entry["input_schema"]
    assert entry["pricing"]["currency"] == "USD"
    assert entry["pricing"]["as_of"] == "2026-11-22"
    assert entry["pricing"]["estimate_with_defaults_usd"] > 0
    assert entry["sources"]


def test_passthrough_description_has_no_price() -> None:
    assert describe_passthrough(["fal-ai/flux/*"]) == [
        {
            "pattern": "fal-ai/flux/*",
            "input_schema": {"type": "object"},
            "pricing": None,
            "notes": ["Pass-through: input is forwarded unchecked apart from being an object."],
        }
    ]
