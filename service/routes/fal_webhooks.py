"""POST /v1/fal/webhooks/{job_id}?token=…: fal's completion, verified before a byte is trusted."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import metrics, plainjson
from service.bodies import malformed, read_limited
from service.completions import finish_job, outcome_from_webhook
from service.context import ApiContext
from service.errors import MalformedBody, NotFound, PayloadTooLarge, Unavailable, WebhookRefused
from service.fal_webhooks import JwksUnavailable, VerifiedDelivery, WebhookRejected

logger = logging.getLogger("vidhook.webhooks")

# fal redelivers for hours; a JWKS outage is usually shorter than this.
JWKS_RETRY_AFTER_S = 30


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
    except JwksUnavailable as exc:
        logger.warning("cannot verify fal webhook for %s: %s", job_id, exc)
        raise Unavailable(
            "fal's signing keys cannot be fetched right now; deliver again later.",
            retry_after_s=JWKS_RETRY_AFTER_S,
        ) from exc
    except WebhookRejected as exc:
        metrics.WEBHOOKS_REFUSED.labels("signature").inc()
        logger.warning(
            "fal_webhook.refused",
            extra={"job_id": job_id, "reason": "signature", "error": str(exc)},
        )
        raise WebhookRefused(f"Webhook signature rejected: {exc}") from exc
    try:
        payload = plainjson.loads(body)
    except plainjson.NotJson as exc:
        metrics.WEBHOOKS_REFUSED.labels("malformed").inc()
        raise malformed(exc) from exc
    if not isinstance(payload, dict):
        metrics.WEBHOOKS_REFUSED.labels("malformed").inc()
        raise MalformedBody("The webhook body is not a JSON object.")
    if plainjson.issues(payload):
        metrics.WEBHOOKS_REFUSED.labels("malformed").inc()
        raise MalformedBody("The webhook body holds values that cannot be stored as JSON.")
    request_id = await _check_request(ctx, job_id, delivery, payload)
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


async def _check_request(
    ctx: ApiContext, job_id: str, delivery: VerifiedDelivery, payload: dict[str, Any]
) -> str:
    """The fal request the delivery is about, if it may be this job's; else WebhookRefused.

    fal signs deliveries for every account with the same keys, so a valid signature says only
    that fal sent it, not for which job: anyone holding this job's URL could replay a
    delivery of their own request. The request named must be the one this job submitted
    (when known yet: fal's webhook can beat its own submit answer), and the user fal signed
    for must be FAL_USER_ID when that is set (which also closes that early window).
    """
    body_id = payload.get("request_id")
    claimed = body_id if isinstance(body_id, str) and body_id else delivery.request_id
    # The signed header may carry the gateway id when fal retried the request itself.
    signed_ids = {claimed, payload.get("gateway_request_id")}
    status, known = await ctx.store.fields(job_id, "status", "fal_request_id")
    if status is None:
        raise NotFound("No such webhook.")
    reason = None
    pinned_user = ctx.settings.fal_user_id
    if pinned_user is not None and delivery.user_id != pinned_user:
        reason = "signed for another fal user"
    elif delivery.request_id not in signed_ids:
        reason = "the signed request id is not the body's"
    elif known is not None and claimed != known:
        reason = "signed for another fal request"
    if reason is None:
        return claimed
    await ctx.store.record_event(
        job_id,
        {
            "event": "webhook_refused",
            "reason": reason,
            "fal_request_id": plainjson.printable(claimed),
            "fal_user_id": plainjson.printable(delivery.user_id),
        },
        counter="refused_webhooks",
    )
    logger.warning("refused fal webhook for %s: %s (%s)", job_id, reason, claimed)
    raise WebhookRefused(f"Webhook refused: {reason}.")
