"""GET /dashboard: the operations dashboard, a static page over the public JSON API.

The page and its assets ship in the package (service/dashboard/) and are read once, at app
creation: no build step, no CDN, so it works on an air-gapped cluster. The page holds no
data of its own: it signs in with an API key kept in the browser's sessionStorage and reads
the same /v1 endpoints clients use, with `Authorization: Bearer`.

Every answer carries a strict Content-Security-Policy: scripts and styles from this origin
only (no inline code), connections to this origin only, no framing, no forms, no base URL.
Result videos come from fal's CDN, so media may also come from any https origin and from the
origins in DASHBOARD_MEDIA_ORIGINS (the local simulator in development); images from the
same, plus data: (an input's data URIs are shown as thumbnails).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.settings import Settings

_ASSET_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


def content_security_policy(media_origins: tuple[str, ...]) -> str:
    media = " ".join(("'self'", "https:", *media_origins))
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {media} data:",
            f"media-src {media}",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


@dataclass(frozen=True, slots=True)
class DashboardFiles:
    """The page and its assets, read from the package, with the headers they are served with."""

    page: bytes
    assets: dict[str, bytes]
    headers: dict[str, str]

    @classmethod
    def load(cls, settings: Settings) -> DashboardFiles:
        folder = resources.files("service").joinpath("dashboard")
        return cls(
            page=folder.joinpath("index.html").read_bytes(),
            assets={name: folder.joinpath(name).read_bytes() for name in _ASSET_TYPES},
            headers={
                "Content-Security-Policy": content_security_policy(
                    settings.dashboard_media_origin_list
                ),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY",
                "Cross-Origin-Opener-Policy": "same-origin",
            },
        )


def dashboard_routes(settings: Settings) -> tuple[Route, Starlette]:
    """The page's route and the assets' app (mounted at /dashboard/assets)."""
    files = DashboardFiles.load(settings)

    async def page(request: Request) -> Response:
        # no-store: the page is tiny and must pick up a new release's assets at once.
        return Response(
            files.page,
            media_type="text/html; charset=utf-8",
            headers={**files.headers, "Cache-Control": "no-store"},
        )

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files.assets:
            return Response("No such dashboard asset.", 404, media_type="text/plain")
        return Response(
            files.assets[name],
            headers={
                **files.headers,
                "Content-Type": _ASSET_TYPES[name],
                "Cache-Control": "no-cache",
            },
        )

    assets = Starlette(routes=[Route("/{name}", asset, methods=["GET"])])
    return Route("/dashboard", page, methods=["GET"]), assets
