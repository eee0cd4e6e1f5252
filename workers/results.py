"""fetch_result: read a finished request's result from fal when the webhook could not carry it."""

from __future__ import annotations

from typing import Any

from arq import Retry

from service.completions import FalOutcome, fal_error, finish_job
from service.fal import FalError, normalise_detail
from workers.context import worker_context


def _owner_app(endpoint: str) -> str:
    return "/".join(endpoint.split("/")[:2])


async def fetch_result(ctx: dict[str, Any], job_id: str) -> str:
    """GET the job's fal result URL and finish the job with it; Retry while fal is unreachable."""
    w = worker_context(ctx)
    job_try: int = ctx.get("job_try", 1)
    job = await w.store.get(job_id)
    if job is None or job.status.is_terminal:
        return "nothing to fetch"
    response_url = job.fal_response_url
    if response_url is None and job.fal_request_id:
        # The submit answer was lost; fal's documented owner/app form is the fallback.
        base = str(w.settings.fal_queue_base_url).rstrip("/")
        response_url = f"{base}/{_owner_app(job.endpoint)}/requests/{job.fal_request_id}"
    if response_url is None:
        return "no fal request to fetch"
    try:
        # As fal's own clients do: the result is read only once the status says COMPLETED.
        if (
            job.fal_status_url
            and (await w.fal.status(job.fal_status_url)).get("status") != "COMPLETED"
        ):
            raise Retry(defer=w.backoff_s(job_try))
        result = await w.fal.result(response_url)
    except FalError as exc:
        raise Retry(defer=w.backoff_s(job_try)) from exc
    if result.ok:
        outcome = FalOutcome(request_id=job.fal_request_id, result=result.body)
    else:
        detail = normalise_detail(result.body)
        message = f"fal answered {result.status_code} for the result"
        outcome = FalOutcome(
            request_id=job.fal_request_id, error=fal_error("fal_request_failed", message, detail)
        )
    await finish_job(w.store, job_id, outcome, source="result")
    return "fetched"
