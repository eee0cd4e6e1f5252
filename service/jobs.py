"""The job: its states, the rules between them, and the resource clients see."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


class CallbackFormat(StrEnum):
    """How a job's callback body is shaped; both are signed per Standard Webhooks."""

    VIDHOOK = "vidhook"  # {"type": "job.completed", "timestamp", "data": <job resource>}
    FAL = "fal"  # fal's webhook payload, for jobs that came in through the /fal/ door


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset(JobStatus) - TERMINAL_STATUSES

# The one table of allowed moves: from each status, the statuses a job may move to. The
# store's transition step is handed the from-states for its target, derived from this table,
# and refuses any other move atomically. Every active status may end (completed, failed,
# cancelled); a terminal status never changes, so the first terminal write wins.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = MappingProxyType(
    {
        JobStatus.QUEUED: frozenset({JobStatus.SUBMITTING}) | TERMINAL_STATUSES,
        # submitting -> submitting is a new submit attempt (a retry after fal was unreachable,
        # or a resubmit after an unclear submit's grace period): it may be billed, so it is
        # an event of its own. fal's webhook can beat its own submit answer, hence -> in_progress.
        # submitting -> queued: fal refused our key (401/403), nothing was created, and
        # dispatch paused for everyone; the job waits in line again (service/budgets.py).
        JobStatus.SUBMITTING: frozenset(
            {JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.SUBMITTED, JobStatus.IN_PROGRESS}
        )
        | TERMINAL_STATUSES,
        JobStatus.SUBMITTED: frozenset({JobStatus.IN_PROGRESS}) | TERMINAL_STATUSES,
        # No in_progress -> in_progress: fal saying "still running" again is not a change.
        JobStatus.IN_PROGRESS: TERMINAL_STATUSES,
        **{status: frozenset[JobStatus]() for status in TERMINAL_STATUSES},
    }
)


# The one exception to "a terminal state never changes": a failure vidhook itself decided
# (gave up submitting, deadline passed, fal repeatedly said it did not know the request) is a
# guess about a request fal may still finish, and a result the account has paid for must not
# be thrown away. So failed -> completed is allowed when, and only when, the job records the
# failure as vidhook's own (`failure_origin` = VIDHOOK_ORIGIN, a guarded step); a failure fal
# reported stays final. The client is told twice (job.failed, then job.completed) and both
# outcomes stay in the job's notes. See the README's reliability section for the trade-off.
VIDHOOK_ORIGIN = "vidhook"
REVISIONS: Mapping[JobStatus, frozenset[JobStatus]] = MappingProxyType(
    {JobStatus.COMPLETED: frozenset({JobStatus.FAILED})}
)


