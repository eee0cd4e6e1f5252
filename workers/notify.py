"""notify_job: deliver a finished job to its client's callback URL, signed (Standard Webhooks).

The message id is the same on every try, so the client can drop duplicates; the body is
the same too, since it is built from the stored job. A job that came through the /fal/ door
with a `fal_webhook` gets fal's webhook payload instead of vidhook's event, signed the same way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from arq import Retry

from service import fal_view, metrics
from service.jobs import CallbackFormat, Job, event_type_for, iso_from_ms
from workers.context import worker_context

logger = logging.getLogger("vidhook.notify")


def callback_body(resource: dict[str, Any], event_type: str, timestamp: str | None) -> bytes:
    return json.dumps(
        {"type": event_type, "timestamp": timestamp, "data": resource}, separators=(",", ":")
    ).encode()


def payload_for(job: Job) -> bytes:
    """The callback body in the job's format."""
    if job.callback_format is CallbackFormat.FAL:
        return json.dumps(fal_view.webhook_payload(job), separators=(",", ":")).encode()
    resource = job.to_resource()
    # The delivery's own progress changes on every try; leaving it out keeps every retry's
    # body identical, as its webhook-id is.
    resource.pop("callback", None)
    return callback_body(resource, event_type_for(job.status), iso_from_ms(job.completed_at_ms))


async def notify_job(ctx: dict[str, Any], job_id: str) -> str:
    """POST the job's terminal state to its callback_url; raises Retry while worth retrying."""
    w = worker_context(ctx)
    job_try: int = ctx.get("job_try", 1)
    job = await w.store.get(job_id)
    if job is None or job.callback_url is None or not job.status.is_terminal:
        return "nothing to notify"
    if job.callback_status == "delivered":
        return "already delivered"
    result = await w.callbacks.send(
        job.callback_url, message_id=f"msg_{job.id}_{job.status.value}", payload=payload_for(job)
    )
    if result.delivered:
        metrics.CALLBACK_ATTEMPTS.labels("delivered").inc()
        logger.info(
            "callback.delivered",
            extra={"job_id": job_id, "tenant": job.tenant, "attempt": job_try},
        )
        await w.store.update_fields(
            job_id,
            {
                "callback_status": "delivered",
                "callback_attempts": job_try,
                "callback_last_error": "",
            },
        )
        return "delivered"
    gave_up = not result.retryable or job_try >= w.settings.callback_max_tries
    await w.store.update_fields(
        job_id,
        {
            "callback_status": "failed" if gave_up else "retrying",
            "callback_attempts": job_try,
            "callback_last_error": result.detail,
        },
    )
    metrics.CALLBACK_ATTEMPTS.labels("abandoned" if gave_up else "retrying").inc()
    if gave_up:
        logger.warning(
            "callback.abandoned",
            extra={"job_id": job_id, "tenant": job.tenant, "attempt": job_try,
                   "error": result.detail},
        )  # fmt: skip
        return "abandoned"
    raise Retry(defer=w.backoff_s(job_try))
