"""probe_fal and wake_dispatch: the two tasks that let parked jobs go again (service/budgets.py).

probe_fal runs while dispatch is paused (fal refused our key with 401/403). It asks fal for
the status of a request id that cannot exist, which submits nothing and bills nothing
(fal-protocol §1.5): a good key gets 404 NOT_FOUND, a revoked key 401, a refused one 403.
On 404 dispatch resumes and the parked jobs are admitted; otherwise it asks again after
FAL_PAUSE_PROBE_S. fal's docs say status calls still work on a billing-locked account, so a
403 lock may look resolved to the probe: then the next submit is refused again (for free) and
pauses again, one submit per probe interval.

wake_dispatch runs when a 429's slow-down has expired, to admit what the smaller budget held
back (a release admits too, but a release may not come soon).
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from service.fal import AUTH_REFUSALS, FalRejected, FalUnavailable
from service.store import now_ms
from workers.context import WorkerContext, worker_context

logger = logging.getLogger("vidhook.admission")

# A request id no request has: the probe's answer can only be about our key.
PROBE_REQUEST_ID = "00000000-0000-4000-8000-000000000000"
PROBE_APP = "fal-ai/veo3.1"


def probe_url(w: WorkerContext) -> str:
    base = str(w.settings.fal_queue_base_url).rstrip("/")
    return f"{base}/{PROBE_APP}/requests/{PROBE_REQUEST_ID}/status"


async def probe_fal(ctx: dict[str, Any]) -> str:
    """Resume dispatch if fal takes our key again; Retry after FAL_PAUSE_PROBE_S if not."""
    w = worker_context(ctx)
    if await w.budgets.paused() is None:
        return "not paused"
    try:
        await w.fal.status(probe_url(w))
    except FalRejected:
        pass  # 404 (or 400/422): fal knows us, and not the request — the key works
    except FalUnavailable as exc:
        still = "still refuses our key" if exc.status_code in AUTH_REFUSALS else "cannot tell"
        logger.info("dispatch stays paused: fal %s (%s)", still, exc.status_code)
        raise Retry(defer=w.settings.fal_pause_probe_s) from exc
    admitted = await w.budgets.resume(now_ms())
    logger.warning("dispatch.resumed", extra={"admitted": admitted})
    return f"resumed, admitted {admitted}"


async def wake_dispatch(ctx: dict[str, Any]) -> str:
    """Admit parked jobs while slots are free (after a slow-down expired)."""
    w = worker_context(ctx)
    return f"admitted {await w.budgets.admit(now_ms())}"
