"""What a user would write without vidhook: the official fal-client's `subscribe`.

    FAL_KEY=… .venv/bin/python -m bench.falclient_run --queue-url http://127.0.0.1:8711/ \\
        --endpoint fal-ai/veo3.1/fast/image-to-video --input '{"prompt": …}' --jobs 3

Runs `--jobs` concurrent `fal_client.subscribe_async` calls with the client's defaults and
prints `BENCH_RESULT {json}` with each call's start and end (wall clock). fal-client only
speaks https to fal's own hosts; the one change made here is pointing its queue URL at the
simulator (through the benchmark's counting proxy), exactly where fal's queue would be.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any


async def run(queue_url: str, endpoint: str, arguments: dict[str, Any], jobs: int) -> list[Any]:
    import fal_client
    import fal_client.client

    fal_client.client.QUEUE_URL_FORMAT = queue_url.rstrip("/") + "/"

    async def one() -> dict[str, Any]:
        started = time.time()
        try:
            result = await fal_client.subscribe_async(endpoint, arguments=arguments)
            ok = isinstance(result, dict) and "video" in result
        except Exception as exc:  # reported, not raised: the benchmark counts failures
            return {"start": started, "end": time.time(), "ok": False, "error": repr(exc)}
        return {"start": started, "end": time.time(), "ok": ok}

    return list(await asyncio.gather(*(one() for _ in range(jobs))))


def main() -> None:
    parser = argparse.ArgumentParser(description="fal-client subscribe against the simulator")
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--input", required=True, help="the fal input, as JSON")
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    calls = asyncio.run(run(args.queue_url, args.endpoint, json.loads(args.input), args.jobs))
    print("BENCH_RESULT " + json.dumps({"calls": calls}), flush=True)


if __name__ == "__main__":
    main()
