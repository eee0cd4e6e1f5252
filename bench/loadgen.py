"""A small HTTP/1.1 load generator: keep-alive connections, pre-built requests, open-loop pacing.

The benchmark drives throughput with `wrk`; this generator is used where each response has
to be read (the job ids of the latency run) and as the fallback when `wrk` is missing:

    .venv/bin/python -m bench.loadgen --url http://127.0.0.1:8000 --requests FILE \\
        --connections 32 --duration 5 [--rate 500] [--max 1000]

prints the same `BENCH_RESULT {json}` line as bench/wrk/requests.lua. Paced runs measure
latency from each request's scheduled send time, so a server that falls behind is charged
for the wait (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

MAX_DURATION_S = 120.0


@dataclass(frozen=True, slots=True)
class Sent:
    """One request's outcome: wall-clock send time (s), latency (s), status and body."""

    sent_at: float
    latency_s: float
    status: int
    body: bytes


def load_requests(path: Path, host: str) -> list[bytes]:
    """The TSV request file (see bench/wrk/requests.lua) as raw HTTP/1.1 POST requests."""
    built = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line:
            continue
        fields = line.split("\t")
        target, headers, body = fields[0], fields[1:-1], fields[-1].encode()
        head = [f"POST {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
        head += [f"{headers[i]}: {headers[i + 1]}" for i in range(0, len(headers), 2)]
        built.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return built


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            length = int(lower[at + 17 : end])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


class LoadGenerator:
    """A pool of keep-alive connections to one server."""

    def __init__(self, url: str, connections: int) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.size = connections
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()

    async def __aenter__(self) -> LoadGenerator:
        for _ in range(self.size):
            self._idle.put_nowait(await Connection.open(self.host, self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()

    async def _one(self, raw: bytes, scheduled: float) -> Sent:
        conn = await self._idle.get()
        sent_at = time.time()
        try:
            status, body = await conn.exchange(raw)
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            conn = await Connection.open(self.host, self.port)
            status, body = 0, b""
        self._idle.put_nowait(conn)
        return Sent(sent_at, time.perf_counter() - scheduled, status, body)

    async def paced(self, requests: list[bytes], rate: float, count: int) -> list[Sent]:
        """Send `count` requests (cycling through `requests`) at `rate` per second."""
        start = time.perf_counter() + 0.01
        tasks = []
        for i in range(count):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._one(requests[i % len(requests)], scheduled)))
        return list(await asyncio.gather(*tasks))

    async def closed(
        self, requests: list[bytes], duration_s: float, max_count: int = 0
    ) -> tuple[list[Sent], float]:
        """Every connection sends its next request as soon as the last one is answered."""
        results: list[Sent] = []
        deadline = time.perf_counter() + min(duration_s, MAX_DURATION_S)
        counter = iter(range(max_count or 10**9))

        async def worker() -> None:
            for i in counter:
                if time.perf_counter() >= deadline:
                    return
                results.append(await self._one(requests[i % len(requests)], time.perf_counter()))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(self.size)))
        return results, time.perf_counter() - started


def summary(results: list[Sent], elapsed_s: float) -> dict[str, float]:
    """The figures wrk's script prints, from this generator's results."""
    latencies = sorted(r.latency_s * 1000 for r in results) or [0.0]

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    return {
        "requests": len(results),
        "duration_s": elapsed_s,
        "rps": len(results) / elapsed_s if elapsed_s else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": latencies[-1],
        "mean_ms": sum(latencies) / len(latencies),
        "errors_connect": 0,
        "errors_read": sum(1 for r in results if r.status == 0),
        "errors_write": 0,
        "errors_status": sum(1 for r in results if r.status >= 400),
        "errors_timeout": 0,
    }


async def run(args: argparse.Namespace) -> dict[str, float]:
    parts = urllib.parse.urlsplit(args.url)
    requests = load_requests(Path(args.requests), parts.netloc)
    async with LoadGenerator(args.url, args.connections) as gen:
        if args.rate:
            count = int(args.rate * args.duration)
            if args.max:
                count = min(count, args.max)
            started = time.perf_counter()
            results = await gen.paced(requests, args.rate, count)
            return summary(results, time.perf_counter() - started)
        results, elapsed = await gen.closed(requests, args.duration, args.max)
        return summary(results, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP/1.1 load generator (wrk fallback)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--max", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    print("BENCH_RESULT " + json.dumps(uvloop.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
