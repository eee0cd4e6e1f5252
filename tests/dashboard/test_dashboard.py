"""/dashboard in a real headless Chromium against the whole system (API, worker, simulator)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from service.app import create_app
from service.settings import Settings
from tests.conftest import (
    ADMIN_KEY,
    TENANT_A_KEY,
    TENANT_B_KEY,
    CallbackReceiver,
    bearer,
    i2v_body,
    is_terminal,
    wait_for,
)
from tests.dashboard.conftest import Tab, screenshot
from tests.support.falproxy import FalProxy, Fault
from tests.support.isolation import isolated
from tests.support.servers import ServerThread
from tests.test_cancellation import deliver, silent_job

SCRIPT_PROMPT = (
    'A harbour at night <script>window.__pwned = 1</script><img src="x" '
    'onerror="window.__pwned = 2"> & "quotes"'
)


def sign_in(page: Page, base_url: str, key: str = TENANT_A_KEY) -> None:
    page.goto(f"{base_url}/dashboard")
    page.fill("#key", key)
    page.click("#signin-form button[type=submit]")


def completed_job(client: httpx.Client, **input_overrides: Any) -> dict[str, Any]:
    body = i2v_body(f"dash-{uuid.uuid4().hex[:10]}", **input_overrides)
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    job = wait_for(client, job_id, is_terminal)
    assert job["status"] == "completed", job
    return job


def served_paths(base_url: str) -> set[str]:
    return set(httpx.get(f"{base_url}/openapi.json").json()["paths"])


def test_the_page_is_served_with_a_strict_policy_and_no_outside_assets(
    system: ServerThread, simulator: ServerThread
) -> None:
    page = httpx.get(f"{system.url}/dashboard")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'none'"
    assert directives["media-src"] == f"'self' https: {simulator.url}"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "no CDN: every asset is ours"
    for asset, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        answer = httpx.get(f"{system.url}/dashboard/assets/{asset}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
        assert answer.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{system.url}/dashboard/assets/app.js").text
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", script)
    assert httpx.get(f"{system.url}/dashboard/assets/nothing.js").status_code == 404


def test_a_wrong_key_is_refused_and_a_good_key_shows_the_overview(
    tab: Tab, system: ServerThread, client: httpx.Client
) -> None:
    completed_job(client)
    page = tab.page
    sign_in(page, system.url, key="not-a-key-of-this-service")
    expect(page.locator("#signin-error")).to_have_text("That key was not accepted.")
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    # The refused sign-in's 401 is the browser's one expected complaint.
    assert all("401" in error for error in tab.errors), tab.errors
    tab.errors.clear()

    page.fill("#key", TENANT_A_KEY)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#who")).to_have_text("tenant tenant-a")
    expect(page.locator("#overview .card").first).to_be_visible()
    expect(page.locator('#overview li[data-status="completed"] b')).not_to_have_text("0")
    assert TENANT_A_KEY not in page.url
    assert page.evaluate("Object.keys(sessionStorage)") == ["vidhook.dashboard.key"]
    screenshot(page, "dashboard-overview")

    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert tab.errors == []


def test_the_job_list_shows_the_jobs_a_test_made(
    tab: Tab, system: ServerThread, client: httpx.Client
) -> None:
    if (
        "/v1/jobs" not in served_paths(system.url)
        or "get" not in httpx.get(f"{system.url}/openapi.json").json()["paths"]["/v1/jobs"]
    ):
        pytest.skip("GET /v1/jobs (the job listing) is not on this server yet")
    made = [completed_job(client)["id"] for _ in range(2)]
    page = tab.page
    sign_in(page, system.url)
    page.click("#nav a[data-view=jobs]")
    for job_id in made:
        expect(page.locator(f'#jobs tr[data-job="{job_id}"]')).to_be_visible()
    page.select_option("#filters select[name=status]", "queued")
    page.click("#filters button[type=submit]")
    expect(page.locator(f'#jobs tr[data-job="{made[0]}"]')).to_have_count(0)
    assert tab.errors == []


def test_an_operator_key_sees_every_tenants_jobs(
    tab: Tab, system: ServerThread, client: httpx.Client
) -> None:
    mine = completed_job(client)["id"]
    with httpx.Client(base_url=system.url, headers=bearer(TENANT_B_KEY), timeout=10) as other:
        theirs = completed_job(other)["id"]
    page = tab.page
    sign_in(page, system.url, key=ADMIN_KEY)
    expect(page.locator("#who")).to_have_text("operator · all tenants")
    expect(page.locator("#overview")).to_contain_text("Tenants")
    page.click("#nav a[data-view=jobs]")
    expect(page.locator(f'#jobs tr[data-job="{mine}"]')).to_contain_text("tenant-a")
    expect(page.locator(f'#jobs tr[data-job="{theirs}"]')).to_contain_text("tenant-b")
    page.click(f'#jobs tr[data-job="{theirs}"] a')
    expect(page.locator("#result-video")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("tenant-b")
    assert tab.errors == []


def test_a_job_page_shows_the_job_and_plays_its_video(
    tab: Tab, system: ServerThread, client: httpx.Client
) -> None:
    job = completed_job(client, duration="4s")
    page = tab.page
    sign_in(page, system.url)
    expect(page.locator("#who")).to_have_text("tenant tenant-a")
    page.goto(f"{system.url}/dashboard#/jobs/{job['id']}")

    expect(page.locator("#fal-request-id")).to_have_text(job["fal_request_id"])
    expect(page.locator("#timeline li").first).to_be_visible()
    # A finished job's input comes back from the media store, its data URI as a thumbnail.
    thumbnail = page.locator("#input img")
    expect(thumbnail).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
    assert thumbnail.evaluate("img => img.naturalWidth") > 0
    playback = page.locator("#result-video").evaluate(
        """video => new Promise((resolve, reject) => {
            const fail = () => reject(new Error(`video error ${video.error && video.error.code}`));
            const played = () => video.play().then(() => {
                const tick = () => video.currentTime > 0
                    ? resolve({duration: video.duration, width: video.videoWidth,
                               error: video.error, time: video.currentTime})
                    : setTimeout(tick, 50);
                tick();
            }, reject);
            if (video.error) return fail();
            video.addEventListener("error", fail, {once: true});
            if (video.readyState >= 1) played();
            else video.addEventListener("loadedmetadata", played, {once: true});
        })"""
    )
    assert playback["error"] is None
    assert playback["duration"] == pytest.approx(4.0, abs=0.2), playback
    assert playback["width"] == 1280 and playback["time"] > 0, playback
    screenshot(page, "dashboard-job")
    assert tab.errors == []


def waiting_job(client: httpx.Client, fal_proxy: FalProxy, prompt: str, **extra: Any) -> str:
    """A job whose submit fal holds unanswered, so it waits in `submitting`, input kept."""
    case = f"waiting-{uuid.uuid4().hex[:10]}"
    fal_proxy.script(case, Fault("late", delay_s=30.0))
    body = {**i2v_body(case), **extra}
    body["input"]["prompt"] = f"{prompt} ({case})"
    return str(client.post("/v1/jobs", json=body).json()["id"])


def test_a_live_jobs_input_shows_its_data_uri_as_a_thumbnail_and_markup_as_text(
    tab: Tab, system: ServerThread, client: httpx.Client, fal_proxy: FalProxy
) -> None:
    note = {"note": "<b onmouseover=alert(1)>bold</b>"}
    # The input is dropped once fal holds the request: a job still waiting to be submitted.
    job_id = waiting_job(client, fal_proxy, SCRIPT_PROMPT, metadata=note)
    page = tab.page
    sign_in(page, system.url)
    expect(page.locator("#who")).to_be_visible()
    page.goto(f"{system.url}/dashboard#/jobs/{job_id}")

    thumbnail = page.locator("#input img")
    expect(thumbnail).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
    assert thumbnail.evaluate("img => img.naturalWidth") > 0, "the data URI renders as an image"
    expect(page.locator("#input")).not_to_contain_text("base64,")
    expect(page.locator("#input")).to_contain_text(SCRIPT_PROMPT)
    expect(page.locator("#metadata")).to_contain_text("<b onmouseover=alert(1)>bold</b>")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 1, "only the dashboard's own module"
    assert page.locator('img[src="x"], #metadata b').count() == 0
    assert tab.dialogs == [] and tab.errors == []


def test_cancel_from_the_page_cancels_the_job(
    tab: Tab,
    system: ServerThread,
    client: httpx.Client,
    fal_proxy: FalProxy,
    callback_receiver: CallbackReceiver,
) -> None:
    job, webhook_url = silent_job(
        client, fal_proxy, callback_url=f"{callback_receiver.url}/hooks/dash"
    )
    request_id = job["fal_request_id"]
    fal_proxy.script_call(request_id, Fault("status", 202, {"status": "CANCELLATION_REQUESTED"}))
    page = tab.page
    sign_in(page, system.url)
    expect(page.locator("#who")).to_be_visible()
    page.goto(f"{system.url}/dashboard#/jobs/{job['id']}")

    page.click("#cancel")
    expect(page.locator("#action-message")).to_have_text("Cancel requested at fal.")
    assert tab.dialogs == [f"Cancel job {job['id']}?"]
    assert client.get(f"/v1/jobs/{job['id']}").json()["cancel_requested_at"]

    # fal confirms: the page follows the job to its end without a reload.
    deliver(
        webhook_url,
        request_id,
        {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": "ERROR",
            "error": "Invalid status code: 499",
            "payload": {"detail": "Request cancelled", "error_type": "client_cancelled"},
        },
    )
    expect(page.locator(".title .badge")).to_have_text("cancelled")
    expect(page.locator("#cancel")).to_have_count(0)
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    assert tab.errors == []


def test_redeliver_from_the_page_sends_the_callback_again(
    tab: Tab, system: ServerThread, client: httpx.Client, callback_receiver: CallbackReceiver
) -> None:
    assert {"/v1/jobs/{job_id}/callback/redeliver", "/v1/jobs/{job_id}/deliveries"} <= (
        served_paths(system.url)
    )
    body = {
        **i2v_body(f"redeliver-{uuid.uuid4().hex[:8]}"),
        "callback_url": f"{callback_receiver.url}/hooks/r",
    }
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    wait_for(client, job_id, lambda j: j.get("callback", {}).get("status") == "delivered")
    assert len(callback_receiver.for_job(job_id)) == 1
    page = tab.page
    sign_in(page, system.url)
    expect(page.locator("#who")).to_be_visible()
    page.goto(f"{system.url}/dashboard#/jobs/{job_id}")

    # The delivery log from GET /deliveries: the event, and its one attempt.
    log = page.locator("#deliveries")
    expect(log.locator("tr.delivery")).to_contain_text("job.completed")
    expect(log.locator("tr.delivery")).to_contain_text(f"msg_{job_id}_completed")
    expect(log.locator("tr.attempt")).to_have_count(1)
    expect(log.locator("tr.attempt")).to_contain_text("HTTP 204")

    page.click("#redeliver")
    expect(page.locator("#action-message")).to_have_text("Redelivery queued.")
    wait_for(client, job_id, lambda j: len(callback_receiver.for_job(job_id)) == 2)
    first, second = callback_receiver.for_job(job_id)
    assert first[0]["webhook-id"] == second[0]["webhook-id"] and first[1] == second[1]
    # The log follows the new series to its end without a reload.
    expect(log.locator("tr.attempt")).to_have_count(2, timeout=15_000)
    expect(log.locator("tr.attempt").nth(1)).to_contain_text("redelivery 1")
    assert tab.errors == []


def test_the_overview_shows_in_flight_against_the_budget_and_spend_against_the_cap(
    tab: Tab, settings: Settings
) -> None:
    # An API of its own with a budget and a cap, and no worker: admitted jobs keep their slot.
    limits = '{"tenant-a": {"daily_usd": 5}}'
    config = isolated(settings, fal_max_in_flight=3, tenant_limits=limits)
    with (
        ServerThread(create_app(config), port=config.port) as api,
        httpx.Client(base_url=api.url, headers=bearer(TENANT_A_KEY), timeout=10) as http,
    ):
        for _ in range(2):
            assert http.post("/v1/jobs", json=i2v_body(uuid.uuid4().hex)).status_code == 202
        stats = http.get("/v1/stats").json()
        assert stats["in_flight"]["leases"] == 2 and stats["in_flight"]["budget"] == 3
        assert stats["spend"]["data"][0]["spend_today_usd"] == 1.2
        page = tab.page
        sign_in(page, api.url)
        in_flight = page.locator("#overview .card", has_text="In flight at fal")
        expect(in_flight.locator(".big")).to_have_text("2 of 3")
        spend = page.locator("#overview .card", has_text="Spend today")
        expect(spend.locator("td").nth(1)).to_contain_text("1.20")
        expect(spend.locator("td").nth(2)).to_contain_text("5.00")
        assert tab.errors == []
