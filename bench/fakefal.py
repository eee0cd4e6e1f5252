"""A minimal fal queue stand-in for the scale-out run: accepts every submit at once, no render.

    .venv/bin/python -m bench.fakefal --port 8720

The simulator renders real MP4s, which two cores cannot do hundreds of times a second; this
answers a submit with fal's receipt shape and nothing else (no webhooks), so what a
scale-out run measures is vidhook's intake and dispatch, not the stand-in. It counts what it
accepted at `GET /_count`.
"""

from __future__ import annotations

import argparse
import itertools

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app() -> Starlette:
    counter = itertools.count(1)
    accepted = {"count": 0}

    async def submit(request: Request) -> Response:
        await request.body()
        request_id = f"req-{next(counter)}"
        accepted["count"] += 1
        base = (
            f"http://{request.url.netloc}/{request.path_params['endpoint']}/requests/{request_id}"
        )
        return JSONResponse(
            {
                "request_id": request_id,
                "status_url": f"{base}/status",
                "response_url": base,
                "cancel_url": f"{base}/cancel",
                "queue_position": 0,
            }
        )

    async def count(request: Request) -> Response:
        return JSONResponse(accepted)

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "A" * 43}]})

    return Starlette(
        routes=[
            Route("/_count", count, methods=["GET"]),
            Route("/.well-known/jwks.json", jwks, methods=["GET"]),
            Route("/{endpoint:path}", submit, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(), host="127.0.0.1", port=args.port, log_level="warning",
        access_log=False, loop="uvloop", http="httptools",
    )  # fmt: skip


if __name__ == "__main__":
    main()
