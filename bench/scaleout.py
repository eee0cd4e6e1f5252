"""Scale-out on one Redis: N API processes and M workers, N, M in {1, 2}, measured here.

    .venv/bin/python -m bench.scaleout [--duration 8] [--connections 32] [--max-seconds 300]
    make scaleout

For each (N, M): a fresh private Redis (AOF on, as shipped), N `vidhook api` processes on
their own ports (as N pods behind a Service), M `vidhook worker` processes, and a fake fal
(bench/fakefal.py: accepts every submit at once). A closed-loop client in this process sends
`POST /v1/jobs` round-robin over the APIs for `--duration` seconds, then waits for the
workers to submit everything accepted. Printed per run:

- intake jobs/s: 202s per second while the client ran;
- dispatched jobs/s: jobs the workers submitted to fal per second, from the first
  acceptance to the last submit (bounded by intake, since both run at once);
- Redis commands and bytes per job, from INFO commandstats/memory before and after;
- CPU seconds per process kind per job.

The load generator shares the machine's cores with the processes it measures (2 here), so
read the figures as what this machine does, not as a per-process ceiling. Every wait is
bounded; the whole run stops at `--max-seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.loadgen import LoadGenerator
from bench.stack import Stack, clean_environment, ports

API_KEY = "scaleout-key-0123456789abcdef"
SECRET = "whsec_" + "c2NhbGVvdXQtc2NhbGVvdXQtc2NhbGVvdXQtc2NhbGU="
BODY = {
    "endpoint": "fal-ai/veo3.1/fast/image-to-video",
    "input": {
        "prompt": "A lighthouse at dusk, waves rolling in",
        "image_url": "https://images.example.com/lighthouse.jpg",
        "duration": "4s",
    },
}


@dataclass
class Result:
    apis: int
    workers: int
    accepted: int
    intake_per_s: float
    dispatched_per_s: float
    redis_commands_per_job: float
    redis_bytes_per_job: float
    cpu_ms_per_job: dict[str, float]
    commands_per_job: dict[str, float]


def _command_calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def _raw_request(port: int) -> bytes:
    body = json.dumps(BODY).encode()
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _drive(urls: list[str], duration_s: float, connections: int) -> tuple[int, float]:
    """Closed-loop POSTs for `duration_s`, split over the APIs (bench/loadgen.py's raw
    keep-alive connections: far cheaper per request than an HTTP client library).

    Returns (jobs accepted, when the load started)."""
    started = time.monotonic()
    per_api = max(1, connections // len(urls))

    async def one(url: str) -> int:
        port = int(url.rsplit(":", 1)[1])
        async with LoadGenerator(url, per_api) as load:
            sent, _ = await load.closed([_raw_request(port)], duration_s)
        return sum(1 for result in sent if result.status == 202)

    counts = await asyncio.gather(*(one(url) for url in urls))
    return sum(counts), started


def run_one(apis: int, workers: int, args: argparse.Namespace, out: Path) -> Result:
    stack = Stack(out / f"n{apis}m{workers}")
    try:
        redis_url = stack.start_redis()
        fal_port, *api_ports = ports(1 + apis)
        stack.start("fakefal", ["bench.fakefal", "--port", str(fal_port)], clean_environment())
        fal = f"http://127.0.0.1:{fal_port}"
        stack.wait_http("fakefal", f"{fal}/_count")
        env = {
            **clean_environment(),
            "REDIS_URL": redis_url,
            "FAL_KEY": "scaleout",
            "FAL_QUEUE_BASE_URL": fal,
            "FAL_JWKS_URL": f"{fal}/.well-known/jwks.json",
            "API_KEYS": f"{API_KEY}:bench",
            "CALLBACK_SIGNING_SECRET": SECRET,
            "RECONCILE_AFTER_S": "3600",
            "LOG_LEVEL": "warning",
        }
        urls = []
        for index, port in enumerate(api_ports):
            api_env = {**env, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
            stack.start(f"api{index}", ["service.cli", "api"], api_env)
            urls.append(f"http://127.0.0.1:{port}")
        for index, url in enumerate(urls):
            stack.wait_http(f"api{index}", f"{url}/healthz")
        for index in range(workers):
            stack.start(
                f"worker{index}",
                ["service.cli", "worker"],
                {**env, "PUBLIC_BASE_URL": urls[0]},
            )
        time.sleep(1.0)  # workers connect and start polling
        stack.check_alive()
        client = redis.Redis.from_url(redis_url)
        calls_before = _command_calls(client)
        memory_before = int(client.info("memory")["used_memory"])
        cpu_before = stack.cpu_seconds()
        accepted, first_at = asyncio.run(_drive(urls, args.duration, args.connections))
        deadline = time.monotonic() + args.drain_timeout
        submitted = 0
        while time.monotonic() < deadline:
            submitted = int(httpx.get(f"{fal}/_count").json()["count"])
            if submitted >= accepted:
                break
            time.sleep(0.05)
        last_at = time.monotonic()
        cpu_after = stack.cpu_seconds()
        calls_after = _command_calls(client)
        by_command = {
            name: count - calls_before.get(name, 0) for name, count in calls_after.items()
        }
        calls = sum(by_command.values())
        memory = int(client.info("memory")["used_memory"]) - memory_before
        client.close()
        per_kind: dict[str, float] = {}
        for name, seconds in cpu_after.items():
            kind = name.rstrip("0123456789")
            per_kind[kind] = per_kind.get(kind, 0.0) + seconds - cpu_before.get(name, 0.0)
        jobs = max(accepted, 1)
        return Result(
            apis=apis,
            workers=workers,
            accepted=accepted,
            intake_per_s=round(accepted / args.duration, 1),
            dispatched_per_s=round(submitted / max(last_at - first_at, 1e-9), 1),
            redis_commands_per_job=round(calls / jobs, 1),
            redis_bytes_per_job=round(memory / jobs, 0),
            cpu_ms_per_job={kind: round(s * 1000 / jobs, 2) for kind, s in per_kind.items()},
            commands_per_job={
                name: round(count / jobs, 2)
                for name, count in sorted(by_command.items(), key=lambda item: -item[1])
                if count
            },
        )
    finally:
        stack.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    started = time.monotonic()
    out = Path(tempfile.mkdtemp(prefix="vidhook-scaleout-"))
    best: dict[tuple[int, int], Result] = {}
    load_before = os.getloadavg()
    try:
        # Rounds alternate the configurations, so that a noisy neighbour on a shared machine
        # hurts each alike; the best round of each is reported.
        for round_index in range(args.rounds):
            for apis, workers in ((1, 1), (1, 2), (2, 1), (2, 2)):
                if time.monotonic() - started > args.max_seconds:
                    print(f"stopping: --max-seconds {args.max_seconds} reached", file=sys.stderr)
                    break
                result = run_one(apis, workers, args, out / f"round{round_index}")
                print(json.dumps(asdict(result)), file=sys.stderr)
                kept = best.get((apis, workers))
                if kept is None or result.dispatched_per_s > kept.dispatched_per_s:
                    best[(apis, workers)] = result
    finally:
        if not os.environ.get("SCALEOUT_KEEP"):
            shutil.rmtree(out, ignore_errors=True)
    results = list(best.values())
    cores, python = os.cpu_count(), sys.version.split()[0]
    load_after = os.getloadavg()
    print(
        f"\n{cores} cores, Python {python}, {args.duration:g} s of load per run, best of "
        f"{args.rounds} rounds; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        "| APIs | workers | intake jobs/s | dispatched jobs/s | Redis cmds/job | Redis B/job "
        "| CPU ms/job: api, worker, redis, fakefal |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        cpu = ", ".join(
            str(r.cpu_ms_per_job.get(k, 0)) for k in ("api", "worker", "redis", "fakefal")
        )
        print(
            f"| {r.apis} | {r.workers} | {r.intake_per_s} | {r.dispatched_per_s} | "
            f"{r.redis_commands_per_job} | {r.redis_bytes_per_job:.0f} | {cpu} |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
