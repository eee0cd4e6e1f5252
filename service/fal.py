"""fal's queue API, behind one small client.

Error tree (everything an upstream call can raise):

    FalError
     ├── FalRejected      fal refused the request itself (400/404/422): never retry
     ├── FalUnavailable   nothing was accepted (429, 503, auth, connect failure): retry later
     └── FalAmbiguous     the submit may have created a request (timeout or dropped connection
                          after sending, a 500/502/504 from fal's edge): look for it in fal's
                          request listing and wait for its webhook before sending it again
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx


class FalError(Exception):
    """Base of every error the fal client raises."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class FalRejected(FalError):
    """fal answered that this request cannot be run; `detail` is fal's, normalised to a list."""

    def __init__(self, message: str, *, status_code: int, detail: list[dict[str, Any]]) -> None:
        super().__init__(message, status_code=status_code)
        self.detail = detail


class FalUnavailable(FalError):
    """fal did not accept the request; sending it again cannot run it twice."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after_s = retry_after_s


class FalAmbiguous(FalError):
    """The request may or may not have been accepted: resending might pay twice."""


# fal refusing our key (bad key, billing lock): no request can succeed until that changes.
AUTH_REFUSALS = frozenset({401, 403})

# Submit answers that say no request was created: rate limiting (429, also the documented
# answer to fal_max_queue_length), "unavailable" (503: fal's retry layer and ingress answer it
# before queueing) and auth. Other 5xx may come after the request was stored.
DEFINITE_SUBMIT_REFUSALS = frozenset({401, 403, 429, 503})


@dataclass(frozen=True, slots=True)
class SubmitReceipt:
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


@dataclass(frozen=True, slots=True)
class FalResult:
    """A request's result: `ok` with fal's output, or not ok with fal's error detail."""

    ok: bool
    status_code: int
    body: Any


class CancelAnswer(StrEnum):
    """fal's answer to a cancel (the `status` of its body)."""

    REQUESTED = "CANCELLATION_REQUESTED"  # 202 (any 2xx): a queued request never runs
    ALREADY_COMPLETED = "ALREADY_COMPLETED"  # 400: it finished first; its outcome stands
    NOT_FOUND = "NOT_FOUND"  # 404


