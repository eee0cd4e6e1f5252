"""One intake for every door: (tenant, job request, idempotency key) → a recorded, queued job.

`/v1/jobs` passes its body as it came; the `/fal/` door builds the same job request from fal's
submit (endpoint from the path, input from the body, `fal_webhook` as the callback). The checks,
the price estimate and the one atomic Redis step are here and only here, so the two doors cannot
drift apart. Refusals are `service.domain_errors`; each door renders them in its own shape.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from service import metrics, plainjson
from service.budgets import OverSpendCap, resets_at
from service.context import ApiContext
from service.domain_errors import (
    IdempotencyKeyReused,
    JobNotFound,
    MediaStoreUnavailable,
    RequestRejected,
    SpendCapExceeded,
)
from service.jobs import CallbackFormat, Job, dispatch_task_id
from service.media import MediaError, store_large_data_uris
from service.ssrf import UnsafeTarget, check_url_syntax
from service.store import CreateOutcome, Task, now_ms
from service.validation import InputProblem, JobRequest, RequestInvalid, parse_job_request

MAX_IDEMPOTENCY_KEY_CHARS = 255
IDEMPOTENCY_KEY_LOC = ("headers", "Idempotency-Key")


@dataclass(frozen=True, slots=True)
class Accepted:
    """The job intake recorded, or the one an Idempotency-Key replay points at (`replayed`)."""

    job: Job
    replayed: bool


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


async def accept_job(
    ctx: ApiContext,
    tenant: str,
    body: Any,
    idempotency_key: str | None,
    *,
    callback_format: CallbackFormat = CallbackFormat.VIDHOOK,
) -> Accepted:
    """Validate `body` (a `POST /v1/jobs` request) and record its job with its dispatch task.

    Raises:
        RequestRejected: every problem with the body, its callback URL or the key, at once.
        IdempotencyKeyReused: the tenant used the key for a different body.
        JobNotFound: the key's earlier job is past its retention.
        MediaStoreUnavailable: a large data URI could not be stored.
        SpendCapExceeded: the job's estimated cost would pass the tenant's spend cap.
    """
    job_request = _checked(ctx, body, idempotency_key)
    try:
        fal_input = await store_large_data_uris(
            job_request.spec,
            job_request.input,
            ctx.media,
            min_bytes=ctx.settings.media_data_uri_min_bytes,
            expires_s=ctx.settings.media_url_ttl_s,
        )
    except MediaError as exc:
        raise MediaStoreUnavailable(str(exc)) from exc
    job = Job.queued(
        new_job_id(),
        tenant,
        job_request.endpoint,
        fal_input,
        callback_url=job_request.callback_url,
        metadata=job_request.metadata,
        estimated_cost_usd=ctx.prices.estimate(job_request.endpoint, job_request.input),
        created_at_ms=now_ms(),
        callback_format=callback_format,
        callback_events=job_request.callback_events,
    )
    # The last check before anything is written: the job encodes as every later read will.
    try:
        plainjson.dumps(job.to_resource())
    except (TypeError, ValueError) as exc:
        raise RequestRejected(
            [InputProblem((), f"The job cannot be encoded as JSON: {exc}", "unencodable")]
        ) from exc
    fingerprint = ""
    if idempotency_key:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        fingerprint = hashlib.sha256(canonical).hexdigest()
    # Counted against the tenant's caps in the create step itself (service/budgets.py).
    spend, spend_fields = ctx.settings.budget.spend_argument(
        ctx.store.keys, tenant, job.estimated_cost_usd, job.created_at_ms
    )
    try:
        outcome, stored_id = await ctx.store.create(
            job.id,
            tenant,
            {**job.to_new_hash(), **spend_fields},
            Task(dispatch_task_id(job.id), "dispatch_job", (job.id,)),
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            gated=True,
            spend=spend,
        )
    except OverSpendCap as exc:
        metrics.SPEND_CAP_REFUSALS.labels(tenant, exc.period).inc()
        raise SpendCapExceeded(
            exc.period,
            exc.spent_usd,
            exc.cap_usd,
            job.estimated_cost_usd or 0.0,
            resets_at(exc.period, job.created_at_ms),
        ) from exc
    if outcome is CreateOutcome.KEY_REUSED:
        raise IdempotencyKeyReused(stored_id)
    if outcome is CreateOutcome.REPLAYED:
        replayed = await ctx.store.get(stored_id)
        if replayed is None or replayed.tenant != tenant:
            raise JobNotFound(stored_id)
        return Accepted(replayed, replayed=True)
    metrics.JOBS_ACCEPTED.labels(job.endpoint, tenant).inc()
    return Accepted(job, replayed=False)


def _checked(ctx: ApiContext, body: Any, idempotency_key: str | None) -> JobRequest:
    problems: list[InputProblem] = []
    job_request: JobRequest | None = None
    try:
        job_request = parse_job_request(
            body, allowed_endpoint_patterns=ctx.settings.allowed_endpoint_patterns
        )
    except RequestInvalid as exc:
        problems += exc.problems
    if job_request is not None and job_request.callback_url:
        try:
            check_url_syntax(
                job_request.callback_url,
                allow_private_targets=ctx.settings.callback_allow_private_targets,
            )
        except UnsafeTarget as exc:
            problems.append(InputProblem(("callback_url",), str(exc), "unsafe_target"))
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        problems.append(
            InputProblem(
                IDEMPOTENCY_KEY_LOC,
                f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters",
                "too_short" if not idempotency_key else "too_long",
            )
        )
    if problems:
        raise RequestRejected(problems)
    assert job_request is not None
    return job_request
