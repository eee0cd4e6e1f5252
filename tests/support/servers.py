"""Real HTTP servers for tests: an ASGI app under uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn

from service.dev.localredis import free_port


class ServerThread:
    """Serve `app` over real HTTP on 127.0.0.1 from a background thread.

    Use as a context manager or call start()/stop(). `url` is the base URL, no trailing slash.
    With `tls=(certfile, keyfile)` it serves https.
    """

    def __init__(
        self, app: Any, port: int | None = None, *, tls: tuple[str, str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.scheme = "https" if tls else "http"
        # log_config=None: uvicorn's lines (access lines too) reach the root logger, where the
        # suite's capture checks every one of them for secrets.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="info", lifespan="on",
            loop="asyncio", http="h11", ws="none", log_config=None,
            ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"server-{self.port}")

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self, timeout_s: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
