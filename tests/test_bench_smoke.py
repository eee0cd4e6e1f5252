"""The benchmark's own parts run: its ceiling app writes what it claims, its generator sends.

Figures are never asserted here; `make bench` measures, the tests only keep its parts working.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from redis import Redis

from bench.ceiling import KEY_PREFIX, create_app
from bench.loadgen import LoadGenerator, load_requests, summary
from service.dev.localredis import LocalRedis
from tests.support.servers import ServerThread


def test_ceiling_records_a_job_and_queues_it_in_one_multi(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    body = json.dumps({"endpoint": "fal-ai/veo3.1/image-to-video", "input": {"prompt": "x"}})
    requests_file = tmp_path / "ceiling.tsv"
    requests_file.write_text(f"/ceiling\tContent-Type\tapplication/json\t{body}\n")
    redis = Redis.from_url(redis_server.url)
    queued_before = redis.llen(f"{KEY_PREFIX}queue")
    with ServerThread(create_app(redis_server.url)) as server:
        raw = load_requests(requests_file, f"127.0.0.1:{server.port}")

        async def send() -> list[tuple[int, bytes]]:
            async with LoadGenerator(server.url, 2) as gen:
                sent, elapsed = await gen.closed(raw, 10.0, max_count=5)
            assert summary(sent, elapsed)["requests"] == 5
            return [(s.status, s.body) for s in sent]

        answers = asyncio.run(send())
    try:
        assert {status for status, _ in answers} == {202}
        job_id = json.loads(answers[0][1])["id"]
        stored = redis.hgetall(f"{KEY_PREFIX}job:{job_id}")
        assert stored[b"body"] == body.encode() and stored[b"status"] == b"queued"
        assert redis.llen(f"{KEY_PREFIX}queue") == queued_before + 5
    finally:
        redis.close()
