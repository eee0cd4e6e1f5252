"""A job's input, kept in the media store once fal holds the request.

Redis keeps the input only while it may still be sent (until fal accepts the submit or the
job ends): it can be a megabyte of data URIs, and an active job's record must stay small. The
same atomic step that drops the need for it enqueues `keep_input` (workers/keep_input.py),
which copies the input, byte for byte as fal received it, to `jobs/{job_id}/input.json` in
the media store, and only then removes it from the job's hash. `GET /v1/jobs/{id}/input`
(and the dashboard's thumbnails) read it from there afterwards.
"""

from __future__ import annotations

import json
from typing import Any

from service.media import MediaError, MediaStore
from service.store import Task

TASK_FUNCTION = "keep_input"
CONTENT_TYPE = "application/json"


def archive_key(job_id: str) -> str:
    return f"jobs/{job_id}/input.json"


def keep_input_task_id(job_id: str) -> str:
    return f"keep_input:{job_id}"


def keep_input_task(job_id: str) -> Task:
    """The follow-up that moves the job's input out of Redis; one per job (a fixed id)."""
    return Task(keep_input_task_id(job_id), TASK_FUNCTION, (job_id,))


async def read_archived_input(media: MediaStore, key: str) -> Any:
    """The input stored under `key`; raises MediaError when the store cannot give it back."""
    raw = await media.read(key)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise MediaError(f"{key} is not the JSON vidhook wrote") from exc
