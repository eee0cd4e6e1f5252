"""fal's Platform API listing (`/v1/models/requests/by-endpoint`), as fal documents it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.simulator.conftest import FAL_KEY, Sim

I2V = "fal-ai/veo3.1/image-to-video"
EXTEND = "fal-ai/veo3.1/extend-video"
LISTING = "/v1/models/requests/by-endpoint"


def _invalid(prompt: str) -> dict[str, Any]:
    # Fails fal's validation at once (no render), which is enough to be listed as finished.
    return {"prompt": prompt, "image_url": "data:image/png;base64,AAAA"}


def _listing(sim: Sim, **params: Any) -> httpx.Response:
    return sim.fal.http.get(LISTING, params=params)


def test_listing_finds_a_finished_request_by_its_input(sim: Sim) -> None:
    marker = f"listing-{datetime.now(UTC).timestamp()}"
    submitted = sim.fal.submit(I2V, _invalid(marker))
    sim.fal.wait_completed(submitted)

    response = _listing(sim, endpoint_id=I2V, expand="payloads", limit=100)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "next_cursor", "has_more"}
    found = [item for item in body["items"] if item["json_input"].get("prompt") == marker]
    assert len(found) == 1
    item = found[0]
    assert item["request_id"] == submitted["request_id"]
    assert item["endpoint_id"] == I2V
    assert item["status_code"] == 422
    assert item["json_input"] == _invalid(marker)
    assert "detail" in item["json_output"]
    sent = datetime.fromisoformat(item["sent_at"])
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 60
    assert datetime.fromisoformat(item["ended_at"]) >= sent


def test_listing_without_expand_carries_no_payloads(sim: Sim) -> None:
    submitted = sim.fal.submit(I2V, _invalid("no-payloads"))
    sim.fal.wait_completed(submitted)
    item = _listing(sim, endpoint_id=I2V, request_id=submitted["request_id"]).json()["items"][0]
    assert "json_input" not in item and "json_output" not in item


def test_listing_filters_by_endpoint_time_status_and_request_id(sim: Sim) -> None:
    submitted = sim.fal.submit(EXTEND, _invalid("filters"))
    sim.fal.wait_completed(submitted)
    request_id = submitted["request_id"]

    def ids(**params: Any) -> list[str]:
        response = _listing(sim, **params)
        assert response.status_code == 200, response.text
        return [item["request_id"] for item in response.json()["items"]]

    assert request_id in ids(endpoint_id=f"{I2V},{EXTEND}", limit=100)
    assert request_id not in ids(endpoint_id=I2V, limit=100)
    assert request_id in ids(endpoint_id=EXTEND, status="user_error", limit=100)
    assert request_id not in ids(endpoint_id=EXTEND, status="success", limit=100)
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert request_id not in ids(endpoint_id=EXTEND, start=later, limit=100)
    assert ids(endpoint_id=EXTEND, request_id=request_id) == [request_id]


def test_listing_pages_with_a_cursor(sim: Sim) -> None:
    for n in range(3):
        sim.fal.wait_completed(sim.fal.submit(EXTEND, _invalid(f"page-{n}")))
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"endpoint_id": EXTEND, "limit": 1}
        if cursor:
            params["cursor"] = cursor
        body = _listing(sim, **params).json()
        seen += [item["request_id"] for item in body["items"]]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        cursor = body["next_cursor"]
    assert len(seen) >= 3
    assert len(seen) == len(set(seen))


def test_listing_refuses_what_fal_refuses(sim: Sim) -> None:
    assert _listing(sim).status_code == 422  # endpoint_id is required
    assert _listing(sim, endpoint_id=I2V, limit=101).status_code == 422
    assert _listing(sim, endpoint_id=I2V, status="done").status_code == 422
    assert _listing(sim, endpoint_id=I2V, cursor="nonsense").status_code == 422
    anonymous = httpx.get(f"{sim.url}{LISTING}", params={"endpoint_id": I2V})
    assert anonymous.status_code == 401
    wrong = httpx.get(
        f"{sim.url}{LISTING}",
        params={"endpoint_id": I2V},
        headers={"Authorization": f"Key {FAL_KEY}x"},
    )
    assert wrong.status_code == 401
