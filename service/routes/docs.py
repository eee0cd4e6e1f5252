"""GET /openapi.json and GET /docs (Swagger UI served from the installed package, no CDN)."""

from __future__ import annotations

import json
from pathlib import Path

import swagger_ui
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from service.openapi import build_openapi

SWAGGER_UI_ASSETS = Path(swagger_ui.__file__).parent / "static"

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>vidhook API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


def docs_assets() -> StaticFiles:
    return StaticFiles(directory=SWAGGER_UI_ASSETS)


async def openapi_document(request: Request) -> Response:
    cached: bytes | None = getattr(request.app.state, "openapi_bytes", None)
    if cached is None:
        passthrough = bool(request.app.state.ctx.settings.allowed_endpoint_patterns)
        cached = json.dumps(build_openapi(passthrough=passthrough)).encode()
        request.app.state.openapi_bytes = cached
    return Response(cached, media_type="application/json")


async def docs_page(request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)
