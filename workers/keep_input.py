"""keep_inputs: move jobs' inputs out of Redis into the media store (service/input_archive.py).

The step after which a job's input is never sent again (fal accepted the submit, or the job
ended) lists the job in `{prefix}inputs:to_keep` and enqueues the one `keep_inputs` task, so a
burst of accepted submits costs one task, not one per job. The task keeps every listed input
that is due, a page at a time: the page's inputs read in one round trip, copied in one `put_many`,
recorded in one step. A job listed while the task runs finds it running and enqueues
nothing: so before it ends the task looks again, and retries itself when the next listed job
is due within BATCH_DELAY_S. A job listed in the instant between that look and the task's end,
or listed again after a failed copy, is picked up by the next enqueue or by the sweep
(workers/deadlines.py), whichever comes first.

Safe to run twice: each object's key is fixed per job and rewritten whole, and the input
leaves the job's hash only after the copy is stored. A job whose copy fails is listed again
after a back-off; after MIRROR_MAX_TRIES failures its input is dropped anyway: Redis memory is
bounded, the input's copy is only for people looking at the job later.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from service.input_archive import BATCH_DELAY_S, CONTENT_TYPE, KeptInputs, archive_key
from service.media import MediaError, StoredObject
from service.store import now_ms
from workers.context import WorkerContext, worker_context

logger = logging.getLogger("vidhook.keep_input")

# Jobs per page: the inputs one `put_many` writes.
PAGE = 200
# What a job's page entry says when its copy failed and it was listed again for later.
RELISTED = None


async def keep_inputs(ctx: dict[str, Any]) -> str:
    """Keep every listed input that is due; returns how many were kept and dropped."""
    w = worker_context(ctx)
    kept_inputs = KeptInputs(w.store.redis, w.store.keys)
    kept = dropped = 0
    while due := await kept_inputs.due(now_ms(), PAGE):
        raws = await kept_inputs.inputs(due)
        # Nothing to copy for a job kept by an earlier run, or expired: it only leaves the list.
        with_input = {job_id: raw for job_id, raw in zip(due, raws, strict=True) if raw}
        media_keys = {job_id: archive_key(job_id) for job_id in with_input}
        stored = await w.media.put_many(
            {media_keys[job_id]: raw for job_id, raw in with_input.items()}, CONTENT_TYPE
        )
        archived = dict.fromkeys(due, "")
        for job_id, media_key in media_keys.items():
            key = await _archived_key(w, kept_inputs, job_id, stored[media_key])
            if key is RELISTED:
                del archived[job_id]
                continue
            archived[job_id] = key
            if key:
                kept += 1
            else:
                dropped += 1
        await kept_inputs.record(archived)
    # Jobs listed during this run found it running and enqueued nothing: run again for them.
    # Failed copies due later wait with no task queued for them (a queued task would hold back
    # the next burst's enqueue until then): the sweep enqueues one once they are due.
    next_due_ms = await kept_inputs.next_due_ms()
    if next_due_ms is not None and next_due_ms <= now_ms() + BATCH_DELAY_S * 1000:
        raise Retry(defer=max(0.0, next_due_ms - now_ms()) / 1000)
    return f"kept {kept}, dropped {dropped}"


async def _archived_key(
    w: WorkerContext, kept_inputs: KeptInputs, job_id: str, copy: StoredObject | MediaError
) -> str | None:
    """The media key the job's input is now copied to; '' when it is dropped after its last
    failed try; RELISTED when the copy failed and the job waits for another try."""
    if isinstance(copy, StoredObject):
        return copy.key
    failures = await kept_inputs.failed(job_id)
    if failures < w.settings.mirror_max_tries:
        await kept_inputs.relist(job_id, now_ms() + int(w.backoff_s(failures) * 1000))
        return RELISTED
    logger.warning("keep_input.abandoned", extra={"job_id": job_id, "error": str(copy)})
    return ""


async def keep_input(ctx: dict[str, Any], job_id: str) -> str:
    """One job's input, as the version before keep_inputs enqueued it per job: the job joins
    the list and is kept in this same run."""
    w = worker_context(ctx)
    await w.store.redis.zadd(w.store.keys.inputs_to_keep, {job_id: now_ms()}, nx=True)
    return await keep_inputs(ctx)
