"""The API process, assembled explicitly: routes, error handlers, connections in the lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from service.context import ApiContext
from service.domain_errors import DomainError
from service.errors import (
    REDIS_UNAVAILABLE_ERRORS,
    ApiError,
    handle_api_error,
    handle_domain_error,
    handle_http_exception,
    handle_redis_unavailable,
    handle_unexpected,
)
from service.fal import FalQueueClient
from service.fal_webhooks import FalWebhookVerifier, JwksCache
from service.headers import SecurityHeaders
from service.keys import RedisKeys
from service.media import open_media_store
from service.redisconn import api_redis, warn_if_unauthenticated
from service.routes import fal_errors
from service.routes.dashboard import dashboard_routes
from service.routes.deliveries import dead_letters, list_deliveries, redeliver
from service.routes.docs import docs_assets, docs_page, openapi_document
from service.routes.endpoints import list_endpoints
from service.routes.events import job_events, tenant_events
from service.routes.fal_proxy import proxy as fal_proxy
from service.routes.fal_queue import serve as fal_queue
from service.routes.fal_webhooks import receive_fal_webhook
from service.routes.files import create_file, get_local_media
from service.routes.health import healthz, readyz
from service.routes.job_input import get_job_input
from service.routes.jobs import cancel, create_job, get_job, list_jobs
from service.routes.metrics import metrics_page
from service.routes.stats import read_stats
from service.routes.usage import read_usage
from service.settings import Settings
from service.store import JobStore
from service.streams import TenantFeeds
from service.waiters import JobWaiters


def create_fal_door() -> Starlette:
    """fal's queue and proxy protocols under /fal/, answering refusals in fal's shapes.

    A sub-application so that its error handlers are its own; it is fal's documented
    protocol, so it stays out of /openapi.json (a Mount, not Routes).
    """
    return Starlette(
        routes=[
            Route("/proxy", fal_proxy, methods=["GET", "POST", "PUT"]),
            Route("/{path:path}", fal_queue, methods=["GET", "POST", "PUT"]),
        ],
        exception_handlers=fal_errors.EXCEPTION_HANDLERS,
    )


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app for `settings`; connections open at start-up and close at shutdown."""
    fal_door = create_fal_door()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = api_redis(settings)
        await warn_if_unauthenticated(redis, settings.redis_url)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
        resources = contextlib.AsyncExitStack()
        media = await resources.enter_async_context(open_media_store(settings))
        jwks = JwksCache(http, str(settings.fal_jwks_url), ttl_s=settings.fal_jwks_cache_s)
        keys = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name)
        # One pub/sub connection for every long-poll and SSE stream of this process.
        waiters = JobWaiters(redis, keys)
        # GET /v1/events streams block on Redis reads: a pool of their own, one connection each.
        feeds = TenantFeeds(
            Redis.from_url(settings.redis_url, max_connections=settings.event_streams_max),
            keys,
            max_open=settings.event_streams_max,
        )
        ctx = ApiContext(
            settings=settings,
            redis=redis,
            http=http,
            store=JobStore(
                redis,
                keys,
                job_retention_s=settings.job_retention_s,
                event_stream_maxlen=settings.event_stream_maxlen,
                job_deadline_s=settings.job_deadline_s,
                budget=settings.budget,
            ),
            verifier=FalWebhookVerifier(jwks, tolerance_s=settings.fal_webhook_tolerance_s),
            prices=settings.price_table(),
            waiters=waiters,
            feeds=feeds,
            fal=FalQueueClient(
                http,
                queue_base_url=str(settings.fal_queue_base_url),
                api_key=settings.fal_key.get_secret_value(),
                submit_timeout_s=settings.fal_submit_timeout_s,
                status_timeout_s=settings.fal_status_timeout_s,
            ),
            jwks=jwks,
            media=media,
        )
        app.state.ctx = ctx
        fal_door.state.ctx = ctx
        await waiters.start()
        try:
            yield
        finally:
            await waiters.stop()
            await feeds.aclose()
            await http.aclose()
            await redis.aclose()
            await resources.aclose()

    dashboard_page, dashboard_assets = dashboard_routes(settings)
    routes = [
        Route("/v1/jobs", create_job, methods=["POST"]),
        Route("/v1/jobs", list_jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/jobs/{job_id}/deliveries", list_deliveries, methods=["GET"]),
        Route("/v1/jobs/{job_id}/callback/redeliver", redeliver, methods=["POST"]),
        Route("/v1/callbacks/dead", dead_letters, methods=["GET"]),
        Route("/v1/files", create_file, methods=["POST"]),
        Route("/v1/media/{key:path}", get_local_media, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
        Route("/v1/events", tenant_events, methods=["GET"]),
        Route("/v1/jobs/{job_id}/input", get_job_input, methods=["GET"]),
        Route("/v1/stats", read_stats, methods=["GET"]),
        Route("/v1/usage", read_usage, methods=["GET"]),
        Route("/v1/fal/webhooks/{job_id}", receive_fal_webhook, methods=["POST"]),
        Route("/v1/endpoints", list_endpoints, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Mount("/docs/assets", app=docs_assets(), name="docs-assets"),
        dashboard_page,
        Mount("/dashboard/assets", app=dashboard_assets, name="dashboard-assets"),
        Mount("/fal", app=fal_door, name="fal"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        lifespan=lifespan,
        exception_handlers={
            ApiError: handle_api_error,
            DomainError: handle_domain_error,
            HTTPException: handle_http_exception,
            **{error: handle_redis_unavailable for error in REDIS_UNAVAILABLE_ERRORS},
            Exception: handle_unexpected,
        },
    )


def app_from_environment() -> Starlette:
    """The app from environment settings: uvicorn's factory when API_PROCESSES > 1."""
    return create_app(Settings())  # type: ignore[call-arg]  # fields come from the environment
