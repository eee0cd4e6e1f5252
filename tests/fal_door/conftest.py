"""vidhook's fal door over TLS (a throwaway CA), and the official fal_client pointed at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from service.app import create_app
from service.settings import Settings
from tests.conftest import TENANT_A_KEY, CallbackReceiver
from tests.support.servers import ServerThread

SCENARIOS = Path(__file__).with_name("falclient_scenarios.py")


@dataclass(frozen=True)
class TlsFiles:
    ca_pem: str
    cert_pem: str
    key_pem: str


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    files = TlsFiles(str(folder / "ca.pem"), str(folder / "cert.pem"), str(folder / "key.pem"))
    ca.cert_pem.write_to_path(files.ca_pem)
    cert.cert_chain_pems[0].write_to_path(files.cert_pem)
    cert.private_key_pem.write_to_path(files.key_pem)
    return files


@pytest.fixture(scope="session")
def tls_api(
    settings: Settings, tls_files: TlsFiles, system: ServerThread
) -> Iterator[ServerThread]:
    """A second API process on the same Redis and worker (and fal webhook receiver), over https."""
    values: dict[str, Any] = {**dict(settings), "port": 0}
    tls = (tls_files.cert_pem, tls_files.key_pem)
    with ServerThread(create_app(Settings(**values)), tls=tls) as server:
        yield server


@pytest.fixture(scope="session")
def idle_tls_api(settings: Settings, tls_files: TlsFiles) -> Iterator[ServerThread]:
    """An https API whose queue no worker reads: its jobs stay queued until cancelled."""
    values: dict[str, Any] = {
        **dict(settings),
        "port": 0,
        "redis_key_prefix": "idle:",
        "arq_queue_name": "idle:queue",
    }
    tls = (tls_files.cert_pem, tls_files.key_pem)
    with ServerThread(create_app(Settings(**values)), tls=tls) as server:
        yield server


@dataclass(frozen=True)
class FalClientRunner:
    tls_files: TlsFiles

    def run(self, server: ServerThread, scenario: str, **args: Any) -> dict[str, Any]:
        """Run one scenario of the official fal_client against `server`'s /fal/ door."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("FAL_") and key not in ("SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
        }
        env.update(
            FAL_QUEUE_RUN_HOST=f"127.0.0.1:{server.port}/fal",
            FAL_KEY=TENANT_A_KEY,
            SSL_CERT_FILE=self.tls_files.ca_pem,
            FAL_HOME_DIR=str(Path(self.tls_files.ca_pem).parent / "fal-home"),
        )
        run = subprocess.run(
            [sys.executable, str(SCENARIOS), scenario],
            input=json.dumps(args),
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert run.returncode == 0, run.stderr[-4000:]
        found: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
        return found


@pytest.fixture(scope="session")
def fal_client_runner(tls_files: TlsFiles) -> FalClientRunner:
    return FalClientRunner(tls_files)


def wait_for_callback(
    receiver: CallbackReceiver, job_id: str, timeout_s: float = 20.0
) -> list[tuple[dict[str, str], bytes]]:
    """The callback deliveries naming `job_id`, once there is at least one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := receiver.for_job(job_id):
            return found
        time.sleep(0.05)
    raise AssertionError(f"no callback for {job_id}")
