"""Which tenant a request speaks for, from its API key.

`/v1` and `/fal/proxy` take `Authorization: Bearer <key>`; fal's queue API at `/fal/` takes
`Authorization: Key <key>`, as fal's clients send their FAL_KEY. Either way the key is one of
vidhook's API_KEYS: the real FAL_KEY never leaves the server.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request

from service.context import ApiContext, key_digest
from service.errors import Unauthorized

BEARER = frozenset({"bearer"})
FAL_KEY = frozenset({"key"})


def tenant_for(request: Request, schemes: Collection[str] = BEARER) -> str | None:
    """The tenant owning the request's key sent with one of `schemes`, or None."""
    ctx: ApiContext = request.app.state.ctx
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in schemes:
        return None
    return ctx.tenants_by_key_digest.get(key_digest(key.strip()))


def authenticate(request: Request) -> str:
    """The tenant owning the request's bearer key; Unauthorized otherwise."""
    tenant = tenant_for(request)
    if tenant is None:
        raise Unauthorized("Send `Authorization: Bearer <API key>` with a key this service knows.")
    return tenant
