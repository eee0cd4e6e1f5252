"""deliver_callback: one attempt of a job's callback delivery (see service/deliveries.py).

Each attempt is its own ARQ task; the delivery's place in the retry schedule lives in Redis,
so ARQ's try counter never decides when a delivery gives up. The first attempt to run writes
the delivery's body (built here from the job) once; every later attempt and redelivery sends
those same bytes under the same `webhook-id`, signed afresh (a new timestamp).

A job that came through the /fal/ door with a `fal_webhook` gets fal's webhook payload
instead of vidhook's event, signed the same way.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from service import deliveries, fal_view, metrics
from service.deliveries import DeliveryStatus
from service.jobs import CallbackFormat, Job, JobStatus, event_type_for, iso_from_ms
from service.store import now_ms
from workers.context import worker_context

logger = logging.getLogger("vidhook.notify")


def callback_body(resource: dict[str, Any], event_type: str, timestamp: str | None) -> bytes:
    return json.dumps(
        {"type": event_type, "timestamp": timestamp, "data": resource}, separators=(",", ":")
    ).encode()


def payload_for(job: Job, event: str | None = None) -> bytes:
    """The callback body announcing `event` (default: the job's status) in the job's format.

    `data` is the job as it is when the body is built: by the first attempt, normally at
    once, so for an event that the job has already moved past it shows the later state.
    """
    event = event or event_type_for(job.status)
    if job.callback_format is CallbackFormat.FAL and job.status.is_terminal:
        return json.dumps(fal_view.webhook_payload(job), separators=(",", ":")).encode()
    resource = job.to_resource()
    # The delivery's own progress changes on every try; leaving it out keeps every retry's
    # body identical, as its webhook-id is.
    resource.pop("callback", None)
    at_ms = job.completed_at_ms if job.status.is_terminal else job.updated_at_ms
    return callback_body(resource, event, iso_from_ms(at_ms))


async def deliver_callback(
    ctx: dict[str, Any], job_id: str, event: str, series: int = 0, attempt: int = 0
) -> str:
    """Make attempt `attempt` of series `series` of the job's `event` delivery, if it is
    still the one due; record it and schedule the next (all in service/deliveries.py)."""
    w = worker_context(ctx)
    delivery = await w.deliveries.get(job_id, event)
    if delivery is None:
        job = await w.store.get(job_id)
        if job is None or job.callback_url is None or (series, attempt) != (0, 0):
            await w.deliveries.forget(job_id, event)
            return "nothing to deliver"
        delivery = await w.deliveries.open(
            job_id=job_id,
            tenant=job.tenant,
            event=event,
            url=job.callback_url,
            body=payload_for(job, event),
            at_ms=now_ms(),
        )
    if not delivery.is_at(series, attempt):
        return f"stale ({delivery.status.value})"
    started = time.monotonic()
    result = await w.callbacks.send(
        delivery.url, message_id=delivery.message_id, payload=delivery.body, tenant=delivery.tenant
    )
    latency_ms = int((time.monotonic() - started) * 1000)
    recorded = await w.deliveries.record(delivery, result, at_ms=now_ms(), latency_ms=latency_ms)
    if recorded is None:
        return "stale (recorded meanwhile)"
    outcome = {
        DeliveryStatus.DELIVERED: "delivered",
        DeliveryStatus.SCHEDULED: "retrying",
        DeliveryStatus.DEAD_LETTERED: "abandoned",
    }[recorded.status]
    metrics.CALLBACK_ATTEMPTS.labels(outcome).inc()
    log_extra = {"job_id": job_id, "tenant": delivery.tenant, "event": event,
                 "attempt": recorded.tries, "series": series}  # fmt: skip
    if recorded.status is DeliveryStatus.DELIVERED:
        logger.info("callback.delivered", extra=log_extra)
    elif recorded.status is DeliveryStatus.DEAD_LETTERED:
        logger.warning("callback.dead_lettered", extra={**log_extra, "error": recorded.dead_reason})
    # The job's `callback` object shows its latest delivery; the log has every one.
    await w.store.update_fields(
        job_id,
        {
            "callback_status": recorded.job_status(),
            "callback_attempts": recorded.tries,
            "callback_last_error": recorded.last_error or "",
        },
    )
    return recorded.status.value


async def notify_job(ctx: dict[str, Any], job_id: str) -> str:
    """The task earlier versions enqueued for a finished job: starts its delivery instead.

    Kept so that such tasks still queued at an upgrade are not lost.
    """
    w = worker_context(ctx)
    job = await w.store.get(job_id)
    if job is None or job.callback_url is None or not job.status.is_terminal:
        return "nothing to notify"
    task = deliveries.first_attempt(w.store.keys, job_id, JobStatus(job.status))
    if task is not None:
        await w.store.update_fields(job_id, {}, follow_ups=[task])
    return "delivery started"