def input_sha256(fal_input: Any) -> str:
    """The SHA-256 (hex) of an input's canonical JSON: sorted keys, no spaces, UTF-8.

    fal's request listing returns each request's `json_input`; hashing both sides the same way
    matches them whatever key order or spacing either used.
    """
    canonical = json.dumps(fal_input, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def can_move(from_status: JobStatus, to: JobStatus) -> bool:
    return to in TRANSITIONS[from_status]


def sources_of(to: JobStatus) -> frozenset[JobStatus]:
    """The statuses from which a job may move to `to` (empty for none)."""
    return _SOURCES[to]


_SOURCES: Mapping[JobStatus, frozenset[JobStatus]] = MappingProxyType(
    {
        to: frozenset(source for source, targets in TRANSITIONS.items() if to in targets)
        for to in JobStatus
    }
)


# ARQ job ids for the work done on a vidhook job. Dispatch uses the vidhook id itself, so
# enqueuing the same job twice is a no-op in ARQ.
def dispatch_task_id(job_id: str) -> str:
    return job_id


def notify_task_id(job_id: str) -> str:
    return f"notify:{job_id}"


def mirror_task_id(job_id: str) -> str:
    return f"mirror:{job_id}"


def fetch_result_task_id(job_id: str) -> str:
    return f"fetch:{job_id}"


def settle_task_id(job_id: str) -> str:
    return f"settle:{job_id}"


def reconcile_task_id(job_id: str) -> str:
    """The deferred fetch_result scheduled at submit, in case fal's webhook never comes."""
    return f"reconcile:{job_id}"


def event_type_for(status: JobStatus) -> str:
    """The callback event type announcing a status, e.g. `job.completed`."""
    return f"job.{status.value}"


# The statuses a callback can announce. queued and submitting are vidhook's own bookkeeping
# (the POST's answer already says queued); in_progress is only known where vidhook asks fal
# anyway (a status poll, a webhook without its result), since fal's webhook only says "done".
CALLBACK_STATUSES = (
    JobStatus.SUBMITTED,
    JobStatus.IN_PROGRESS,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)
CALLBACK_EVENT_TYPES = tuple(event_type_for(status) for status in CALLBACK_STATUSES)
DEFAULT_CALLBACK_EVENTS = tuple(
    event_type_for(status) for status in CALLBACK_STATUSES if status.is_terminal
)


def iso_from_ms(value_ms: int | None) -> str | None:
    if value_ms is None:
        return None
    return (
        datetime.fromtimestamp(value_ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def fal_request_fields(
    status_url: str | None, response_url: str | None, cancel_url: str | None
) -> dict[str, str]:
    """The job fields for fal's request URLs. fal's status and cancel URLs are normally its
    response URL plus `/status` and `/cancel` (fal-protocol §1.2): those are not stored, and
    `Job.from_hash` derives them again; a URL of any other form is kept as fal gave it."""
    fields = {"fal_response_url": response_url or ""}
    for name, url, suffix in (
        ("fal_status_url", status_url, "/status"),
        ("fal_cancel_url", cancel_url, "/cancel"),
    ):
        derived = f"{response_url}{suffix}" if response_url else None
        fields[name] = "" if url == derived else url or ""
    return fields


def _fal_url(stored: str | None, response_url: str | None, suffix: str) -> str | None:
    if stored:
        return stored
    return f"{response_url}{suffix}" if response_url else None


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored in its Redis hash (see store.py for the field names)."""

    id: str
    tenant: str
    endpoint: str
    status: JobStatus
    created_at_ms: int
    updated_at_ms: int
    input: dict[str, Any] | None
    callback_url: str | None
    metadata: dict[str, Any] | None
    estimated_cost_usd: float | None
    fal_request_id: str | None
    fal_status_url: str | None
    fal_response_url: str | None
    fal_cancel_url: str | None
    submitted_at_ms: int | None
    submit_pending_since_ms: int | None
    submit_attempts: int
    resubmits: int
    completed_at_ms: int | None
    result: Any
    error: dict[str, Any] | None
    callback_status: str | None
    callback_attempts: int
    callback_last_error: str | None
    callback_format: CallbackFormat = CallbackFormat.VIDHOOK
    cancel_requested_at_ms: int | None = None
    assets: list[dict[str, Any]] | None = None
    mirror: dict[str, Any] | None = None
    # The canonical SHA-256 of the input (fal_platform.input_sha256): finds the request in
    # fal's listing after the input itself is dropped.
    input_sha256: str | None = None
    # What made the last submit unclear (a timeout, a 504, a worker lost mid-POST).
    submit_unclear_cause: str | None = None
    failure_origin: str | None = None
    unknown_request_streak: int = 0
    # Where the input went once it left Redis (service/input_archive.py), if it was kept.
    input_key: str | None = None
    # The callback event types the client asked for (CALLBACK_EVENT_TYPES), stored
    # space-separated in `callback_events`, which the transition step reads.
    callback_events: tuple[str, ...] = DEFAULT_CALLBACK_EVENTS
    # Queued and waiting in its tenant's line for an in-flight slot (service/budgets.py).
    parked: bool = False

    @classmethod
    def queued(
        cls,
        job_id: str,
        tenant: str,
        endpoint: str,
        fal_input: dict[str, Any],
        *,
        callback_url: str | None,
        metadata: dict[str, Any] | None,
        estimated_cost_usd: float | None,
        created_at_ms: int,
        callback_format: CallbackFormat = CallbackFormat.VIDHOOK,
        callback_events: tuple[str, ...] = DEFAULT_CALLBACK_EVENTS,
    ) -> Job:
        """A new job as intake records it."""
        return cls(
            id=job_id, tenant=tenant, endpoint=endpoint, status=JobStatus.QUEUED,
            created_at_ms=created_at_ms, updated_at_ms=created_at_ms, input=fal_input,
            callback_url=callback_url, metadata=metadata, estimated_cost_usd=estimated_cost_usd,
            fal_request_id=None, fal_status_url=None, fal_response_url=None, fal_cancel_url=None,
            submitted_at_ms=None, submit_pending_since_ms=None, submit_attempts=0, resubmits=0,
            completed_at_ms=None, result=None, error=None, callback_status=None,
            callback_attempts=0, callback_last_error=None, callback_format=callback_format,
            callback_events=callback_events,
        )  # fmt: skip

    def to_new_hash(self) -> dict[str, str | int | float]:
        """The fields a new job's Redis hash starts with (the inverse of `from_hash`).

        The input is stored as the exact JSON that dispatch sends to fal.
        """
        fields: dict[str, str | int | float] = {
            "id": self.id,
            "tenant": self.tenant,
            "endpoint": self.endpoint,
            "status": self.status.value,
            "created_at_ms": self.created_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "input": json.dumps(self.input, separators=(",", ":")),
            "submit_attempts": self.submit_attempts,
            "input_sha256": input_sha256(self.input),
        }
        if self.callback_url:
            fields["callback_url"] = self.callback_url
            # Absent means the default, to the transition step (deliveries.first_attempt)
            # as to `from_hash`: most jobs need not store it.
            if self.callback_events != DEFAULT_CALLBACK_EVENTS:
                fields["callback_events"] = " ".join(self.callback_events)
            if self.callback_format is not CallbackFormat.VIDHOOK:
                fields["callback_format"] = self.callback_format.value
        if self.metadata is not None:
            fields["metadata"] = json.dumps(self.metadata, separators=(",", ":"))
        if self.estimated_cost_usd is not None:
            fields["estimated_cost_usd"] = self.estimated_cost_usd
        return fields

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Job:
        fields = {key.decode(): value.decode() for key, value in raw.items()}

        def text(name: str) -> str | None:
            value = fields.get(name)
            return value if value else None

        def number(name: str) -> int | None:
            value = fields.get(name)
            return int(value) if value else None

        def decoded(name: str) -> Any:
            value = fields.get(name)
            return json.loads(value) if value else None

        cost = text("estimated_cost_usd")
        return cls(
            id=fields["id"],
            tenant=fields["tenant"],
            endpoint=fields["endpoint"],
            status=JobStatus(fields["status"]),
            created_at_ms=int(fields["created_at_ms"]),
            updated_at_ms=int(fields.get("updated_at_ms") or fields["created_at_ms"]),
            input=decoded("input"),
            callback_url=text("callback_url"),
            metadata=decoded("metadata"),
            estimated_cost_usd=float(cost) if cost else None,
            fal_request_id=text("fal_request_id"),
            fal_status_url=_fal_url(text("fal_status_url"), text("fal_response_url"), "/status"),
            fal_response_url=text("fal_response_url"),
            fal_cancel_url=_fal_url(text("fal_cancel_url"), text("fal_response_url"), "/cancel"),
            submitted_at_ms=number("submitted_at_ms"),
            submit_pending_since_ms=number("submit_pending_since_ms"),
            submit_attempts=number("submit_attempts") or 0,
            resubmits=number("resubmits") or 0,
            completed_at_ms=number("completed_at_ms"),
            result=decoded("result"),
            error=decoded("error"),
            callback_status=text("callback_status"),
            callback_attempts=number("callback_attempts") or 0,
            callback_last_error=text("callback_last_error"),
            callback_format=CallbackFormat(text("callback_format") or CallbackFormat.VIDHOOK),
            cancel_requested_at_ms=number("cancel_requested_at_ms"),
            assets=decoded("assets"),
            mirror=decoded("mirror"),
            input_sha256=text("input_sha256"),
            submit_unclear_cause=text("submit_unclear_cause"),
            failure_origin=text("failure_origin"),
            unknown_request_streak=number("unknown_request_streak") or 0,
            input_key=text("input_key"),
            # Jobs recorded before event selection existed had the terminal ones.
            callback_events=tuple((text("callback_events") or "").split())
            or DEFAULT_CALLBACK_EVENTS,
            parked=fields.get("parked") == "1",
        )

    def to_resource(self) -> dict[str, Any]:
        """The job as the API and callbacks show it to its tenant."""
        resource: dict[str, Any] = {
            "id": self.id,
            "object": "job",
            "status": self.status.value,
            "endpoint": self.endpoint,
            "created_at": iso_from_ms(self.created_at_ms),
            "updated_at": iso_from_ms(self.updated_at_ms),
            "submitted_at": iso_from_ms(self.submitted_at_ms),
            "completed_at": iso_from_ms(self.completed_at_ms),
            "cancel_requested_at": iso_from_ms(self.cancel_requested_at_ms),
            "fal_request_id": self.fal_request_id,
            # A second paid submission is rare (an unclear submit and no webhook within the
            # grace period) but must never be silent.
            "submissions": {"attempts": self.submit_attempts, "resubmits": self.resubmits},
            "estimated_cost_usd": self.estimated_cost_usd,
            "metadata": self.metadata,
            "result": self.result if self.status is JobStatus.COMPLETED else None,
            "error": self.error if self.status is JobStatus.FAILED else None,
            # Copies of the result's files in our own store, beside `result` (fal's own URLs).
            "assets": (self.assets or []) if self.status is JobStatus.COMPLETED else [],
            "links": {"self": f"/v1/jobs/{self.id}"},
        }
        if self.mirror is not None:
            resource["mirror"] = self.mirror
        if self.status is JobStatus.COMPLETED and self.error is not None:
            # vidhook had failed the job itself before fal's result came: say so.
            resource["superseded"] = {"status": JobStatus.FAILED.value, "error": self.error}
        if self.callback_url is not None:
            resource["callback"] = {
                "url": self.callback_url,
                "format": self.callback_format.value,
                "events": list(self.callback_events),
                "status": self.callback_status or "pending",
                "attempts": self.callback_attempts,
                "last_error": self.callback_last_error,
                "links": {"deliveries": f"/v1/jobs/{self.id}/deliveries"},
            }
        return resource


_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}

JOB_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Why a job failed.",
    "required": ["type", "message"],
    "properties": {
        "type": {
            "type": "string",
            "description": "fal_rejected (refused at submit), fal_request_failed (failed after "
            "submit), dispatch_failed (fal unreachable after every retry), deadline_exceeded "
            "(not finished within JOB_DEADLINE_S), fal_request_unknown (fal repeatedly did not "
            "know the request). The last three are vidhook's own: should fal's result still "
            "come, the job becomes completed and the callback says so.",
            "examples": [
                "fal_rejected",
                "fal_request_failed",
                "dispatch_failed",
                "deadline_exceeded",
            ],
        },
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "fal's detail, with paths into the job's input.",
            "items": {"$ref": "#/components/schemas/FieldError"},
        },
        "fal_detail": {"type": "array", "description": "fal's own `detail`, as fal sent it."},
    },
}

ASSET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One output file of the job, copied from fal into vidhook's media store.",
    "required": ["kind", "source_url", "url", "key", "bytes", "sha256", "content_type"],
    "properties": {
        "kind": {"type": "string", "description": "Where in `result` it was, e.g. `video`."},
        "source_url": {"type": "string", "description": "fal's URL it was copied from."},
        "url": {"type": "string", "description": "Pre-signed or public URL of the copy."},
        "key": {"type": "string", "description": "Object key in the media store."},
        "bytes": {"type": "integer"},
        "sha256": {"type": "string"},
        "content_type": {"type": "string"},
    },
}

JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "status", "endpoint", "created_at", "links"],
    "properties": {
        "id": {"type": "string", "examples": ["job_0d1f1b5048ef40689edc0daec13db03b"]},
        "object": {"const": "job"},
        "status": {"enum": [status.value for status in JobStatus]},
        "endpoint": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {**_TIMESTAMP, "description": "Time of the last status change."},
        "submitted_at": _TIMESTAMP,
        "completed_at": _TIMESTAMP,
        "cancel_requested_at": {
            **_TIMESTAMP,
            "description": "When a cancel was asked for a job already at fal; it becomes "
            "`cancelled` when fal confirms, or keeps the outcome fal reports.",
        },
        "fal_request_id": {"type": ["string", "null"]},
        "submissions": {
            "type": "object",
            "description": "POSTs to fal for this job; resubmits counts those sent after an "
            "unclear earlier submit (each may be billed).",
            "properties": {"attempts": {"type": "integer"}, "resubmits": {"type": "integer"}},
        },
        "estimated_cost_usd": {"type": ["number", "null"]},
        "metadata": {"type": ["object", "null"]},
        "result": {
            "description": "fal's output object as fal sent it, once completed, e.g. "
            '{"video": {"url", "content_type", "file_name", "file_size"}}.',
        },
        "error": {"oneOf": [{"type": "null"}, JOB_ERROR_SCHEMA]},
        "assets": {
            "type": "array",
            "description": "The result's files copied into vidhook's media store (empty until "
            "mirrored, or when mirroring is off or failed).",
            "items": ASSET_SCHEMA,
        },
        "mirror": {
            "type": "object",
            "description": "Progress of copying the result's files, when mirroring is on. The "
            "callback is sent once this is mirrored, skipped or failed.",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["pending", "mirrored", "skipped", "failed"]},
                "error": {"type": ["string", "null"]},
                "attempts": {"type": "integer"},
            },
        },
        "superseded": {
            "type": "object",
            "description": "On a completed job: the failure vidhook had reported before fal's "
            "result came (the job's callback was sent for both).",
            "properties": {"status": {"const": "failed"}, "error": JOB_ERROR_SCHEMA},
        },
        "links": {
            "type": "object",
            "required": ["self"],
            "properties": {"self": {"type": "string"}},
        },
        "callback": {
            "type": "object",
            "description": "Delivery state of the job's callback, when it has a callback_url.",
            "properties": {
                "url": {"type": "string"},
                "format": {
                    "enum": [f.value for f in CallbackFormat],
                    "description": "fal: the job came by the /fal/ door with `fal_webhook`, and "
                    "the callback body is fal's webhook payload.",
                },
                "events": {
                    "type": "array",
                    "items": {"enum": list(CALLBACK_EVENT_TYPES)},
                    "description": "The event types this job's callbacks announce.",
                },
                "status": {
                    "enum": ["pending", "retrying", "delivered", "dead_lettered", "failed"],
                    "description": "The latest delivery's state (each event's own is at "
                    "`links.deliveries`). dead_lettered: its retry schedule ran out, or the "
                    "receiver answered 410 or the URL is refused; POST "
                    "/v1/jobs/{id}/callback/redeliver sends it again. failed: the same, as "
                    "recorded by versions before the delivery log.",
                },
                "attempts": {
                    "type": "integer",
                    "description": "Attempts of the latest delivery's current series.",
                },
                "last_error": {"type": ["string", "null"]},
                "links": {
                    "type": "object",
                    "properties": {"deliveries": {"type": "string"}},
                },
            },
        },
    },
}
