"""The processes a benchmark run starts: a private Redis and children configured by environment.

Every child is a separate process started the way an operator would (`vidhook api`,
`vidhook worker`, `vidhook simulator`, or a bench module), logging to `out/logs/NAME.log`,
and is stopped (SIGTERM, then SIGKILL) when the run ends, whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import redis

from service.dev.localredis import LocalRedis, free_port
from service.settings import Settings

STOP_TIMEOUT_S = 10.0


def clean_environment() -> dict[str, str]:
    """The caller's environment without anything vidhook or the simulator would read."""
    return {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields
        and not name.startswith("SIMULATOR_")
        and name not in ("FAL_KEY", "LOG_LEVEL", "ACCESS_LOG")
    }


class Stack:
    """Children of one benchmark run, by name."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.logs_dir = out_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.redis = LocalRedis(out_dir / "redis", appendonly=True)
        self.redis_pid: int | None = None
        self._children: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start_redis(self) -> str:
        self.redis.start()
        client = redis.Redis.from_url(self.redis.url)
        try:
            self.redis_pid = int(client.info("server")["process_id"])
        finally:
            client.close()
        return self.redis.url

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `python -m args…` as child `name`, its output going to logs/NAME.log."""
        if name in self._children:
            raise RuntimeError(f"{name} is already running")
        log = (self.logs_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self._children[name] = (process, log)
        return process

    def pid(self, name: str) -> int:
        return self._children[name][0].pid

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running child and Redis have used so far."""
        pids = {name: process.pid for name, (process, _) in self._children.items()}
        if self.redis_pid is not None:
            pids["redis"] = self.redis_pid
        used = {}
        for name, pid in pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            used[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return used

    def stop(self, name: str) -> None:
        process, log = self._children.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()

    def stop_all(self) -> None:
        for name in reversed(list(self._children)):
            self.stop(name)
        self.redis.stop()

    def check_alive(self) -> None:
        for name, (process, _) in self._children.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}; see {self.logs_dir / name}.log"
                )

    def wait_http(self, name: str, url: str, timeout_s: float = 30.0) -> None:
        """Wait until `url` answers (any HTTP status) or child `name` dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=1.0):  # noqa: S310 - loopback only
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} did not answer at {url} within {timeout_s}s")


def ports(count: int) -> list[int]:
    """`count` distinct free loopback ports."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = free_port()
        if port not in chosen:
            chosen.append(port)
    return chosen
