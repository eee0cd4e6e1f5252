"""Which tenant a request speaks for, from its API key; and whether it is an admin's.

`/v1` and `/fal/proxy` take `Authorization: Bearer <key>`; fal's queue API at `/fal/` takes
`Authorization: Key <key>`, as fal's clients send their FAL_KEY. Either way the key is one of
vidhook's: API_KEYS first (no I/O), then the keys kept in Redis by `vidhook keys create`
(one HGET, uncached, so a revoked key is refused from the next request on). The real FAL_KEY
never leaves the server. ADMIN_API_KEYS may list every tenant's jobs.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request

from service.context import ApiContext, key_digest
from service.errors import NotFound, Unauthorized
from service.jobs import Job

BEARER = frozenset({"bearer"})
FAL_KEY = frozenset({"key"})


def _key(request: Request, schemes: Collection[str]) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() in schemes and key else None


async def tenant_for(request: Request, schemes: Collection[str] = BEARER) -> str | None:
    """The tenant owning the request's key sent with one of `schemes`, or None."""
    ctx: ApiContext = request.app.state.ctx
    key = _key(request, schemes)
    if key is None:
        return None
    tenant = ctx.tenants_by_key_digest.get(key_digest(key))
    if tenant is None:
        tenant = await ctx.api_keys.tenant_for(key)
    return tenant


async def authenticate(request: Request) -> str:
    """The tenant owning the request's bearer key; Unauthorized otherwise."""
    tenant = await tenant_for(request)
    if tenant is None:
        raise Unauthorized("Send `Authorization: Bearer <API key>` with a key this service knows.")
    return tenant


def admin_name(request: Request) -> str | None:
    """The name of the ADMIN_API_KEYS entry the request's bearer key matches, if any."""
    ctx: ApiContext = request.app.state.ctx
    key = _key(request, BEARER)
    return ctx.admins_by_key_digest.get(key_digest(key)) if key else None


async def owned_job(request: Request) -> Job:
    """The job of the path's `job_id` as its caller may see it, read once.

    A tenant key sees its own tenant's jobs; an ADMIN_API_KEYS key any job. NotFound
    otherwise (another tenant's job answers as a missing one), Unauthorized for any other key.
    """
    ctx: ApiContext = request.app.state.ctx
    job_id = request.path_params["job_id"]
    tenant = None if admin_name(request) is not None else await authenticate(request)
    job = await ctx.store.get(job_id)
    if job is None or (tenant is not None and job.tenant != tenant):
        raise NotFound(f"No job {job_id!r}.")
    return job


async def acting_tenant(request: Request, job_id: str) -> tuple[str, bool]:
    """The tenant a call on job `job_id` acts for, and whether an admin key makes it.

    A tenant key acts for its own tenant (another tenant's job then answers 404 as usual). An
    ADMIN_API_KEYS key acts for the job's owner, so an operator can read and cancel any job;
    for a job that does not exist it raises NotFound. Unauthorized for any other key.
    """
    if admin_name(request) is None:
        return await authenticate(request), False
    ctx: ApiContext = request.app.state.ctx
    job = await ctx.store.get(job_id)
    if job is None:
        raise NotFound(f"No job {job_id!r}.")
    return job.tenant, True
