"""The chaos run's fault proxy: in front of the fal simulator, and in front of vidhook for fal's
webhooks (submits are rewritten so that fal calls back through here).

Toward fal (queue API): bursts of 429 or 503 (nothing is created: fal's own meaning), a submit
whose answer comes only after vidhook's FAL_SUBMIT_TIMEOUT_S ('late'), a submit the queue
stored whose answer is a gateway 504 ('created_504'). Toward vidhook (webhooks): dropped (fal
is told it was delivered), duplicated, delivered late (after the reconciler has acted), and
forged copies signed with a key that is not in fal's JWKS. Every fault and every submit that
reached the simulator is recorded, so the run can count duplicate fal submissions per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.dev.simulator.signing import signed_message

HOOK_PREFIX = "/_hook"
_HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


@dataclass(frozen=True)
class FaultRates:
    submit_late: float = 0.06
    submit_created_504: float = 0.06
    webhook_drop: float = 0.30
    webhook_duplicate: float = 0.10
    webhook_late: float = 0.10
    webhook_forge: float = 0.10


@dataclass
class SubmitRecord:
    marker: str
    fault: str  # pass, late, created_504, burst_429, burst_503
    reached_fal: bool
    fal_status: int | None
    request_id: str | None
    at: float


@dataclass
class WebhookRecord:
    job_id: str
    fault: str  # pass, drop, duplicate, late
    first_seen: float  # wall clock: fal's first attempt, about when the request finished
    forwarded: list[int] = field(default_factory=list)  # vidhook's answers (0: unreachable)
    forged_answer: int | None = None


class ChaosProxy:
    def __init__(
        self, simulator_url: str, api_url: str, rates: FaultRates, seed: int, late_submit_s: float,
        late_webhook_s: float,
    ) -> None:  # fmt: skip
        self.simulator_url = simulator_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.url = ""  # set once served
        self.rates = rates
        self.late_submit_s = late_submit_s
        self.late_webhook_s = late_webhook_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._burst: tuple[int, float] | None = None  # (status, until monotonic)
        self._forger = Ed25519PrivateKey.generate()
        self.submits: list[SubmitRecord] = []
        self.webhooks: dict[str, WebhookRecord] = {}  # by fal request id
        self.faults: Counter[str] = Counter()
        self.inflight_submits = 0
        self._background: set[asyncio.Task[None]] = set()

    # -- control, from the run's thread ------------------------------------------------------

    def burst(self, status: int, seconds: float) -> None:
        with self._lock:
            self._burst = (status, time.monotonic() + seconds)

    def _burst_status(self) -> int | None:
        with self._lock:
            if self._burst is None or time.monotonic() >= self._burst[1]:
                return None
            return self._burst[0]

    def _roll(self, rate: float) -> bool:
        with self._lock:
            return self._rng.random() < rate

    def count(self, fault: str) -> None:
        with self._lock:
            self.faults[fault] += 1

    # -- the app ---------------------------------------------------------------------------

    def app(self) -> Starlette:
        clients: dict[str, httpx.AsyncClient] = {}

        async def handle(request: Request) -> Response:
            path = request.url.path
            if path.startswith(HOOK_PREFIX + "/"):
                return await self._webhook(clients["api"], request)
            return await self._to_fal(clients["fal"], request)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            clients["fal"] = httpx.AsyncClient(timeout=30.0)
            clients["api"] = httpx.AsyncClient(timeout=10.0)
            yield
            for task in list(self._background):
                task.cancel()
            for client in clients.values():
                await client.aclose()

        return Starlette(
            routes=[Route("/{path:path}", handle, methods=["GET", "POST", "PUT", "DELETE"])],
            lifespan=lifespan,
        )

    async def _to_fal(self, client: httpx.AsyncClient, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        is_submit = (
            request.method == "POST" and "/requests/" not in path and not path.startswith("/v1/")
        )
        is_queue_call = "/requests/" in path and not path.startswith("/v1/")
        burst = self._burst_status() if (is_submit or is_queue_call) else None
        marker = _marker(body) if is_submit else ""
        if burst is not None:
            self.count(f"burst_{burst}{'_submit' if is_submit else '_poll'}")
            if is_submit:
                self._record(SubmitRecord(marker, f"burst_{burst}", False, None, None, time.time()))
            headers = {"Retry-After": "1"} if burst == 429 else {}
            return JSONResponse({"detail": "chaos: fal is busy"}, burst, headers=headers)
        params: list[tuple[str, str | int | float | bool | None]] = list(
            request.query_params.multi_items()
        )
        fault = "pass"
        if is_submit:
            params = [(k, self._hook_url(str(v)) if k == "fal_webhook" else v) for k, v in params]
            if self._roll(self.rates.submit_late):
                fault = "late"
            elif self._roll(self.rates.submit_created_504):
                fault = "created_504"
            self.count(f"submit_{fault}")
            with self._lock:
                self.inflight_submits += 1
        try:
            try:
                upstream = await client.request(
                    request.method,
                    f"{self.simulator_url}{path}",
                    params=params,
                    content=body,
                    headers=_forwardable(request.headers),
                )
            except httpx.HTTPError:
                # As fal's edge says when its backend does not answer: a 502, outcome unknown.
                self.count("simulator_unreachable")
                if is_submit:
                    self._record(
                        SubmitRecord(marker, "unreachable", False, None, None, time.time())
                    )
                return JSONResponse({"detail": "chaos: upstream unreachable"}, 502)
            if is_submit:
                request_id = None
                if upstream.status_code == 200:
                    request_id = upstream.json().get("request_id")
                self._record(
                    SubmitRecord(marker, fault, True, upstream.status_code, request_id, time.time())
                )
            if fault == "late":
                await asyncio.sleep(self.late_submit_s)
            if fault == "created_504":
                return JSONResponse({"detail": "chaos: gateway timeout"}, 504)
            return Response(
                upstream.content,
                upstream.status_code,
                headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
                },
            )
        finally:
            if is_submit:
                with self._lock:
                    self.inflight_submits -= 1

    def _hook_url(self, webhook_url: str) -> str:
        """vidhook's webhook URL, re-pointed at this proxy (path and token unchanged)."""
        parts = urllib.parse.urlsplit(webhook_url)
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.url}{HOOK_PREFIX}{parts.path}{query}"

    def _record(self, record: SubmitRecord) -> None:
        with self._lock:
            self.submits.append(record)

    async def _webhook(self, client: httpx.AsyncClient, request: Request) -> Response:
        body = await request.body()
        target = f"{self.api_url}{request.url.path[len(HOOK_PREFIX) :]}"
        if request.url.query:
            target += f"?{request.url.query}"
        headers = _forwardable(request.headers)
        request_id = request.headers.get("x-fal-webhook-request-id", "")
        job_id = request.url.path.rsplit("/", 1)[-1]
        with self._lock:
            record = self.webhooks.get(request_id)
            first = record is None
            if record is None:
                roll = self._rng.random()
                rates = self.rates
                if roll < rates.webhook_drop:
                    kind = "drop"
                elif roll < rates.webhook_drop + rates.webhook_duplicate:
                    kind = "duplicate"
                elif roll < rates.webhook_drop + rates.webhook_duplicate + rates.webhook_late:
                    kind = "late"
                else:
                    kind = "pass"
                record = WebhookRecord(job_id, kind, time.time())
                self.webhooks[request_id] = record
                self.faults[f"webhook_{kind}"] += 1
            forge = first and self._rng.random() < self.rates.webhook_forge
        if forge:
            self.count("webhook_forged")
            record.forged_answer = await self._send(client, target, *self._forged(headers, body))
        if first and record.fault == "drop":
            return Response(status_code=200)  # fal believes it delivered
        if first and record.fault == "late":
            later = BackgroundTask(self._late, client, target, headers, body, record)
            return Response(status_code=200, background=later)
        answer = await self._send(client, target, headers, body)
        record.forwarded.append(answer)
        if first and record.fault == "duplicate":
            record.forwarded.append(await self._send(client, target, headers, body))
        # vidhook unreachable: fal retries, as it does for any non-2xx.
        return Response(status_code=answer if answer else 502)

    async def _late(
        self, client: httpx.AsyncClient, target: str, headers: dict[str, str], body: bytes,
        record: WebhookRecord,
    ) -> None:  # fmt: skip
        await asyncio.sleep(self.late_webhook_s)
        # A late delivery is still a delivery: it keeps trying while vidhook is down.
        for _ in range(30):
            answer = await self._send(client, target, headers, body)
            record.forwarded.append(answer)
            if 200 <= answer < 300 or 400 <= answer < 500:
                return
            await asyncio.sleep(1.0)

    def _forged(self, headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        """An ERROR delivery for the same request, signed with a key fal never published."""
        payload = json.loads(body)
        forged_body = json.dumps(
            {
                "request_id": payload.get("request_id"),
                "gateway_request_id": payload.get("gateway_request_id"),
                "status": "ERROR",
                "error": "forged by the chaos proxy",
                "payload": {"detail": "forged by the chaos proxy"},
            },
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        request_id = headers.get("x-fal-webhook-request-id", "")
        user_id = headers.get("x-fal-webhook-user-id", "")
        message = signed_message(request_id, user_id, timestamp, forged_body)
        forged = {
            **headers,
            "x-fal-webhook-timestamp": timestamp,
            "x-fal-webhook-signature": self._forger.sign(message).hex(),
        }
        return forged, forged_body

    @staticmethod
    async def _send(
        client: httpx.AsyncClient, target: str, headers: dict[str, str], body: bytes
    ) -> int:
        try:
            return (await client.post(target, content=body, headers=headers)).status_code
        except httpx.HTTPError:
            return 0

    # -- figures -----------------------------------------------------------------------------

    def fal_requests_by_marker(self) -> dict[str, list[SubmitRecord]]:
        """Submits the simulator accepted (it created a request), per job marker."""
        out: dict[str, list[SubmitRecord]] = {}
        with self._lock:
            for record in self.submits:
                if record.reached_fal and record.fal_status == 200:
                    out.setdefault(record.marker, []).append(record)
        return out


def _forwardable(headers: object) -> dict[str, str]:
    items = headers.items() if hasattr(headers, "items") else []
    return {k: v for k, v in items if k.lower() not in _HOP_HEADERS}


def _marker(body: bytes) -> str:
    """The chaos job's marker, carried in its prompt as `[chaos-…]`."""
    text = body.decode("utf-8", "replace")
    start = text.find("[chaos-")
    end = text.find("]", start)
    return text[start + 1 : end] if start >= 0 and end > start else ""
