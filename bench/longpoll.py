"""`make bench-longpoll`: what 1,000 concurrent long-polls cost Redis, against one API process.

    .venv/bin/python -m bench.longpoll [--polls 1000] [--hold 3]

Starts a private Redis and one `vidhook api` (no worker: the jobs stay queued), creates
`--polls` jobs, opens one `GET /v1/jobs/{id}?wait=60` per job at once, holds them `--hold`
seconds, then finishes every job (cancels it, one transition step each, as a worker's finish
would) and waits for every answer. Redis commands are counted with `INFO commandstats` deltas
over the phase; the bench's own finishing steps (EVALSHA and what the script runs inside) are
left out. Beside it, the naive ceiling: clients polling `GET /v1/jobs/{id}` every 0.5 s for
the hold alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.stack import Stack, clean_environment, ports
from service.jobs import JobStatus
from service.keys import RedisKeys
from service.store import JobStore

API_KEY = "bench-api-key-0123456789abcdef"
NAIVE_POLL_S = 0.5
# Commands the finishing steps run inside EVALSHA; counted per call by commandstats too.
FINISHING = {"evalsha", "hset", "hget", "hmget", "hgetall", "xadd", "publish", "expire"}


async def commandstats(redis: Redis) -> dict[str, int]:
    stats: dict[str, Any] = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def run(polls: int, hold_s: float, out: Path) -> dict[str, Any]:
    stack = Stack(out)
    api_port, fake_fal = ports(2)
    try:
        redis_url = stack.start_redis()
        env = {
            **clean_environment(),
            "REDIS_URL": redis_url,
            "FAL_KEY": "k",
            "FAL_QUEUE_BASE_URL": f"http://127.0.0.1:{fake_fal}",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
            "API_KEYS": f"{API_KEY}:bench",
            "CALLBACK_SIGNING_SECRET": "whsec_dmlkaG9vay1iZW5jaC1jYWxsYmFjay1zZWNyZXQtMzI=",
            "PORT": str(api_port),
        }
        stack.start("api", ["service.cli", "api"], env)
        url = f"http://127.0.0.1:{api_port}"
        stack.wait_http("api", f"{url}/healthz")
        body = {"endpoint": "fal-ai/veo3.1/image-to-video"}
        body["input"] = {"prompt": "x", "image_url": "https://example.com/a.jpg"}  # type: ignore[assignment]
        limits = httpx.Limits(max_connections=polls + 10, max_keepalive_connections=polls + 10)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with (
            httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=90) as http,
            Redis.from_url(redis_url) as redis,
        ):
            ids = []
            for _ in range(polls):
                ids.append((await http.post("/v1/jobs", json=body)).json()["id"])
            store = JobStore(redis, RedisKeys("vh:", "vidhook:queue"), job_retention_s=3600)
            before = await commandstats(redis)
            started = time.monotonic()
            answered: list[float] = []

            async def poll(job_id: str) -> None:
                answer = await http.get(f"/v1/jobs/{job_id}", params={"wait": 60})
                assert answer.json()["status"] == "cancelled", answer.text
                answered.append(time.monotonic())

            tasks = [asyncio.create_task(poll(job_id)) for job_id in ids]
            await asyncio.sleep(hold_s)
            finish_at = time.monotonic()
            for job_id in ids:
                await store.transition(job_id, JobStatus.CANCELLED, reason="bench")
            await asyncio.gather(*tasks)
            after = await commandstats(redis)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        delta = {k: v for k, v in delta.items() if v}
        api = {k: v for k, v in delta.items() if k not in FINISHING or k == "hgetall"}
        # The finishing steps read no whole hash: every HGETALL is a long-poll's.
        total = sum(api.values()) - api.get("info", 0)
        # Over the hold alone (conservative: the answers after it took longer still).
        naive = polls * ((finish_at - started) / NAIVE_POLL_S)
        return {
            "polls": polls,
            "held_s": round(finish_at - started, 2),
            "all_answered_s_after_finishing": round(max(answered) - finish_at, 3),
            "redis_commands_by_name": delta,
            "long_poll_commands": total,
            "commands_per_long_poll": total / polls,
            "naive_polling_commands": round(naive),
            "naive_per_client": round(naive / polls, 1),
        }
    finally:
        stack.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "out-longpoll"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args.polls, args.hold, out))
    print(json.dumps(result, indent=1))
    print(
        f"\n{result['polls']} concurrent long-polls held {result['held_s']} s: "
        f"{result['long_poll_commands']} Redis commands "
        f"({result['commands_per_long_poll']:.2f} per long-poll); polling every "
        f"{NAIVE_POLL_S} s instead: ~{result['naive_polling_commands']} "
        f"({result['naive_per_client']} per client)"
    )


if __name__ == "__main__":
    main()
