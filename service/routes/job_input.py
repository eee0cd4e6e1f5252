"""GET /v1/jobs/{id}/input: the input a job was submitted with, exactly as fal receives it.

Not part of the job resource: an input can hold megabytes of data URIs, which every read of
the job and every callback would otherwise carry. While the job may still be submitted the
input is in Redis; once fal has it (or the job ended) it is read back from the media store
(service/input_archive.py). `kept` says which; `null` when neither has it (a job from before
inputs were kept, or a store that failed while keeping it).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import owned_job
from service.context import ApiContext
from service.errors import StorageUnavailable
from service.input_archive import read_archived_input
from service.media import MediaError

logger = logging.getLogger("vidhook.job_input")


async def get_job_input(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    job = await owned_job(request)
    fal_input, kept = job.input, "redis" if job.input is not None else None
    if fal_input is None and job.input_key:
        try:
            fal_input, kept = await read_archived_input(ctx.media, job.input_key), "media"
        except MediaError as exc:
            logger.warning("job_input.unreadable", extra={"job_id": job.id, "error": str(exc)})
            raise StorageUnavailable(
                "The job's input could not be read from the media store."
            ) from exc
    return JSONResponse(
        {"object": "job_input", "id": job.id, "endpoint": job.endpoint, "input": fal_input,
         "kept": kept}
    )  # fmt: skip
