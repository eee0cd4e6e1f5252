"""vidhook's catalog against the simulator's own, independently written notion of fal's rules.

The two are kept apart on purpose: a value the catalog accepts but fal refuses would be paid
for and fail late, so every such disagreement must show up here as a failing test.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.catalog import ENDPOINTS, EndpointSpec
from service.dev.simulator import rules as fal_rules
from service.validation import RequestInvalid, parse_job_request


def fal_refuses(endpoint_id: str, fal_input: dict[str, Any]) -> list[dict[str, Any]]:
    _, errors = fal_rules.check_schema(fal_rules.ENDPOINTS[endpoint_id], fal_input)
    return errors


def vidhook_accepts(endpoint_id: str, fal_input: dict[str, Any]) -> bool:
    try:
        parse_job_request({"endpoint": endpoint_id, "input": fal_input})
    except RequestInvalid:
        return False
    return True


def test_both_know_the_same_endpoints() -> None:
    assert set(ENDPOINTS) == set(fal_rules.ENDPOINTS)


@pytest.mark.parametrize("spec", ENDPOINTS.values(), ids=list(ENDPOINTS))
def test_every_enum_value_the_catalog_accepts_is_accepted_by_fal(spec: EndpointSpec) -> None:
    for field in spec.fields:
        for value in field.enum:
            fal_input = {**spec.example, field.name: value}
            assert vidhook_accepts(spec.endpoint_id, fal_input), (field.name, value)
            assert fal_refuses(spec.endpoint_id, fal_input) == [], (field.name, value)


@pytest.mark.parametrize("spec", ENDPOINTS.values(), ids=list(ENDPOINTS))
def test_every_field_fal_requires_the_catalog_requires(spec: EndpointSpec) -> None:
    assert fal_refuses(spec.endpoint_id, dict(spec.example)) == []
    for name in spec.example:
        reduced = {key: value for key, value in spec.example.items() if key != name}
        if fal_refuses(spec.endpoint_id, reduced):
            assert not vidhook_accepts(spec.endpoint_id, reduced), f"{name} is required by fal"
