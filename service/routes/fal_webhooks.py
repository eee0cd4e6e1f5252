"""POST /v1/fal/webhooks/{job_id}?token=…: fal's completion, verified before a byte is trusted."""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import metrics
from service.bodies import read_limited
from service.completions import finish_job, outcome_from_webhook
from service.context import ApiContext
from service.errors import MalformedBody, NotFound, PayloadTooLarge, Unauthorized
from service.fal_webhooks import WebhookRejected

logger = logging.getLogger("vidhook.webhooks")


async def receive_fal_webhook(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    job_id = request.path_params["job_id"]
    token = request.query_params.get("token", "")
    # The URL names the job and carries its token, derived from the job id with a server key:
    # a forged URL is refused with no I/O, before any signature work, and without saying
    # whether the job exists.
    if not ctx.settings.webhook_tokens.matches(job_id, token):
        metrics.WEBHOOKS_REFUSED.labels("token").inc()
        raise NotFound("No such webhook.")
    try:
        body = await read_limited(request, ctx.settings.max_webhook_bytes)
    except PayloadTooLarge:
        metrics.WEBHOOKS_REFUSED.labels("too_large").inc()
        raise
    try:
        delivery = await ctx.verifier.verify(request.headers, body)
    except WebhookRejected as exc:
        metrics.WEBHOOKS_REFUSED.labels("signature").inc()
        logger.warning(
            "fal_webhook.refused",
            extra={"job_id": job_id, "reason": "signature", "error": str(exc)},
        )
        raise Unauthorized(f"Webhook signature rejected: {exc}") from exc
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        metrics.WEBHOOKS_REFUSED.labels("malformed").inc()
        raise MalformedBody("The webhook body is not JSON.") from exc
    if not isinstance(payload, dict):
        metrics.WEBHOOKS_REFUSED.labels("malformed").inc()
        raise MalformedBody("The webhook body is not a JSON object.")
    request_id = payload.get("request_id") or delivery.request_id
    outcome = outcome_from_webhook(payload, request_id)
    moved = await finish_job(
        ctx.store, job_id, outcome, source="webhook", mirror_outputs=ctx.settings.media_mirror
    )
    if moved.previous is None:
        metrics.WEBHOOKS_REFUSED.labels("unknown_job").inc()
        raise NotFound("No such webhook.")  # a genuine token for a job past its retention
    metrics.WEBHOOKS_RECEIVED.labels("applied" if moved.applied else "duplicate").inc()
    logger.info(
        "fal_webhook.applied" if moved.applied else "fal_webhook.duplicate",
        extra={"job_id": job_id, "fal_request_id": request_id, "previous": moved.previous},
    )
    return JSONResponse({"received": True, "applied": moved.applied})
