"""The generated JSON Schemas, checked with a real JSON Schema 2020-12 validator.

Skipped when the `jsonschema` package is not installed (it is not a dependency of vidhook).
"""

from __future__ import annotations

from typing import Any

import pytest

from service.catalog import ENDPOINTS, input_json_schema, schema_name
from service.validation import job_request_json_schema
from tests.catalog.cases import (
    ALL_ENDPOINTS,
    BAD_INPUTS,
    EXPECTED_ENUMS,
    FULL_INPUTS,
    I2V,
    REQUIRED,
    UNION_VARIANTS,
    Bad,
)
from tests.catalog.media import oversize_data_uri

jsonschema = pytest.importorskip("jsonschema")


def validator(schema: dict[str, Any]) -> Any:
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_schema_is_valid_2020_12(endpoint: str) -> None:
    validator(input_json_schema(ENDPOINTS[endpoint]))


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_schema_accepts_the_valid_examples(endpoint: str) -> None:
    check = validator(input_json_schema(ENDPOINTS[endpoint]))
    valid = [dict(ENDPOINTS[endpoint].example), REQUIRED[endpoint], FULL_INPUTS[endpoint]]
    valid += [
        {**REQUIRED[endpoint], k: v} for k, vs in EXPECTED_ENUMS[endpoint].items() for v in vs
    ]
    valid += [{**REQUIRED[e], **changes} for _, e, changes in UNION_VARIANTS if e == endpoint]
    for instance in valid:
        errors = [e.message[:120] for e in check.iter_errors(instance)]
        assert not errors, errors


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if c.schema_detects], ids=lambda c: c.id)
def test_schema_rejects_what_the_validator_refuses(case: Bad) -> None:
    check = validator(input_json_schema(ENDPOINTS[case.endpoint]))
    assert not check.is_valid(case.input())


def test_schema_rejects_a_grossly_oversize_data_uri() -> None:
    check = validator(input_json_schema(ENDPOINTS[I2V]))
    instance = {**REQUIRED[I2V], "image_url": oversize_data_uri("image/png", 9 * 1024 * 1024)}
    assert not check.is_valid(instance)


def test_job_request_schema_inline() -> None:
    check = validator(job_request_json_schema())
    assert check.is_valid({"endpoint": I2V, "input": FULL_INPUTS[I2V], "callback_url": None})
    assert check.is_valid({"endpoint": I2V, "input": REQUIRED[I2V], "metadata": {"a": 1}})
    assert not check.is_valid({"endpoint": I2V, "input": {**REQUIRED[I2V], "duration": 8}})
    assert not check.is_valid({"endpoint": "fal-ai/flux/dev", "input": {}})
    assert not check.is_valid({"endpoint": I2V, "input": REQUIRED[I2V], "webhook_url": "x"})
    assert not check.is_valid({"endpoint": I2V, "input": REQUIRED[I2V], "callback_url": "ftp://x"})


def test_job_request_schema_with_refs_and_pass_through() -> None:
    schema = job_request_json_schema(input_ref_template="#/$defs/{name}", passthrough=True)
    schema["$defs"] = {
        schema_name(spec): input_json_schema(spec, include_dialect=False)
        for spec in ENDPOINTS.values()
    }
    check = validator(schema)
    assert check.is_valid({"endpoint": I2V, "input": REQUIRED[I2V]})
    assert not check.is_valid({"endpoint": I2V, "input": {"prompt": "p"}})
    assert check.is_valid({"endpoint": "fal-ai/flux/dev", "input": {"anything": [1]}})
    assert not check.is_valid({"endpoint": "fal-ai/../x", "input": {}})
