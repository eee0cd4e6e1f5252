"""fal's Platform API request listing: `GET /v1/models/requests/by-endpoint` (fal-protocol §1.11).

The only documented way to learn, without a request id, whether fal accepted a submit whose
answer was lost. As fal documents it: `endpoint_id` (required, repeated or comma-separated, up
to 50), `start`/`end` (ISO 8601, default the last 24 h, 90 days when `request_id` is given),
`status` (`success` | `error` | `user_error`), `request_id`, `limit` (default 50, max 100),
`cursor`, `sort_by` (`ended_at` default, or `duration`), `expand=payloads` (adds `json_input`,
`json_output`). Answers `{"items": [...], "next_cursor", "has_more"}`.

fal leaves open whether requests still queued or running are listed; the sort by end time
suggests finished ones only, so the simulator lists only finished requests: the stricter
reading, which a client must cope with anyway.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.dev.simulator.requests import QueuedRequest, Status

MAX_ENDPOINT_IDS = 50
MAX_LIMIT = 100
DEFAULT_LIMIT = 50
_STATUS_FILTERS = frozenset({"success", "error", "user_error"})
_SORTS = frozenset({"ended_at", "duration"})


class ListingInvalid(ValueError):
    """A query parameter fal would refuse; `loc` names it as fal's 422 detail does."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


@dataclass(frozen=True, slots=True)
class ListingQuery:
    endpoint_ids: frozenset[str]
    start: datetime
    end: datetime
    status: str | None
    request_id: str | None
    limit: int
    offset: int
    sort_by: str
    with_payloads: bool

    @classmethod
    def parse(cls, params: Iterable[tuple[str, str]], now: datetime) -> ListingQuery:
        """Read the query string pairs; raises ListingInvalid naming the first bad parameter."""
        values: dict[str, list[str]] = {}
        for name, value in params:
            values.setdefault(name, []).append(value)

        def one(name: str) -> str | None:
            found = values.get(name)
            return found[-1] if found else None

        endpoint_ids = frozenset(
            part.strip()
            for raw in values.get("endpoint_id", [])
            for part in raw.split(",")
            if part.strip()
        )
        if not endpoint_ids:
            raise ListingInvalid(["query", "endpoint_id"], "Field required")
        if len(endpoint_ids) > MAX_ENDPOINT_IDS:
            raise ListingInvalid(
                ["query", "endpoint_id"], f"at most {MAX_ENDPOINT_IDS} endpoint ids"
            )
        request_id = one("request_id")
        end = _parse_time(one("end"), "end") or now
        default_window = timedelta(days=90 if request_id else 1)
        start = _parse_time(one("start"), "start") or end - default_window
        status = one("status")
        if status is not None and status not in _STATUS_FILTERS:
            raise ListingInvalid(
                ["query", "status"], "Input should be 'success', 'error' or 'user_error'"
            )
        sort_by = one("sort_by") or "ended_at"
        if sort_by not in _SORTS:
            raise ListingInvalid(["query", "sort_by"], "Input should be 'ended_at' or 'duration'")
        limit = _parse_int(one("limit"), "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise ListingInvalid(["query", "limit"], f"Input should be between 1 and {MAX_LIMIT}")
        expand = {part.strip() for raw in values.get("expand", []) for part in raw.split(",")}
        return cls(
            endpoint_ids=endpoint_ids,
            start=start,
            end=end,
            status=status,
            request_id=request_id,
            limit=limit,
            offset=_decode_cursor(one("cursor")),
            sort_by=sort_by,
            with_payloads="payloads" in expand,
        )


def list_requests(requests: Iterable[QueuedRequest], query: ListingQuery) -> dict[str, Any]:
    """The listing page for `query` over every request the simulator holds."""
    start_s, end_s = query.start.timestamp(), query.end.timestamp()
    matching = []
    for request in requests:
        ended = request.wall_time(request.completed_at)
        if request.status is not Status.COMPLETED or ended is None:
            continue
        if request.rule.endpoint_id not in query.endpoint_ids:
            continue
        if query.request_id is not None and request.request_id != query.request_id:
            continue
        if not start_s <= request.sent_at_unix <= end_s:
            continue
        if query.status is not None and _status_class(request) != query.status:
            continue
        matching.append(request)
    if query.sort_by == "duration":
        matching.sort(key=lambda r: (r.completed_at or 0) - r.submitted_at, reverse=True)
    else:
        matching.sort(key=lambda r: r.completed_at or 0, reverse=True)
    page = matching[query.offset : query.offset + query.limit]
    has_more = query.offset + len(page) < len(matching)
    return {
        "items": [_item(request, query.with_payloads) for request in page],
        "next_cursor": _encode_cursor(query.offset + len(page)) if has_more else None,
        "has_more": has_more,
    }


def _item(request: QueuedRequest, with_payloads: bool) -> dict[str, Any]:
    ended = request.wall_time(request.completed_at)
    item: dict[str, Any] = {
        "request_id": request.request_id,
        "endpoint_id": request.rule.endpoint_id,
        "sent_at": _iso(request.sent_at_unix),
        "started_at": _iso(request.wall_time(request.started_at)),
        "ended_at": _iso(ended),
        "status_code": 200 if request.failure is None else request.failure.status_code,
        "duration": round((request.completed_at or request.submitted_at) - request.submitted_at, 3),
    }
    if with_payloads:
        item["json_input"] = request.body
        item["json_output"] = request.output if request.failure is None else request.failure.body
    return item


def _status_class(request: QueuedRequest) -> str:
    if request.failure is None:
        return "success"
    return "user_error" if 400 <= request.failure.status_code < 500 else "error"


def _iso(unix_s: float | None) -> str | None:
    if unix_s is None:
        return None
    return datetime.fromtimestamp(unix_s, tz=UTC).isoformat(timespec="milliseconds")


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ListingInvalid(["query", name], "Input should be a valid datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_int(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ListingInvalid(["query", name], "Input should be a valid integer") from None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode_cursor(value: str | None) -> int:
    if not value:
        return 0
    try:
        text = base64.urlsafe_b64decode(value.encode()).decode()
        if text.startswith("o:") and int(text[2:]) >= 0:
            return int(text[2:])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ListingInvalid(["query", "cursor"], "Invalid cursor")
