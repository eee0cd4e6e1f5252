"""GET /v1/stats: the operations overview's numbers for the caller's scope (service/stats.py),
with spend control's own beside them: in-flight leases against FAL_MAX_IN_FLIGHT, and spend
today against each tenant's daily cap (service/budgets.py)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.auth import admin_name, authenticate
from service.context import ApiContext
from service.store import now_ms

HOUR_MS = 3_600_000


async def read_stats(request: Request) -> Response:
    """A tenant key: that tenant's numbers; an ADMIN_API_KEYS key: every tenant's."""
    ctx: ApiContext = request.app.state.ctx
    tenant = None if admin_name(request) is not None else await authenticate(request)
    answer = await ctx.stats.read(tenant, budget=ctx.settings.fal_max_in_flight)
    at_ms = now_ms()
    # Slots held (leases) count what the budget counts: admitted jobs, at fal or about to be.
    answer["in_flight"]["leases"] = await ctx.budgets.in_flight(tenant)
    tenants = [tenant] if tenant is not None else sorted(
        set(answer.get("tenants") or {}) | set(ctx.settings.budget.tenants)
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    # The tenants' dead-letter lists are scored by the time of the dead letter.
    dead = 0
    for name in tenants:
        dead += await ctx.redis.zcount(ctx.store.keys.dead_letters(name), at_ms - HOUR_MS, "+inf")
    answer["dead_letters_last_hour"] = dead
    for name in tenants:
        usage = await ctx.budgets.usage(name, at_ms)
        rows.append(
            {
                "tenant": name,
                "spend_today_usd": usage["today"]["spend_usd"],
                "daily_cap_usd": usage["today"]["cap_usd"],
                "spend_month_usd": usage["month"]["spend_usd"],
                "monthly_cap_usd": usage["month"]["cap_usd"],
                "in_flight": usage["in_flight"]["count"],
                "max_in_flight": usage["in_flight"]["max"],
            }
        )
    answer["spend"] = {"data": rows}
    paused = await ctx.budgets.paused()
    answer["dispatch"] = {"paused": paused.as_dict() if paused else None}
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})
