"""`vidhook dev`: the whole system in one foreground process group, on embedded defaults.

Starts a private Redis unless REDIS_URL is set, and the fal simulator unless FAL_KEY is set;
then the API and a worker. SIGINT/SIGTERM stop every child; if one child dies, all stop.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx
from pydantic import ValidationError

from service.dev.localredis import LocalRedis, LocalRedisError
from service.settings import Settings, describe_validation_error

STOP_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
SIMULATOR_FAL_KEY = "local-simulator"


def _stable_secret(path: Path, make: str) -> str:
    """A development secret kept in the state directory, so it survives restarts."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(make + "\n")
    path.chmod(0o600)
    return make


def _dev_environment(state_dir: Path) -> tuple[dict[str, str], list[str], bool]:
    """The children's environment, what to tell the user, and whether to run the simulator."""
    env = dict(os.environ)
    use_simulator = not env.get("FAL_KEY")
    notes: list[str] = []
    port = env.setdefault("PORT", "8000")
    env.setdefault("HOST", "127.0.0.1")
    if use_simulator:
        # The simulator is on this machine: it can call the webhook receiver here.
        env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
        sim_port = env.setdefault("SIMULATOR_PORT", "8100")
        sim_url = f"http://127.0.0.1:{sim_port}"
        env["FAL_KEY"] = SIMULATOR_FAL_KEY
        env["FAL_QUEUE_BASE_URL"] = sim_url
        env["FAL_JWKS_URL"] = f"{sim_url}/.well-known/jwks.json"
        env.setdefault("SIMULATOR_DATA_DIR", str(state_dir / "simulator"))
        # /v1/endpoints' examples then name files this machine serves, not fal's internet ones.
        env.setdefault("EXAMPLE_MEDIA_BASE_URL", f"{sim_url}/samples")
        # The simulator serves its videos over http; the dashboard's CSP must let them play.
        env.setdefault("DASHBOARD_MEDIA_ORIGINS", sim_url)
        notes.append(f"fal:        local simulator at {sim_url} (set FAL_KEY to use real fal)")
    else:
        notes.append(f"fal:        {env.get('FAL_QUEUE_BASE_URL', 'https://queue.fal.run')}")
        if not env.get("PUBLIC_BASE_URL"):
            # Real fal cannot reach a laptop behind NAT: follow each request by polling.
            notes.append("mode:       poll mode (no PUBLIC_BASE_URL: fal's status URLs are polled)")
    if not env.get("API_KEYS"):
        key = _stable_secret(state_dir / "dev-api-key", "vhdev_" + secrets.token_urlsafe(24))
        env["API_KEYS"] = f"{key}:dev"
        notes.append(f"API key:    {key}  (tenant 'dev'; also in {state_dir / 'dev-api-key'})")
    if not env.get("CALLBACK_SIGNING_SECRET"):
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        env["CALLBACK_SIGNING_SECRET"] = _stable_secret(state_dir / "callback-secret", secret)
        notes.append(f"callbacks:  signed with the secret in {state_dir / 'callback-secret'}")
    # Local development sends callbacks to local receivers; production must not.
    env.setdefault("CALLBACK_ALLOW_PRIVATE_TARGETS", "true")
    if env.get("MEDIA_S3_BUCKET"):
        notes.append(f"media:      s3://{env['MEDIA_S3_BUCKET']}/{env.get('MEDIA_S3_PREFIX', '')}")
    else:
        media_dir = env.setdefault("MEDIA_LOCAL_DIR", str((state_dir / "media").resolve()))
        notes.append(f"media:      uploads and mirrored outputs in {media_dir}")
    # The simulator's outputs live on 127.0.0.1: the mirror must be allowed to fetch them.
    if use_simulator:
        env.setdefault("MEDIA_ALLOW_PRIVATE_SOURCES", "true")
    return env, notes, use_simulator


def run_dev_stack(state_dir: Path | None = None) -> int:
    """Run everything until a signal or a child's death; returns the exit code."""
    state_dir = state_dir or Path(os.environ.get("VIDHOOK_STATE_DIR", ".vidhook"))
    env, notes, use_simulator = _dev_environment(state_dir)
    redis: LocalRedis | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if not env.get("REDIS_URL"):
            redis = LocalRedis(state_dir / "redis", port=int(env.get("DEV_REDIS_PORT", "6390")))
            try:
                redis.start()
            except LocalRedisError as exc:
                print(f"vidhook dev: cannot start a private Redis: {exc}", file=sys.stderr)
                print("  (set REDIS_URL to use one you run, or DEV_REDIS_PORT)", file=sys.stderr)
                redis = None
                return 1
            env["REDIS_URL"] = redis.url
            notes.insert(0, f"redis:      {redis.url} (private, AOF in {redis.data_dir})")
        if not _settings_are_valid(env):
            return 2
        command = [sys.executable, "-m", "service.cli"]
        if use_simulator:
            children.append(("simulator", subprocess.Popen([*command, "simulator"], env=env)))
        children.append(("api", subprocess.Popen([*command, "api"], env=env)))
        children.append(("worker", subprocess.Popen([*command, "worker"], env=env)))
        # Say "running" only once the API answers: a taken port makes it exit at start-up.
        failed = _wait_until_serving(f"http://{env['HOST']}:{env['PORT']}/healthz", children)
        if failed is not None:
            print(f"vidhook dev: {failed} exited during start-up; stopping", file=sys.stderr)
            return 1
        print("\nvidhook dev is running:", file=sys.stderr)
        print(f"  api:        http://{env['HOST']}:{env['PORT']}", file=sys.stderr)
        print(f"  dashboard:  http://{env['HOST']}:{env['PORT']}/dashboard", file=sys.stderr)
        for note in notes:
            print(f"  {note}", file=sys.stderr)
        print("  Ctrl-C stops everything.\n", file=sys.stderr)
        while not stopping:
            for name, child in children:
                if child.poll() is not None:
                    print(
                        f"vidhook dev: {name} exited with {child.returncode}; stopping",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.2)
        return 0
    finally:
        _stop_children(children)
        if redis is not None:
            redis.stop()


def _wait_until_serving(
    health_url: str, children: list[tuple[str, subprocess.Popen[bytes]]]
) -> str | None:
    """Wait for `health_url` to answer; the name of a child that died meanwhile, if one did."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, child in children:
            if child.poll() is not None:
                return name
        try:
            if httpx.get(health_url, timeout=1.0).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return None  # slow, not dead: the supervision loop below notices a death later


def _settings_are_valid(env: dict[str, str]) -> bool:
    """Validate the children's configuration once, up front, with a readable message."""
    fields = {
        name.lower(): value for name, value in env.items() if name.lower() in Settings.model_fields
    }
    try:
        Settings.model_validate(fields)
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        return False
    return True


def _stop_children(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for _, child in reversed(children):
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
