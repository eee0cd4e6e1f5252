"""GET /metrics: Prometheus exposition, this process's counters plus gauges read from Redis."""

from __future__ import annotations

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from service import metrics
from service.context import ApiContext


async def metrics_page(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    try:
        gauges = await metrics.system_gauges(ctx.redis, ctx.store.keys)
    except RedisError:
        gauges = {}  # the counters still say what this process saw; readyz says Redis is down
    return Response(metrics.render(gauges), media_type=metrics.CONTENT_TYPE_LATEST)
