"""What a worker process holds for its lifetime: built in on_startup, closed in on_shutdown."""

from __future__ import annotations

import contextlib
import gc
import random
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import start_http_server
from redis.asyncio import Redis

from service.budgets import Budgets
from service.callbacks import CallbackSender
from service.deliveries import Deliveries
from service.fal import FalQueueClient
from service.fal_platform import FalPlatformClient
from service.keys import RedisKeys
from service.media import MediaStore, open_media_store
from service.redisconn import warn_if_unauthenticated, worker_redis
from service.settings import Settings
from service.store import JobStore

CONTEXT_KEY = "vidhook"
METRICS_SERVER_KEY = "vidhook_metrics_server"


@dataclass(slots=True)
class WorkerContext:
    settings: Settings
    http: httpx.AsyncClient
    store: JobStore
    fal: FalQueueClient
    platform: FalPlatformClient
    callbacks: CallbackSender
    deliveries: Deliveries
    media: MediaStore
    budgets: Budgets
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def poll_delay_s(self, job_try: int) -> float:
        """Poll mode's back-off between status polls of one request: from FAL_POLL_INTERVAL_S,
        x1.5 per poll, up to FAL_POLL_MAX_INTERVAL_S, with jitter."""
        settings = self.settings
        grown: float = settings.fal_poll_interval_s * 1.5 ** (job_try - 1)
        return min(settings.fal_poll_max_interval_s, grown) * random.uniform(0.8, 1.0)

    def backoff_s(self, job_try: int) -> float:
        """Exponential back-off with jitter for the `job_try`-th try (1-based)."""
        exponential: float = self.settings.retry_base_delay_s * 2.0 ** (job_try - 1)
        return min(self.settings.retry_max_delay_s, exponential) * random.uniform(0.5, 1.0)


def open_deliveries(redis: Redis, keys: RedisKeys, settings: Settings) -> Deliveries:
    """The deliveries store as the API builds it too (service/context.py)."""
    return Deliveries(
        redis,
        keys,
        schedule_s=settings.callback_schedule_s,
        retention_s=settings.job_retention_s,
    )


def worker_context(ctx: dict[str, Any]) -> WorkerContext:
    found: WorkerContext = ctx[CONTEXT_KEY]
    return found


async def on_startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    if settings.worker_metrics_port is not None:
        # prometheus_client's own threaded HTTP server: a scrape never waits on the event loop.
        server, _ = start_http_server(settings.worker_metrics_port, addr=settings.host)
        ctx[METRICS_SERVER_KEY] = server
    await warn_if_unauthenticated(ctx["redis"], settings.redis_url)
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        follow_redirects=False,
        # Callbacks must go straight to the address that was checked, never via an
        # environment-configured proxy.
        trust_env=False,
    )
    resources = contextlib.AsyncExitStack()
    media = await resources.enter_async_context(open_media_store(settings))
    # vidhook's own steps on a client of their own, packing in C (service/redisconn.py);
    # ARQ keeps its pool for its queue.
    redis = worker_redis(settings)
    resources.push_async_callback(redis.aclose)
    keys = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name)
    ctx[CONTEXT_KEY] = WorkerContext(
        settings=settings,
        http=http,
        store=JobStore(
            redis,
            keys,
            job_retention_s=settings.job_retention_s,
            event_stream_maxlen=settings.event_stream_maxlen,
            job_deadline_s=settings.job_deadline_s,
            budget=settings.budget,
        ),
        budgets=Budgets(redis, keys, settings.budget),
        fal=FalQueueClient(
            http,
            queue_base_url=str(settings.fal_queue_base_url),
            api_key=settings.fal_key.get_secret_value(),
            submit_timeout_s=settings.fal_submit_timeout_s,
            status_timeout_s=settings.fal_status_timeout_s,
        ),
        platform=FalPlatformClient(
            http,
            platform_base_url=str(settings.fal_platform_base_url),
            api_key=settings.fal_key.get_secret_value(),
        ),
        callbacks=CallbackSender(
            http,
            settings.callback_signing_secret.get_secret_value(),
            tenant_secrets=settings.tenant_signing_secrets,
            allow_private_targets=settings.callback_allow_private_targets,
            timeout_s=settings.callback_timeout_s,
        ),
        deliveries=open_deliveries(redis, keys, settings),
        media=media,
        resources=resources,
    )
    # What start-up built (modules, settings, clients) lives as long as the process: frozen,
    # the cyclic collector stops walking it on every collection of a task's garbage.
    gc.freeze()


async def on_shutdown(ctx: dict[str, Any]) -> None:
    context = ctx.get(CONTEXT_KEY)
    if isinstance(context, WorkerContext):
        await context.http.aclose()
        await context.resources.aclose()
    metrics_server = ctx.pop(METRICS_SERVER_KEY, None)
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()
