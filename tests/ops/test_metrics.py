"""/metrics after a real workload: counters move by what the workload did, gauges are read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from service.apikeys import ApiKeyStore
from service.dev.localredis import free_port
from service.keys import RedisKeys
from service.settings import Settings
from tests.conftest import CallbackReceiver, bearer, i2v_body, is_terminal, wait_for
from tests.support.isolation import isolated
from tests.support.servers import ServerThread
from tests.support.workerthread import WorkerThread

ENDPOINT = "fal-ai/veo3.1/fast/image-to-video"


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _new_tenant_key(settings: Settings, tenant: str) -> str:
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name)
        api_key, _ = await ApiKeyStore(redis, keys).create(tenant)
        return api_key
    finally:
        await redis.aclose()


@pytest.fixture
def client(system: ServerThread, settings: Settings) -> Iterator[httpx.Client]:
    """A client of a tenant of its own, so other tests' jobs do not move its series."""
    api_key = asyncio.run(_new_tenant_key(settings, "tenant-metrics"))
    with httpx.Client(base_url=system.url, headers=bearer(api_key), timeout=10) as http:
        yield http


def test_metrics_count_a_workload_of_jobs_webhooks_and_callbacks(
    client: httpx.Client, system: ServerThread, callback_receiver: CallbackReceiver
) -> None:
    before = scrape(system.url)
    jobs = [
        client.post(
            "/v1/jobs",
            json={**i2v_body(f"metrics-{n}"), "callback_url": f"{callback_receiver.url}/m{n}"},
        ).json()
        for n in range(3)
    ]
    for job in jobs:
        wait_for(
            client, job["id"], lambda j: is_terminal(j) and j["callback"]["status"] == "delivered"
        )
    after = scrape(system.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    tenant = {"endpoint": ENDPOINT, "tenant": "tenant-metrics"}
    assert delta("vidhook_jobs_accepted_total", **tenant) == 3
    assert delta("vidhook_jobs_finished_total", **tenant, status="completed") == 3
    # Veo 3.1 Fast, 4 s with audio: $0.60 each.
    assert delta("vidhook_estimated_spend_usd_total", **tenant) == pytest.approx(1.80)
    assert delta("vidhook_intake_seconds_count") >= 3
    assert delta("vidhook_fal_submits_total", outcome="accepted") >= 3
    assert delta("vidhook_fal_submit_seconds_count", outcome="accepted") >= 3
    assert delta("vidhook_fal_webhooks_received_total", outcome="applied") >= 3
    assert delta("vidhook_callback_attempts_total", outcome="delivered") >= 3
    for gauge in (
        "vidhook_queue_due_tasks",
        "vidhook_queue_tasks",
        "vidhook_queue_oldest_age_seconds",
        "vidhook_jobs_in_flight_at_fal",
        "vidhook_fal_leases",
        "vidhook_dispatch_paused",
    ):
        assert (gauge, frozenset()) in after, gauge
    assert value(after, "vidhook_queue_oldest_age_seconds") < 60


def test_a_forged_webhook_is_counted_as_refused_by_reason(system: ServerThread) -> None:
    before = scrape(system.url)
    answer = httpx.post(f"{system.url}/v1/fal/webhooks/job_nope?token=forged", json={})
    assert answer.status_code == 404
    after = scrape(system.url)
    refused = ("vidhook_fal_webhooks_refused_total", frozenset({("reason", "token")}))
    assert after[refused] - before.get(refused, 0.0) == 1


def test_series_follow_prometheus_naming(system: ServerThread) -> None:
    families = list(text_string_to_metric_families(httpx.get(f"{system.url}/metrics").text))
    ours = [family for family in families if family.name.startswith("vidhook_")]
    assert len(ours) >= 14
    for family in ours:
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


def test_a_worker_serves_its_own_metrics_on_worker_metrics_port(settings: Settings) -> None:
    port = free_port()
    # Its own slice of Redis: a worker on the session's keys would sweep (and take on) every
    # other test's jobs, and its stop would wait for them.
    worker = WorkerThread(isolated(settings, worker_metrics_port=port, shutdown_grace_s=2.0))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "no metrics port"
                time.sleep(0.05)
    finally:
        worker.stop()
    assert "vidhook_fal_submits_total" in text and "vidhook_callback_attempts_total" in text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