def normalise_detail(body: Any) -> list[dict[str, Any]]:
    """fal's `detail` as a list of {loc, msg, type} (some endpoints send a plain string)."""
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):
        return [item if isinstance(item, dict) else {"msg": str(item)} for item in detail]
    if detail is None:
        return []
    entry: dict[str, Any] = {"loc": ["body"], "msg": str(detail), "type": "value_error"}
    if isinstance(body, dict) and body.get("error_type"):
        entry["type"] = str(body["error_type"])
    return [entry]


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class FalQueueClient:
    """Submit, poll and fetch requests on fal's queue (or anything speaking its protocol)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        queue_base_url: str,
        api_key: str,
        submit_timeout_s: float = 15.0,
        status_timeout_s: float = 5.0,
    ) -> None:
        self._client = client
        self._base = queue_base_url.rstrip("/")
        self._headers = {"Authorization": f"Key {api_key}"}
        # httpx's timeouts bound each phase and each read; the deadlines bound the whole call,
        # so that a worker's ARQ timeout (and with it kill recovery) can be derived from them.
        self._submit_deadline_s = submit_timeout_s
        self._submit_timeout = httpx.Timeout(submit_timeout_s, connect=min(5.0, submit_timeout_s))
        self._status_deadline_s = status_timeout_s
        self._status_timeout = httpx.Timeout(status_timeout_s)

    async def submit(
        self, endpoint: str, fal_input: bytes, *, webhook_url: str | None
    ) -> SubmitReceipt:
        """POST the input to `{queue}/{endpoint}?fal_webhook=…`; raises a FalError on failure.

        Without `webhook_url` (poll mode) the submit carries no `fal_webhook`. Takes at most
        `submit_timeout_s` in all.
        """
        try:
            async with asyncio.timeout(self._submit_deadline_s):
                response = await self._client.post(
                    f"{self._base}/{endpoint}",
                    params={"fal_webhook": webhook_url} if webhook_url else None,
                    content=fal_input,
                    headers={**self._headers, "Content-Type": "application/json"},
                    timeout=self._submit_timeout,
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise FalUnavailable(f"could not connect to fal: {type(exc).__name__}") from exc
        except (httpx.TransportError, TimeoutError) as exc:
            raise FalAmbiguous(f"fal submit interrupted: {type(exc).__name__}") from exc
        if response.is_success:
            return _receipt(response)
        if response.status_code not in DEFINITE_SUBMIT_REFUSALS and response.status_code >= 500:
            # A gateway error can come after the queue has stored the request (a 504 from the
            # edge while the queue answered slowly): not proof that nothing was created.
            raise FalAmbiguous(
                f"fal submit answered {response.status_code} after the request was sent",
                status_code=response.status_code,
            )
        raise _classify(response, "submit")

    async def status(self, status_url: str) -> dict[str, Any]:
        """GET a request's queue status; raises FalUnavailable or FalRejected."""
        response = await self._get(status_url, params={"logs": "1"})
        if response.status_code in (200, 202):
            body = _json_or_text(response)
            if isinstance(body, dict):
                return body
            raise FalUnavailable(
                "status answer is not a JSON object", status_code=response.status_code
            )
        raise _classify(response, "status")

    async def result(self, response_url: str) -> FalResult:
        """GET a finished request's result; a model error comes back as a not-ok FalResult."""
        response = await self._get(response_url)
        body = _json_or_text(response)
        if response.is_success:
            return FalResult(ok=True, status_code=response.status_code, body=body)
        # 499: fal's `client_cancelled`, the answer for a request cancelled before it ran.
        if response.status_code in (400, 422, 499):
            return FalResult(ok=False, status_code=response.status_code, body=body)
        raise _classify(response, "result")

    async def cancel(self, cancel_url: str) -> CancelAnswer:
        """PUT a request's cancel URL; raises FalUnavailable when fal gives no usable answer."""
        try:
            response = await self._client.put(cancel_url, headers=self._headers)
        except httpx.TransportError as exc:
            raise FalUnavailable(f"fal did not answer: {type(exc).__name__}") from exc
        # fal's pages disagree on the 2xx body (CANCELLATION_REQUESTED, OK, {"success": …}):
        # any 2xx means the cancel was taken.
        if response.is_success:
            return CancelAnswer.REQUESTED
        if response.status_code == 400:
            return CancelAnswer.ALREADY_COMPLETED
        if response.status_code == 404:
            return CancelAnswer.NOT_FOUND
        raise _classify(response, "cancel")

    async def _get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        """One status or result GET, taking at most `status_timeout_s` in all."""
        try:
            async with asyncio.timeout(self._status_deadline_s):
                return await self._client.get(
                    url, params=params, headers=self._headers, timeout=self._status_timeout
                )
        except (httpx.TransportError, TimeoutError) as exc:
            raise FalUnavailable(f"fal did not answer: {type(exc).__name__}") from exc


def _receipt(response: httpx.Response) -> SubmitReceipt:
    try:
        body = response.json()
        return SubmitReceipt(
            request_id=str(body["request_id"]),
            status_url=str(body["status_url"]),
            response_url=str(body["response_url"]),
            cancel_url=str(body["cancel_url"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        # fal said yes but we cannot read which request it made: the webhook will tell us.
        raise FalAmbiguous("fal accepted the submit but its answer is unreadable") from exc


def _classify(response: httpx.Response, call: str) -> FalError:
    code = response.status_code
    body = _json_or_text(response)
    if code in (400, 404, 422):
        return FalRejected(
            f"fal refused the {call} ({code})", status_code=code, detail=normalise_detail(body)
        )
    text = body if isinstance(body, str) else json.dumps(body)[:500]
    return FalUnavailable(
        f"fal {call} answered {code}: {text}",
        status_code=code,
        retry_after_s=_retry_after_s(response),
    )
