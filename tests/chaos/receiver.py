"""The chaos run's callback receiver: verifies every delivery with the `standardwebhooks`
library and records it by `webhook-id`; holds some deliveries a moment, so that worker kills
find callbacks in flight."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass

from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Delivery:
    webhook_id: str
    job_id: str
    event_type: str
    status: str
    arrived: float  # monotonic
    answered: float | None = None


class VerifyingReceiver:
    def __init__(self, secret: str, seed: int, hold_rate: float = 0.3, hold_s: float = 1.0) -> None:
        self._webhook = Webhook(secret)
        self._rng = random.Random(seed)
        self.hold_rate = hold_rate
        self.hold_s = hold_s
        self.deliveries: list[Delivery] = []
        self.unverified = 0
        self._lock = threading.Lock()

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            try:
                raw = await request.body()
            except ClientDisconnect:
                return Response(status_code=499)  # the sender was killed mid-request
            try:
                event = self._webhook.verify(raw, dict(request.headers))
            except Exception:  # the library raises its own WebhookVerificationError
                with self._lock:
                    self.unverified += 1
                return Response(status_code=400)
            data = event.get("data") or {}
            delivery = Delivery(
                webhook_id=request.headers.get("webhook-id", ""),
                job_id=str(data.get("id", "")),
                event_type=str(event.get("type", "")),
                status=str(data.get("status", "")),
                arrived=time.monotonic(),
            )
            with self._lock:
                self.deliveries.append(delivery)
                hold = self._rng.random() < self.hold_rate
            if hold:
                await asyncio.sleep(self.hold_s)
            delivery.answered = time.monotonic()
            return Response(status_code=204)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def in_flight(self) -> int:
        with self._lock:
            return sum(1 for d in self.deliveries if d.answered is None)

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)
