"""The OpenAPI 3.1 document, generated from the definitions the code itself runs on.

Endpoint inputs come from the catalog, the job request from the validator, the job resource
and problem shapes from the modules that render them. Nothing here is a hand-kept copy of a
schema that also lives elsewhere.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from service.budgets import USAGE_SCHEMA
from service.catalog import ENDPOINTS, JSON_SCHEMA_DIALECT, input_json_schema, schema_name
from service.deliveries import DELIVERY_SCHEMA
from service.errors import FIELD_ERROR_SCHEMA, PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA
from service.events import EVENT_SCHEMA
from service.files import UPLOAD_MEDIA_TYPES
from service.jobs import CALLBACK_EVENT_TYPES, JOB_SCHEMA, JobStatus
from service.routes.files import FILE_SCHEMA
from service.stats import STATS_SCHEMA
from service.validation import job_request_json_schema

REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "The body is not JSON.",
        401: "Missing or unknown API key.",
        404: "No such resource for this tenant.",
        409: "Idempotency-Key reused for a different request, or the job already ended.",
        402: "The job's estimated cost would take the tenant past a daily or monthly spend "
        "cap (TENANT_LIMITS); type `https://vidhook.dev/problems/spend-cap-exceeded`, with "
        "`period`, `spent_usd`, `cap_usd`, `estimated_cost_usd` and `resets_at`. Nothing was "
        "recorded and nothing reaches fal.",
        413: "The body (or the file in it) is larger than the limit.",
        415: "The body is not of a media type this operation accepts.",
        422: "The request is not valid; every problem is listed.",
        403: "Not a delivery fal signed for this job.",
        502: "fal could not be reached; nothing was changed.",
        503: "A dependency (Redis or the media store; for webhooks also fal's JWKS) is "
        "unreachable, or (event streams) this process serves as many as it may; retry after "
        "Retry-After seconds (a create: same Idempotency-Key).",
    }
    retry_after = {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds to wait before retrying.",
        }
    }
    return {
        str(code): {
            "description": reasons[code],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref("Problem")}},
            **({"headers": retry_after} if code == 503 else {}),
        }
        for code in codes
    }


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    return {**parameter, "description": description} if description else parameter


def _event_stream(description: str) -> dict[str, Any]:
    # The schema describes one event (as OpenAPI 3.2's itemSchema does for event streams).
    event = {
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": r"^\d+-\d+$"},
            "event": {"type": "string", "pattern": r"^job\.[a-z_]+$"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": _ref("JobEvent"),
            },
        },
    }
    return {"description": description, "content": {"text/event-stream": {"schema": event}}}


LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": r"^\d{1,20}-\d{1,20}$"},
    "description": "Resume after this event (the `id:` of the last event received).",
}


def _version() -> str:
    try:
        return version("vidhook")
    except PackageNotFoundError:
        return "0.0.0"


def build_openapi(*, passthrough: bool) -> dict[str, Any]:
    """The whole OpenAPI document; `passthrough` when ALLOWED_ENDPOINTS admits other endpoints."""
    job_response = {
        **_json(_ref("Job"), "The job."),
        "headers": {"Location": {"schema": {"type": "string"}, "description": "The job's URL."}},
    }
    schemas: dict[str, Any] = {
        schema_name(spec): input_json_schema(spec, include_dialect=False)
        for spec in ENDPOINTS.values()
    }
    schemas.update(
        JobRequest=job_request_json_schema(input_ref_template=REF, passthrough=passthrough),
        Job=JOB_SCHEMA,
        JobEvent={
            **EVENT_SCHEMA,
            "properties": {
                **EVENT_SCHEMA["properties"],
                "job": {**_ref("Job"), "description": "The finished job (a job's terminal event)."},
            },
        },
        FieldError=FIELD_ERROR_SCHEMA,
        JobList={
            "type": "object",
            "required": ["object", "data", "next_cursor"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": _ref("Job")},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        File=FILE_SCHEMA,
        Problem=PROBLEM_SCHEMA,
        Stats=STATS_SCHEMA,
        Usage=USAGE_SCHEMA,
        JobInput={
            "type": "object",
            "required": ["object", "id", "endpoint", "input", "kept"],
            "properties": {
                "object": {"const": "job_input"},
                "id": {"type": "string"},
                "endpoint": {"type": "string"},
                "input": {"type": ["object", "null"]},
                "kept": {
                    "enum": ["redis", "media", None],
                    "description": "Where the input was read from: Redis while the job may "
                    "still be submitted, the media store afterwards; null when neither has it.",
                },
            },
        },
        EndpointList={
            "type": "object",
            "required": ["endpoints", "passthrough"],
            "properties": {
                "endpoints": {"type": "array", "items": {"type": "object"}},
                "passthrough": {"type": "array", "items": {"type": "object"}},
            },
        },
        FalWebhook={
            "type": "object",
            "description": "fal's completion webhook (fal's format, signed by fal).",
            "properties": {
                "request_id": {"type": "string"},
                "gateway_request_id": {"type": "string"},
                "status": {"enum": ["OK", "ERROR"]},
                "payload": {},
                "payload_error": {"type": "string"},
                "error": {"type": "string"},
            },
        },
        CallbackEvent={
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"enum": list(CALLBACK_EVENT_TYPES)},
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the job finished (terminal events) or last moved.",
                },
                "data": {
                    **_ref("Job"),
                    "description": "The job when the delivery was first prepared (at once, "
                    "normally), without its `callback` object.",
                },
            },
        },
        Delivery=DELIVERY_SCHEMA,
        DeliveryList={
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "job_id": {"type": "string"},
                "tenant": {"type": "string"},
                "data": {"type": "array", "items": _ref("Delivery")},
            },
        },
    )
    public: list[dict[str, Any]] = []
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {
            "title": "vidhook",
            "version": _version(),
            "summary": "Webhook-driven asynchronous gateway to fal.ai's Veo video models.",
            "description": "Submit a video job, get an id in milliseconds, and hear about the "
            "result by a Standard-Webhooks-signed callback or by polling. Invalid requests are "
            "refused before they reach fal.\n\nvidhook also serves fal's own queue protocol "
            "under `/fal/` (submit, status, status stream, result, cancel, and the client "
            "proxy `/fal/proxy`) for fal's official clients. Those paths follow fal's "
            "documentation, not this document, and are deliberately left out of it.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/jobs": {
                "post": {
                    "operationId": "createJob",
                    "summary": "Submit a video job",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                            "description": "Same key and body: the same job back (200). "
                            "Same key, different body: 409. Kept 24 h.",
                        },
                        {
                            "name": "Prefer",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "examples": {"wait": {"value": "wait=10"}},
                            "description": "RFC 7240. `wait=N` (N ≤ 60): answer with the "
                            "finished job (200) if it finishes within N s, else the usual 202 "
                            "then; `Preference-Applied: wait=N` says it was honoured. Other "
                            "preferences are ignored.",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("JobRequest")}},
                    },
                    "responses": {
                        "202": job_response,
                        "200": {
                            **job_response,
                            "description": "An Idempotency-Key replay, or a job that finished "
                            "within `Prefer: wait`.",
                        },
                        **_problems(400, 401, 402, 409, 413, 415, 422, 503),
                    },
                },
                "get": {
                    "operationId": "listJobs",
                    "summary": "List jobs, newest first, a page at a time",
                    "description": "A tenant's key lists its own jobs; an ADMIN_API_KEYS key "
                    "lists every tenant's (each with `tenant`), or one with `tenant=`. Follow "
                    "`next_cursor` until it is null; a page may be short when filters are "
                    "selective.",
                    "parameters": [
                        _query("status", {"enum": [status.value for status in JobStatus]}),
                        _query("endpoint", {"type": "string"}),
                        _query(
                            "created_after",
                            {"type": "string"},
                            "ISO 8601 time or epoch ms (exclusive)",
                        ),
                        _query(
                            "created_before",
                            {"type": "string"},
                            "ISO 8601 time or epoch ms (exclusive)",
                        ),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                        _query("cursor", {"type": "string"}, "next_cursor of the last page"),
                        _query("tenant", {"type": "string"}, "admin keys only"),
                    ],
                    "responses": {
                        "200": _json(_ref("JobList"), "A page of jobs."),
                        **_problems(401, 422),
                    },
                },
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "Read a job, or wait for it to finish (long-poll)",
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0, "maximum": 60},
                            "description": "Seconds to wait for the job to finish: the answer "
                            "comes as soon as it has, or after this long with the job as it is.",
                        },
                    ],
                    "responses": {
                        "200": _json(_ref("Job"), "The job."),
                        **_problems(401, 404, 422, 503),
                    },
                }
            },
            "/v1/jobs/{job_id}/events": {
                "get": {
                    "operationId": "streamJobEvents",
                    "summary": "A job's state changes as server-sent events",
                    "description": "The job's events so far (after Last-Event-ID, if sent), "
                    "then each one as it happens; closes after the terminal event, which also "
                    "carries the finished `job`. Each SSE event: `id:` the event id, `event: "
                    "job.<status>`, `data:` a JobEvent. Comment lines are heartbeats.",
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        LAST_EVENT_ID,
                    ],
                    "responses": {
                        "200": _event_stream("The job's events."),
                        **_problems(401, 404, 422),
                    },
                }
            },
            "/v1/events": {
                "get": {
                    "operationId": "streamEvents",
                    "summary": "Every state change of this tenant's jobs, as server-sent events",
                    "description": "From now on, or after Last-Event-ID (within the event "
                    "stream's retention, EVENT_STREAM_MAXLEN). Never closes by itself. Backends "
                    "that can reach Redis may read the stream itself with a consumer group "
                    "instead (see the README).",
                    "parameters": [LAST_EVENT_ID],
                    "responses": {
                        "200": _event_stream("The tenant's events."),
                        **_problems(401, 422, 503),
                    },
                }
            },
            "/v1/jobs/{job_id}/cancel": {
                "post": {
                    "operationId": "cancelJob",
                    "summary": "Cancel a job",
                    "description": "A queued job is cancelled at once and never reaches fal "
                    "(200). A job already at fal is cancelled there (202, "
                    "`cancel_requested_at` set): it becomes `cancelled` when fal confirms, or "
                    "keeps the outcome fal reports if it finishes anyway.",
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {**job_response, "description": "Cancelled."},
                        "202": {**job_response, "description": "Cancel requested at fal."},
                        **_problems(401, 404, 409, 502, 503),
                    },
                }
            },
            "/v1/jobs/{job_id}/deliveries": {
                "get": {
                    "operationId": "listDeliveries",
                    "summary": "The job's callback deliveries and every attempt",
                    "description": "One delivery per event type the job's callback announced, "
                    "oldest first, each with its attempts (time, HTTP status or error, latency). "
                    "A tenant key sees its own jobs; an admin key any job.",
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("DeliveryList"), "The deliveries."),
                        **_problems(401, 404),
                    },
                }
            },
            "/v1/jobs/{job_id}/callback/redeliver": {
                "post": {
                    "operationId": "redeliverCallback",
                    "summary": "Send the job's callback again",
                    "description": "Starts a new attempt series (the retry schedule from its "
                    "first step, the first attempt now) with the same webhook-id and the same "
                    "body, signed afresh: every dead-lettered delivery of the job, or, if none "
                    "is, the latest finished one; `event` picks one. The URL is checked again "
                    "like every delivery's. 409 when the job has no callback, or nothing "
                    "finished to send (a delivery still in progress is not doubled).",
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "event",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": list(CALLBACK_EVENT_TYPES)},
                        },
                    ],
                    "responses": {
                        "202": _json(_ref("DeliveryList"), "Redelivery started."),
                        **_problems(401, 404, 409, 422),
                    },
                }
            },
            "/v1/callbacks/dead": {
                "get": {
                    "operationId": "listDeadLetters",
                    "summary": "The tenant's dead-lettered callback deliveries, newest first",
                    "description": "Deliveries with no attempt left, kept as long as their "
                    "job; redelivered ones leave the list. An admin key names the tenant.",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                        },
                        {
                            "name": "tenant",
                            "in": "query",
                            "required": False,
                            "description": "Admin keys only (and required for them).",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": _json(_ref("DeliveryList"), "The dead letters."),
                        **_problems(401, 422),
                    },
                }
            },
            "/v1/files": {
                "post": {
                    "operationId": "createFile",
                    "summary": "Upload an input image or video",
                    "description": "The raw file as the body (with its Content-Type), or a "
                    "multipart form with one file part. Checked like a data URI (sniffed type, "
                    "size, video duration); the answer's `url` is accepted as any file input of "
                    "a job and can be fetched by fal without credentials until `expires_at`.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            **{
                                media_type: {"schema": {"type": "string", "format": "binary"}}
                                for media_type in (*UPLOAD_MEDIA_TYPES, "application/octet-stream")
                            },
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {"file": {"type": "string", "format": "binary"}},
                                }
                            },
                        },
                    },
                    "responses": {
                        "201": _json(_ref("File"), "Stored."),
                        **_problems(400, 401, 413, 415, 422, 503),
                    },
                }
            },
            "/v1/media/{key}": {
                "get": {
                    "operationId": "getLocalMedia",
                    "summary": "A file of the local media store, by its tokenised URL",
                    "description": "Only when no bucket is configured. The URL comes from an "
                    "upload or a job's `assets`; it needs no API key and expires.",
                    "security": public,
                    "parameters": [
                        {
                            "name": "key",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "expires",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "token",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The file.",
                            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        **_problems(404),
                    },
                }
            },
            "/v1/jobs/{job_id}/input": {
                "get": {
                    "operationId": "getJobInput",
                    "summary": "Read the input a job was submitted with",
                    "description": "Exactly as sent to fal. Kept out of the job resource, "
                    "which it could make megabytes long (data URIs). Once fal has the request "
                    "the input moves from Redis to the media store, and is read from there.",
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("JobInput"), "The job's input."),
                        **_problems(401, 404, 503),
                    },
                }
            },
            "/v1/stats": {
                "get": {
                    "operationId": "getStats",
                    "summary": "Operations overview: jobs by state, queue, throughput",
                    "description": "A tenant key sees its own numbers; an operator key every "
                    "tenant's, with a per-tenant breakdown. Folded from the job event stream "
                    "at each call, at bounded cost; `complete` is false while a backlog is "
                    "being caught up or after events were trimmed unread.",
                    "responses": {
                        "200": _json(_ref("Stats"), "The numbers."),
                        **_problems(401),
                    },
                }
            },
            "/v1/usage": {
                "get": {
                    "operationId": "getUsage",
                    "summary": "The tenant's estimated spend today and this month, and its limits",
                    "description": "UTC day and month. A job counts at intake (its "
                    "estimated_cost_usd, atomically with its creation); one that never reached "
                    "fal (cancelled while queued, refused by fal at submit) is refunded.",
                    "responses": {
                        "200": _json(_ref("Usage"), "Spend and limits."),
                        **_problems(401),
                    },
                }
            },
            "/dashboard": {
                "get": {
                    "operationId": "dashboard",
                    "summary": "Operations dashboard (sign in with an API key; works offline)",
                    "security": public,
                    "responses": {
                        "200": {
                            "description": "The page.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/endpoints": {
                "get": {
                    "operationId": "listEndpoints",
                    "summary": "Supported endpoints with input schemas and prices",
                    "responses": {
                        "200": _json(_ref("EndpointList"), "The catalog."),
                        **_problems(401),
                    },
                }
            },
            "/v1/fal/webhooks/{job_id}": {
                "post": {
                    "operationId": "receiveFalWebhook",
                    "summary": "fal's completion webhook (called by fal, not by clients)",
                    "security": public,
                    "parameters": [
                        {
                            "name": "job_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "token",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ]
                    + [
                        {
                            "name": name,
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                        for name in (
                            "X-Fal-Webhook-Request-Id",
                            "X-Fal-Webhook-User-Id",
                            "X-Fal-Webhook-Timestamp",
                            "X-Fal-Webhook-Signature",
                        )
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("FalWebhook")}},
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "received": {"type": "boolean"},
                                    "applied": {"type": "boolean"},
                                },
                            },
                            "Accepted; `applied` is false for a duplicate or late delivery.",
                        ),
                        **_problems(400, 403, 404, 413, 503),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": public,
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
                }
            },
            "/docs": {
                "get": {
                    "operationId": "docs",
                    "summary": "Interactive documentation (works offline)",
                    "security": public,
                    "responses": {
                        "200": {
                            "description": "Swagger UI.",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: the process answers (touches nothing else)",
                    "security": public,
                    "responses": {"200": _json({"type": "object"}, "Up.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: Redis answers and fal's webhook keys are loaded",
                    "description": "`checks.dispatch` is `paused` while fal refuses our key "
                    "(401/403); `dispatch_paused` then says why and since when. A pause does "
                    "not make the API unready: intake and webhooks go on, jobs wait queued.",
                    "security": public,
                    "responses": {
                        "200": _json({"type": "object"}, "Ready."),
                        "503": _json({"type": "object"}, "Not ready; `checks` says why."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text exposition format)",
                    "security": public,
                    "responses": {
                        "200": {
                            "description": "Metrics.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "webhooks": {
            "jobFinished": {
                "post": {
                    "summary": "Sent to a job's callback_url for each of its callback_events",
                    "description": "Signed per Standard Webhooks with the tenant's secret "
                    "(TENANT_CALLBACK_SECRETS, else CALLBACK_SIGNING_SECRET); during a rotation "
                    "webhook-signature carries one `v1,` signature per secret, space-separated. "
                    "webhook-id (`msg_{job}_{status}`) and the body are identical on every "
                    "retry and redelivery; webhook-timestamp is fresh on each. Retried on the "
                    "CALLBACK_RETRY_SCHEDULE_S schedule, then dead-lettered. Jobs from the "
                    "/fal/ door get fal's webhook payload instead, signed the same way.",
                    "parameters": [
                        {
                            "name": name,
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
                    ],
                    "requestBody": {
                        "content": {"application/json": {"schema": _ref("CallbackEvent")}}
                    },
                    "responses": {
                        "2XX": {"description": "Delivered."},
                        "410": {"description": "Gone: no more attempts (dead-lettered)."},
                        "429": {
                            "description": "Retried no sooner than its Retry-After, "
                            "bounded by the next-but-one schedule step."
                        },
                        "503": {"description": "As 429."},
                        "default": {"description": "Retried; redirects are never followed."},
                    },
                }
            }
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from API_KEYS.",
                }
            },
        },
    }
