"""The simulator's HTTP face: fal's queue API, the JWKS, and the rendered files.

Routes (all paths as fal has them; `{app}` is `owner/app` or a full endpoint id):

    POST /{endpoint id}[?fal_webhook=...]         submit
    GET  /{app}/requests/{id}/status[?logs=1]     status (202 until COMPLETED, then 200)
    GET  /{app}/requests/{id}[/response]          result
    PUT  /{app}/requests/{id}/cancel              cancel
    GET  /.well-known/jwks.json                   webhook verification keys
    GET  /v1/models/requests/by-endpoint          the Platform API's request listing (§1.11;
                                                  its base URL is the simulator's + "/v1")
    GET  /files/{name}                            rendered MP4s
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from service.dev.simulator import payloads
from service.dev.simulator.config import SimulatorConfig
from service.dev.simulator.ffmpeg import ffmpeg_exe
from service.dev.simulator.inference import Inference
from service.dev.simulator.media import MediaLoader
from service.dev.simulator.payloads import RequestUrls
from service.dev.simulator.platform import ListingInvalid, ListingQuery, list_requests
from service.dev.simulator.queue import CancelResult, RequestQueue
from service.dev.simulator.render import Renderer
from service.dev.simulator.requests import QueuedRequest, Status
from service.dev.simulator.rules import ENDPOINTS
from service.dev.simulator.signing import WebhookSigner
from service.dev.simulator.webhooks import WebhookSender

_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+\.mp4$")
_SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
_SAMPLES = {"sample.jpg": "image/jpeg", "sample.png": "image/png", "sample.mp4": "video/mp4"}
_TRUE_FLAGS = frozenset({"1", "true", "True"})
# Default for outgoing calls; fetches and webhook attempts set their own per call.
_CLIENT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_CANCEL_HTTP_STATUS = {
    CancelResult.REQUESTED: 202,
    CancelResult.ALREADY_COMPLETED: 400,
    CancelResult.NOT_FOUND: 404,
}


@dataclass(frozen=True)
class _Runtime:
    queue: RequestQueue
    data_dir: Path


class _QueueApi:
    """Request handlers; the runtime (queue, client, data dir) exists only inside the lifespan."""

    def __init__(self, config: SimulatorConfig, signer: WebhookSigner) -> None:
        self._config = config
        self._signer = signer
        self.runtime: _Runtime | None = None

    @property
    def _rt(self) -> _Runtime:
        if self.runtime is None:
            raise RuntimeError("the simulator app is used outside its lifespan")
        return self.runtime

    async def submit(self, request: Request) -> Response:
        endpoint_id = request.path_params["endpoint"].strip("/")
        denied = self._deny(request, endpoint_id)
        if denied is not None:
            return denied
        rule = ENDPOINTS.get(endpoint_id)
        if rule is None:
            return JSONResponse({"detail": f"Application '{endpoint_id}' not found"}, 404)
        webhook_url = request.query_params.get("fal_webhook")
        if webhook_url is not None and not _is_http_url(webhook_url):
            return _unprocessable(
                ["query", "fal_webhook"], "Invalid webhook URL", "url_parsing", webhook_url
            )
        body, problem = _parse_body(await request.body())
        if problem is not None:
            return problem
        queued = self._rt.queue.submit(rule, body, webhook_url)
        urls = RequestUrls.for_request(self._config.public_url, queued)
        position = self._rt.queue.queue_position(queued)
        return JSONResponse(payloads.submitted(queued, urls, position))

    async def status(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        with_logs = request.query_params.get("logs", "0") in _TRUE_FLAGS
        position = self._rt.queue.queue_position(found) if found.status is Status.IN_QUEUE else None
        urls = RequestUrls.for_request(self._config.public_url, found)
        body = payloads.status(found, urls, position, with_logs)
        return JSONResponse(body, 200 if found.status is Status.COMPLETED else 202)

    async def result(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        headers = {"x-fal-request-id": found.request_id}
        if found.status is not Status.COMPLETED:
            # Undocumented on fal; clients are told to poll status first.
            return JSONResponse({"detail": "Request is still in progress"}, 400, headers)
        if found.failure is not None:
            headers.update(found.failure.headers)
            return JSONResponse(found.failure.body, found.failure.status_code, headers)
        return JSONResponse(found.output, 200, headers)

    async def cancel(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        outcome = self._rt.queue.cancel(found.request_id)
        return JSONResponse({"status": outcome.value}, _CANCEL_HTTP_STATUS[outcome])

    async def list_requests(self, request: Request) -> Response:
        endpoint_ids = ",".join(request.query_params.getlist("endpoint_id"))
        denied = self._deny(request, endpoint_ids or "platform")
        if denied is not None:
            return denied
        try:
            query = ListingQuery.parse(request.query_params.multi_items(), datetime.now(UTC))
        except ListingInvalid as exc:
            return _unprocessable(exc.loc, exc.msg, "value_error", None)
        return JSONResponse(list_requests(self._rt.queue.all(), query))

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self._signer.jwks())

    async def file(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = self._rt.data_dir / name
        if not _FILE_NAME_RE.match(name) or not await asyncio.to_thread(path.is_file):
            return JSONResponse({"detail": "Not Found"}, 404)
        return FileResponse(path, media_type="video/mp4")

    async def sample(self, request: Request) -> Response:
        """Bundled sample media, so the API's examples work on a machine with no internet."""
        name = request.path_params["name"]
        media_type = _SAMPLES.get(name)
        if media_type is None:
            return JSONResponse({"detail": "Not Found"}, 404)
        return FileResponse(_SAMPLES_DIR / name, media_type=media_type)

    def _lookup(self, request: Request) -> QueuedRequest | Response:
        """Authenticate, then find the request under the app (or endpoint) in the path."""
        prefix = request.path_params["endpoint"].strip("/")
        denied = self._deny(request, prefix)
        if denied is not None:
            return denied
        found = self._rt.queue.get(request.path_params["request_id"])
        if found is None or prefix not in (found.rule.app_id, found.rule.endpoint_id):
            return JSONResponse({"status": CancelResult.NOT_FOUND.value}, 404)
        return found

    def _deny(self, request: Request, app_id: str) -> Response | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "key" or not key:
            detail = (
                f"Cannot access application '{app_id}'. "
                "Authentication is required to access this application."
            )
            return JSONResponse({"detail": detail}, 401)
        expected = self._config.fal_key
        if expected is not None and not hmac.compare_digest(key.encode(), expected.encode()):
            return JSONResponse({"detail": "Invalid key credentials"}, 401)
        return None


