"""A fault-injecting HTTP proxy in front of the fal simulator.

Real fal sometimes answers 503, 422 or not at all; the simulator stays faithful to fal's
documented happy and late-failure paths, and this proxy plays the bad days. A test scripts what
the next submits whose body contains a marker get: pass through, an error status, a fake
acceptance that never reaches the simulator, or a reply held back past the client's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Fault:
    """One scripted answer. kind: 'pass'; 'status' (answer status_code/body); 'swallow' (a fake
    acceptance, never forwarded); 'late' (forward, reply after delay_s); 'mute' (forward without
    the fal_webhook parameter, so the request runs but fal never calls back); 'created'
    (forward, then answer status_code/body instead of fal's answer: a gateway error after
    the queue stored the request). `mute` also drops the webhook of 'late' and 'created'."""

    kind: str
    status_code: int = 200
    body: Any = None
    delay_s: float = 0.0
    mute: bool = False


@dataclass
class SubmitRecord:
    path: str
    body: bytes
    webhook_url: str | None
    answered: int


@dataclass
class FalProxy:
    upstream: str
    url: str = ""  # the proxy's own base URL, once it serves
    scripts: dict[str, list[Fault]] = field(default_factory=dict)
    call_scripts: dict[str, list[Fault]] = field(default_factory=dict)
    submits: list[SubmitRecord] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, marker: str, *faults: Fault) -> None:
        """The next submits whose body contains `marker` get these answers in order, then 'pass'."""
        with self._lock:
            self.scripts[marker] = list(faults)

    def script_call(self, path_fragment: str, *faults: Fault) -> None:
        """The next status/result/cancel calls whose path contains `path_fragment` get these
        answers ('status' only) in order, then 'pass'."""
        with self._lock:
            self.call_scripts[path_fragment] = list(faults)

    def calls_to(self, path_fragment: str) -> list[tuple[str, str]]:
        """(method, path) of the non-submit calls whose path contains `path_fragment`."""
        with self._lock:
            return [call for call in self.calls if path_fragment in call[1]]

    def _next_call_fault(self, path: str) -> Fault:
        with self._lock:
            for fragment, faults in self.call_scripts.items():
                if fragment in path and faults:
                    return faults.pop(0)
        return Fault("pass")

    def submits_containing(self, marker: str) -> list[SubmitRecord]:
        with self._lock:
            return [record for record in self.submits if marker.encode() in record.body]

    def _next_fault(self, body: bytes) -> Fault:
        with self._lock:
            for marker, faults in self.scripts.items():
                if marker.encode() in body and faults:
                    return faults.pop(0)
        return Fault("pass")

    def app(self) -> Starlette:
        client = httpx.AsyncClient(timeout=30.0)

        async def forward(request: Request) -> Response:
            body = await request.body()
            url = f"{self.upstream}{request.url.path}"
            is_submit = request.method == "POST" and "/requests/" not in request.url.path
            if is_submit:
                fault = self._next_fault(body)
            else:
                with self._lock:
                    self.calls.append((request.method, request.url.path))
                fault = self._next_call_fault(request.url.path)
            if fault.kind == "status":
                response = Response(
                    json.dumps(fault.body), fault.status_code, media_type="application/json"
                )
            elif fault.kind == "swallow":
                request_id = str(uuid.uuid4())
                owner_app = "/".join(request.url.path.strip("/").split("/")[:2])
                # Under the proxy's own URL, so that scripted calls can answer for it.
                base = f"{self.url or self.upstream}/{owner_app}/requests/{request_id}"
                receipt = {
                    "request_id": request_id,
                    "gateway_request_id": request_id,
                    "status": "IN_QUEUE",
                    "response_url": base,
                    "status_url": f"{base}/status",
                    "cancel_url": f"{base}/cancel",
                    "queue_position": 0,
                }
                response = Response(json.dumps(receipt), 200, media_type="application/json")
            else:
                mute = fault.kind == "mute" or fault.mute
                params = [
                    (k, v)
                    for k, v in request.query_params.multi_items()
                    if not (mute and k == "fal_webhook")
                ]
                upstream = await client.request(
                    request.method,
                    url,
                    params=params,
                    content=body,
                    headers={
                        k: v
                        for k, v in request.headers.items()
                        if k.lower() not in ("host", "content-length")
                    },
                )
                response = Response(
                    upstream.content,
                    upstream.status_code,
                    media_type=upstream.headers.get("content-type"),
                )
                if fault.kind == "created":
                    response = Response(
                        json.dumps(fault.body), fault.status_code, media_type="application/json"
                    )
            if is_submit:
                # Recorded as soon as fal has answered, before any held-back reply.
                with self._lock:
                    self.submits.append(
                        SubmitRecord(
                            request.url.path,
                            body,
                            request.query_params.get("fal_webhook"),
                            response.status_code,
                        )
                    )
            if fault.kind == "late":
                await asyncio.sleep(fault.delay_s)
            return response

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            await client.aclose()

        return Starlette(
            routes=[Route("/{path:path}", forward, methods=["GET", "POST", "PUT", "DELETE"])],
            lifespan=lifespan,
        )
