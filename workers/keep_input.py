"""keep_input: move a job's input out of Redis into the media store (service/input_archive.py).

Enqueued by the step after which the input is never sent again (fal accepted the submit, or
the job ended). Safe to run twice: the object's key is fixed per job and rewritten whole, and
the input leaves the job's hash only after the copy is stored. If the store keeps failing, the
input is dropped anyway after MIRROR_MAX_TRIES: Redis memory is bounded, the input's copy is
only for people looking at the job later.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from service.input_archive import CONTENT_TYPE, archive_key
from service.media import MediaError
from workers.context import worker_context

logger = logging.getLogger("vidhook.keep_input")


async def keep_input(ctx: dict[str, Any], job_id: str) -> str:
    w = worker_context(ctx)
    job_try: int = ctx.get("job_try", 1)
    (raw,) = await w.store.redis.hmget(w.store.keys.job(job_id), ["input"])  # type: ignore[misc]
    if not raw:
        return "nothing to keep"
    key = archive_key(job_id)
    try:
        await w.media.put(key, raw, CONTENT_TYPE)
    except MediaError as exc:
        if job_try < w.settings.mirror_max_tries:
            raise Retry(defer=w.backoff_s(job_try)) from exc
        logger.warning("keep_input.abandoned", extra={"job_id": job_id, "error": str(exc)})
        await w.store.update_fields(job_id, {"input": ""})
        return "store unavailable: input dropped"
    await w.store.update_fields(job_id, {"input": "", "input_key": key})
    return f"kept as {key}"
