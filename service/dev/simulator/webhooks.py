"""Webhook delivery the way fal documents it: signed POSTs, retried on failure.

Policy (fal-protocol.md §3.5): the first attempt has a 15 s timeout; a timeout, transport
error or non-2xx answer is retried 10 times over about two hours with exponentially growing
gaps; any 2xx acknowledges; a 3xx is a permanent failure and the redirect is not followed.
Every gap is multiplied by `time_scale` so tests and local development do not wait hours.
The timestamp is re-taken and the signature recomputed for every attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from enum import StrEnum
from typing import Any

import httpx

from service.dev.simulator.signing import WebhookSigner

logger = logging.getLogger(__name__)

# 7 s doubling ten times sums to 7161 s: "10 retries spread over 2 hours".
RETRY_DELAYS_S: tuple[float, ...] = tuple(7.0 * 2**attempt for attempt in range(10))
FIRST_ATTEMPT_TIMEOUT_S = 15.0
# Newer fal wording quoted by integrators gives redeliveries a 120 s timeout.
RETRY_TIMEOUT_S = 120.0


class DeliveryOutcome(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    REDIRECTED = "redirected"
    EXHAUSTED = "exhausted"


class WebhookSender:
    """Delivers one JSON payload to one URL with fal's headers, signature and retries."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        signer: WebhookSigner,
        *,
        user_id: str,
        time_scale: float,
    ) -> None:
        self._client = client
        self._signer = signer
        self._user_id = user_id
        self._time_scale = time_scale

    async def deliver(self, url: str, request_id: str, payload: dict[str, Any]) -> DeliveryOutcome:
        """POST `payload` until acknowledged, permanently refused, or out of retries."""
        # Serialised once: every attempt carries byte-identical content, only headers change.
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        delays = (0.0, *RETRY_DELAYS_S)
        for attempt, delay_s in enumerate(delays, start=1):
            if delay_s:
                await asyncio.sleep(delay_s * self._time_scale)
            timeout_s = FIRST_ATTEMPT_TIMEOUT_S if attempt == 1 else RETRY_TIMEOUT_S
            status_code = await self._attempt(url, request_id, body, attempt, timeout_s)
            if status_code is not None and 200 <= status_code < 300:
                return DeliveryOutcome.ACKNOWLEDGED
            if status_code is not None and 300 <= status_code < 400:
                logger.warning(
                    "webhook %s: %s answered %s; redirects are not followed, giving up",
                    request_id,
                    _without_query(url),
                    status_code,
                )
                return DeliveryOutcome.REDIRECTED
        logger.warning("webhook %s: no acknowledgement after %d attempts", request_id, len(delays))
        return DeliveryOutcome.EXHAUSTED

    async def _attempt(
        self, url: str, request_id: str, body: bytes, attempt: int, timeout_s: float
    ) -> int | None:
        timestamp = str(int(time.time()))
        signature = self._signer.sign(
            request_id=request_id, user_id=self._user_id, timestamp=timestamp, body=body
        )
        headers = {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": self._user_id,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": signature,
        }
        try:
            response = await self._client.post(
                url, content=body, headers=headers, timeout=timeout_s, follow_redirects=False
            )
        except httpx.HTTPError as exc:
            logger.info(
                "webhook %s attempt %d to %s failed: %r",
                request_id,
                attempt,
                _without_query(url),
                exc,
            )
            return None
        logger.info(
            "webhook %s attempt %d to %s: HTTP %d",
            request_id,
            attempt,
            _without_query(url),
            response.status_code,
        )
        return response.status_code


def _without_query(url: str) -> str:
    # A webhook URL's query is its owner's secret (a per-request token): keep it out of logs.
    return url.split("?", 1)[0]
