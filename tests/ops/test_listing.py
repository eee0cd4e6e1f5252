"""GET /v1/jobs: a tenant's own jobs, newest first, by cursor pages and filters; admins see all."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import ADMIN_KEY, TENANT_B_KEY, bearer, i2v_body, is_terminal, wait_for
from tests.support.servers import ServerThread


def _all_pages(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        page = http.get("/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        seen += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


def test_pages_list_every_job_once_newest_first_and_only_the_callers(
    client: httpx.Client, system: ServerThread
) -> None:
    since_ms = int(time.time() * 1000) - 1
    made = [client.post("/v1/jobs", json=i2v_body(f"list-{n}")).json()["id"] for n in range(5)]
    with httpx.Client(base_url=system.url, headers=bearer(TENANT_B_KEY)) as tenant_b:
        other = tenant_b.post("/v1/jobs", json=i2v_body("list-b")).json()["id"]
        listed_b = [job["id"] for job in _all_pages(tenant_b, created_after=since_ms)]
    listed = [job["id"] for job in _all_pages(client, created_after=since_ms, limit=2)]
    assert listed == list(reversed(made))
    assert listed_b == [other]


def test_filters_by_status_and_endpoint(client: httpx.Client) -> None:
    since_ms = int(time.time() * 1000) - 1
    job_id = client.post("/v1/jobs", json=i2v_body("filter")).json()["id"]
    wait_for(client, job_id, is_terminal)  # a status that no longer changes
    endpoint = "fal-ai/veo3.1/fast/image-to-video"
    assert [j["id"] for j in _all_pages(client, created_after=since_ms, endpoint=endpoint)] == [
        job_id
    ]
    assert [j["id"] for j in _all_pages(client, created_after=since_ms, status="completed")] == [
        job_id
    ]
    assert _all_pages(client, created_after=since_ms, status="queued") == []
    assert _all_pages(client, created_after=since_ms, endpoint="fal-ai/veo2/image-to-video") == []


def test_an_admin_key_lists_every_tenants_jobs(client: httpx.Client, system: ServerThread) -> None:
    since_ms = int(time.time() * 1000) - 1
    mine = client.post("/v1/jobs", json=i2v_body("admin-a")).json()["id"]
    with httpx.Client(base_url=system.url, headers=bearer(TENANT_B_KEY)) as tenant_b:
        theirs = tenant_b.post("/v1/jobs", json=i2v_body("admin-b")).json()["id"]
    with httpx.Client(base_url=system.url, headers=bearer(ADMIN_KEY)) as admin:
        everyone = {job["id"]: job["tenant"] for job in _all_pages(admin, created_after=since_ms)}
        only_b = [job["id"] for job in _all_pages(admin, created_after=since_ms, tenant="tenant-b")]
    assert everyone == {mine: "tenant-a", theirs: "tenant-b"}
    assert only_b == [theirs]


def test_a_foreign_cursor_and_bad_filters_are_422(client: httpx.Client) -> None:
    for params in (
        {"cursor": "not-ours"},
        {"status": "exploded"},
        {"limit": "0"},
        {"created_after": "soon"},
    ):
        answer = client.get("/v1/jobs", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
