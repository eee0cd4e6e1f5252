"""The whole system for the tests: a private Redis, the fal simulator behind a fault proxy,
the API over real HTTP, a real ARQ worker, and a callback receiver."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.app import create_app
from service.dev.localredis import LocalRedis, free_port
from service.dev.simulator import SimulatorConfig
from service.dev.simulator import create_app as create_simulator_app
from service.settings import Settings
from tests.support.falproxy import FalProxy
from tests.support.logcapture import LogCapture
from tests.support.servers import ServerThread
from tests.support.workerthread import WorkerThread

SIMULATOR_SIGNING_SEED = "5f" * 32
TENANT_A_KEY = "tenant-a-key-0123456789abcdef"
TENANT_B_KEY = "tenant-b-key-0123456789abcdef"
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"vidhook-test-callback-secret-32b").decode()
SAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "examples" / "sample.jpg"
FAL_KEY = "test-fal-key"
ADMIN_KEY = "admin-key-0123456789abcdef"


# Every log line of the whole run, rendered as production renders it, checked at the end.
LOG_LINES = LogCapture(
    secrets=[TENANT_A_KEY, TENANT_B_KEY, ADMIN_KEY, FAL_KEY, CALLBACK_SECRET,
             CALLBACK_SECRET.removeprefix("whsec_")],
)  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    LOG_LINES.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = LOG_LINES.leaks()
    if leaks:
        print(f"\n{len(leaks)} log line(s) carry a secret, token or data URI:", file=sys.stderr)
        for reason, line in leaks[:20]:
            print(f"  [{reason}] {line[:300]}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    port = free_port()
    config = SimulatorConfig(
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        delay_s=0.1,
        signing_keys=SIMULATOR_SIGNING_SEED,
        webhook_time_scale=0.0005,
        concurrency=4,
        data_dir=tmp_path_factory.mktemp("simulator"),
    )
    with ServerThread(create_simulator_app(config), port=port) as server:
        yield server


@pytest.fixture(scope="session")
def fal_proxy(simulator: ServerThread) -> Iterator[FalProxy]:
    proxy = FalProxy(upstream=simulator.url)
    with ServerThread(proxy.app()) as server:
        proxy.url = server.url
        yield proxy


@dataclass
class CallbackReceiver:
    """Captures callback deliveries; answers with the scripted statuses first, then 204."""

    url: str = ""
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.deliveries.append((dict(request.headers), body))
                status = self.statuses.pop(0) if self.statuses else 204
            return Response(status_code=status)

        return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])

    def for_job(self, job_id: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b in self.deliveries if job_id.encode() in b]


@pytest.fixture(scope="session")
def callback_receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    with ServerThread(receiver.app()) as server:
        receiver.url = server.url
        yield receiver


@pytest.fixture(scope="session")
def settings(
    redis_server: LocalRedis,
    simulator: ServerThread,
    fal_proxy: FalProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    api_port = free_port()
    return Settings(
        redis_url=redis_server.url,
        fal_key=FAL_KEY,
        admin_api_keys=f"{ADMIN_KEY}:ops",
        fal_queue_base_url=fal_proxy.url,
        # The simulator's Platform API, through the proxy like the queue.
        fal_platform_base_url=f"{fal_proxy.url}/v1",
        submit_lookup_interval_s=0.3,
        fal_jwks_url=f"{simulator.url}/.well-known/jwks.json",
        public_base_url=f"http://127.0.0.1:{api_port}",
        port=api_port,
        api_keys=f"{TENANT_A_KEY}:tenant-a,{TENANT_B_KEY}:tenant-b",
        callback_signing_secret=CALLBACK_SECRET,
        callback_allow_private_targets=True,
        fal_submit_timeout_s=1.0,
        retry_base_delay_s=0.05,
        retry_max_delay_s=0.3,
        ambiguous_submit_grace_s=10.0,
        reconcile_after_s=8.0,
        dispatch_max_tries=4,
        callback_retry_schedule_s="0,0.05,0.1,0.2",
        worker_poll_delay_s=0.02,
        allowed_endpoints="fal-ai/kling-video/*",
        # The local default: no bucket, files in a folder served by the API.
        media_local_dir=tmp_path_factory.mktemp("media"),
        media_allow_private_sources=True,
        # The dashboard's browser tests play the simulator's videos (http, not fal's https CDN).
        dashboard_media_origins=simulator.url,
    )


@pytest.fixture(scope="session")
def api(settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(settings), port=settings.port) as server:
        yield server


@pytest.fixture(scope="session")
def worker(settings: Settings) -> Iterator[WorkerThread]:
    thread = WorkerThread(settings).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def system(api: ServerThread, worker: WorkerThread) -> ServerThread:
    """The API with a worker behind it: everything a client talks to."""
    return api


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(system: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.url, headers=bearer(TENANT_A_KEY), timeout=10) as http:
        yield http


def sample_image_data_uri() -> str:
    return "data:image/jpeg;base64," + base64.b64encode(SAMPLE_IMAGE.read_bytes()).decode()


def i2v_body(marker: str, **input_overrides: Any) -> dict[str, Any]:
    """A valid image-to-video request whose prompt carries `marker` for the fault proxy."""
    return {
        "endpoint": "fal-ai/veo3.1/fast/image-to-video",
        "input": {
            "prompt": f"A lighthouse at dusk, waves rolling in ({marker})",
            "image_url": sample_image_data_uri(),
            "duration": "4s",
            **input_overrides,
        },
    }


def wait_for(
    http: httpx.Client, job_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
) -> dict[str, Any]:
    """Poll the job until `done(job)`; fail the test with the last state seen otherwise."""
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if done(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there; last seen: {json.dumps(job)[:2000]}")


def is_terminal(job: dict[str, Any]) -> bool:
    return job.get("status") in ("completed", "failed", "cancelled")