def _is_http_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _unprocessable(loc: list[str | int], msg: str, error_type: str, value: Any) -> JSONResponse:
    # FastAPI's request-validation shape, which fal's gateway also uses.
    return JSONResponse(
        {"detail": [{"type": error_type, "loc": loc, "msg": msg, "input": value}]}, 422
    )


def _parse_body(raw: bytes) -> tuple[dict[str, Any], Response | None]:
    if not raw.strip():
        return {}, _unprocessable(["body"], "Field required", "missing", None)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        problem = JSONResponse(
            {
                "detail": [
                    {
                        "type": "json_invalid",
                        "loc": ["body", position],
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": getattr(exc, "msg", str(exc))},
                    }
                ]
            },
            422,
        )
        return {}, problem
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        return {}, _unprocessable(["body"], msg, "model_attributes_type", body)
    return body, None


def create_app(config: SimulatorConfig) -> Starlette:
    """Build the simulator ASGI app.

    Its lifespan opens one httpx.AsyncClient (input downloads and webhooks), prepares the data
    directory (a temporary one, removed at shutdown, when `config.data_dir` is None) and, at
    shutdown, cancels renders and webhook deliveries still in flight.
    """
    signer = WebhookSigner(config.signing_keys, rotation_s=config.key_rotation_s)
    api = _QueueApi(config, signer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if config.data_dir is None:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="vidhook-sim-"))
                data_dir = Path(tmp)
            else:
                data_dir = config.data_dir
                data_dir.mkdir(parents=True, exist_ok=True)
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=_CLIENT_TIMEOUT))
            exe = ffmpeg_exe()
            inference = Inference(
                loader=MediaLoader(
                    client,
                    exe,
                    cache_dir=data_dir / "decode-cache" if config.render_cache else None,
                ),
                renderer=Renderer(
                    exe, cache_dir=data_dir / "render-cache" if config.render_cache else None
                ),
                data_dir=data_dir,
                public_url=config.public_url,
                delay_s=config.delay_s,
            )
            sender = WebhookSender(
                client, signer, user_id=config.user_id, time_scale=config.webhook_time_scale
            )
            queue = RequestQueue(
                concurrency=config.concurrency, inference=inference, webhooks=sender
            )
            api.runtime = _Runtime(queue, data_dir)
            # Exit stack unwinds in reverse: tasks stop before the client closes.
            stack.push_async_callback(queue.aclose)
            try:
                yield
            finally:
                api.runtime = None

    routes = [
        Route("/.well-known/jwks.json", api.jwks, methods=["GET"]),
        Route("/files/{name}", api.file, methods=["GET", "HEAD"]),
        Route("/samples/{name}", api.sample, methods=["GET", "HEAD"]),
        Route("/v1/models/requests/by-endpoint", api.list_requests, methods=["GET"]),
        Route("/{endpoint:path}/requests/{request_id}/status", api.status, methods=["GET"]),
        Route("/{endpoint:path}/requests/{request_id}/cancel", api.cancel, methods=["PUT"]),
        Route("/{endpoint:path}/requests/{request_id}/response", api.result, methods=["GET"]),
        Route("/{endpoint:path}/requests/{request_id}", api.result, methods=["GET"]),
        Route("/{endpoint:path}", api.submit, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(config: SimulatorConfig) -> None:
    """Run the simulator under uvicorn on `config.host`:`config.port` until interrupted."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    logging.getLogger("service.dev.simulator").info(
        "fal simulator on %s (public URL %s)", f"{config.host}:{config.port}", config.public_url
    )
    # log_config=None keeps the process's logging (vidhook's JSON lines, whose access lines
    # mask the `fal_webhook=` URLs and their per-job tokens) instead of uvicorn's defaults.
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="info",
        log_config=None,
        server_header=False,
    )
