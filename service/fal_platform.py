"""fal's Platform API request listing, behind one small client (fal-protocol §1.11).

`GET {platform}/models/requests/by-endpoint?endpoint_id=…&start=…&expand=payloads` lists the
account's requests with their `json_input`: the only documented way to learn, without its
request id, whether fal created a request for a submit whose answer was lost. vidhook matches
a job by the canonical SHA-256 of its input (`input_sha256`), so the job need not keep the
input itself once fal has it.

Errors: every failure to read the listing raises `service.fal.FalUnavailable`; a lookup that
could not be made is never taken for "not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from service.fal import FalUnavailable
from service.jobs import input_sha256

# The listing's largest page; and how many pages one lookup reads at most (requests of the
# account on one endpoint since the job was created, newest finished first).
PAGE_LIMIT = 100
MAX_PAGES = 50


@dataclass(frozen=True, slots=True)
class ListedRequest:
    """A request fal lists: its id, and whether it has finished (`ended_at` is set)."""

    request_id: str
    finished: bool


class FalPlatformClient:
    """Reads fal's request listing; takes the shared httpx client from outside."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        platform_base_url: str,
        api_key: str,
        timeout_s: float = 15.0,
    ) -> None:
        self._client = client
        self._url = f"{platform_base_url.rstrip('/')}/models/requests/by-endpoint"
        self._headers = {"Authorization": f"Key {api_key}"}
        self._timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))

    async def find_request(
        self, endpoint_id: str, fingerprint: str, *, sent_after_ms: int
    ) -> ListedRequest | None:
        """The request on `endpoint_id` sent after `sent_after_ms` whose input hashes to
        `fingerprint`, or None when fal lists none; raises FalUnavailable if fal cannot say.

        Several matches (earlier duplicates) yield the earliest sent.
        """
        start = datetime.fromtimestamp(sent_after_ms / 1000, tz=UTC).isoformat()
        params: dict[str, str | int] = {
            "endpoint_id": endpoint_id,
            "start": start,
            "expand": "payloads",
            "limit": PAGE_LIMIT,
        }
        found: list[tuple[str, ListedRequest]] = []
        for _ in range(MAX_PAGES):
            page = await self._page(params)
            for item in page.get("items") or []:
                if not isinstance(item, dict) or "request_id" not in item:
                    continue
                if input_sha256(item.get("json_input")) == fingerprint:
                    listed = ListedRequest(str(item["request_id"]), bool(item.get("ended_at")))
                    found.append((str(item.get("sent_at") or ""), listed))
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
            params["cursor"] = str(cursor)
        if not found:
            return None
        return min(found, key=lambda pair: pair[0])[1]

    async def _page(self, params: dict[str, str | int]) -> dict[str, Any]:
        try:
            response = await self._client.get(
                self._url, params=params, headers=self._headers, timeout=self._timeout
            )
        except httpx.TransportError as exc:
            raise FalUnavailable(f"fal's request listing did not answer: {exc!r}") from exc
        if not response.is_success:
            raise FalUnavailable(
                f"fal's request listing answered {response.status_code}",
                status_code=response.status_code,
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise FalUnavailable("fal's request listing is not JSON") from exc
        if not isinstance(body, dict):
            raise FalUnavailable("fal's request listing is not a JSON object")
        return body
