"""`make bench`: vidhook's figures, each beside a ceiling measured in the same run.

    .venv/bin/python -m bench.run            # the full run, ~3-4 minutes
    .venv/bin/python -m bench.run --quick    # a short smoke run, ~1.5 minutes, noisier

Starts a private Redis, `vidhook api`, a bare Starlette + Redis ceiling app under the same
server settings, three fal simulators, and the benchmark's peer (client backend, file host,
counting proxy in front of fal); drives load with `wrk` (bench/wrk/requests.lua), or with
bench/loadgen.py when wrk is missing; prints one table and writes `out/results.json`,
`out/results.md` and the intake plot. All traffic stays on 127.0.0.1.

Phases (each starts from what the one before left, in this order):

1. intake: `POST /v1/jobs` against the ceiling's `POST /ceiling` at rising concurrency,
   alternating the two; then vidhook paced at half its peak rate for the latency target.
2. webhooks: signed fal webhooks for the jobs phase 1 created, against the ceiling again.
3. dispatch: a queue of jobs drained by one `vidhook worker` into a simulator, against a
   queue of no-op jobs drained by ARQ with the same worker settings.
4. added latency at 200 jobs/s: intake → fal submit received, fal webhook sent → callback
   received. The simulator renders real MP4s and cannot finish 200 jobs/s on two cores, so
   here the peer plays the completing model, signing fal's webhook with the simulator's key.
5. fal calls per job: vidhook and fal-client's `subscribe` against a simulator with a
   scaled-down model delay, counted by the proxy.
6. Redis memory per finished job, over the jobs phase 4 finished.
7. dispatch with the in-flight budget in place (FAL_MAX_IN_FLIGHT set, never binding) into the
   zero-latency bench/fakefal.py, against the fair ceiling: an ARQ task that makes the one POST
   a submit is, with the same httpx client settings, to the same fake fal.
8. long-poll: 1,000 concurrent `GET /v1/jobs/{id}?wait=60` on a fresh API process and Redis
   (bench/longpoll.py, also `make bench-longpoll`), against clients polling every 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop
from arq.connections import ArqRedis
from arq.jobs import deserialize_result
from redis.asyncio import ConnectionPool, Redis

from bench import longpoll, report
from bench.loadgen import LoadGenerator, Sent, load_requests
from bench.peer import RESULT_VIDEO_BYTES, ok_webhook_payload
from bench.profile import sampled
from bench.stack import Stack, clean_environment, ports
from service import tasks
from service.dev.simulator.signing import WebhookSigner
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = ROOT / "bench" / "wrk" / "requests.lua"
API_KEY = "bench-api-key-0123456789abcdef"
# Every vidhook job id, as it appears inside Redis key names.
JOB_ID_RE = re.compile(r"job_[0-9a-f]{32}")
TENANT = "bench"
FAL_KEY = "bench-fal-key"
SIGNING_SEED = "b3" * 32
CALLBACK_SECRET = "whsec_" + base64.b64encode(b"vidhook-bench-callback-secret-32").decode()
# Long enough that no accepted request finishes (and renders) while submits are measured.
NEVER_FINISHES_S = 3600
NOOP_QUEUE = "bench:noop"
# Set, so that every job takes and keeps a lease (fakefal never finishes one); never binding.
BENCH_MAX_IN_FLIGHT = 1_000_000
BUDGET_ROUNDS = 2


@dataclass(frozen=True)
class Plan:
    """How long and how hard each phase runs; --quick shrinks everything."""

    levels: tuple[int, ...]
    rounds: int
    run_s: float
    half_load_s: float
    dispatch_jobs: int
    latency_rates: tuple[float, ...]
    latency_s: float
    latency_warmup_s: float
    latency_drain_s: float
    latency_workers: int
    calls_jobs: int
    calls_model_delay_s: float

    @classmethod
    def full(cls) -> Plan:
        return cls(
            (1, 4, 16, 32, 64, 128), 2, 2.0, 4.0, 1500, (200.0, 50.0), 8.0, 1.0, 60.0, 2, 3, 3.0
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            levels=(4, 32),
            rounds=1,
            run_s=2.0,
            half_load_s=2.0,
            dispatch_jobs=600,
            latency_rates=(200.0, 50.0),
            latency_s=3.0,
            latency_warmup_s=0.5,
            latency_drain_s=30.0,
            latency_workers=2,
            calls_jobs=1,
            calls_model_delay_s=1.0,
        )


class Bench:
    def __init__(
        self, plan: Plan, out_dir: Path, *, quick: bool = False, profile: bool = False
    ) -> None:
        self.plan = plan
        self.quick = quick
        self.profile = profile
        self.out_dir = out_dir
        self.stack = Stack(out_dir)
        (
            self.api_port,
            self.ceiling_port,
            self.peer_port,
            self.proxy_port,
            self.sim_dispatch_port,
            self.sim_latency_port,
            self.sim_calls_port,
            self.fakefal_port,
        ) = ports(8)
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.ceiling_url = f"http://127.0.0.1:{self.ceiling_port}"
        self.peer_url = f"http://127.0.0.1:{self.peer_port}"
        self.proxy_url = f"http://127.0.0.1:{self.proxy_port}"
        self.wrk = shutil.which("wrk")
        self.redis_url = ""
        self.results: dict[str, Any] = {}

    # --- processes -------------------------------------------------------------------------

    def vidhook_env(self, fal_queue_url: str) -> dict[str, str]:
        return {
            **clean_environment(),
            "REDIS_URL": self.redis_url,
            "FAL_KEY": FAL_KEY,
            "FAL_QUEUE_BASE_URL": fal_queue_url,
            # Through the proxy, so the API's JWKS fetches are counted too.
            "FAL_JWKS_URL": f"{self.proxy_url}/.well-known/jwks.json",
            "PUBLIC_BASE_URL": self.api_url,
            "API_KEYS": f"{API_KEY}:{TENANT}",
            "CALLBACK_SIGNING_SECRET": CALLBACK_SECRET,
            # The peer, which receives the callbacks, listens on loopback.
            "CALLBACK_ALLOW_PRIVATE_TARGETS": "true",
            # The figures are the gateway's own: copying outputs costs their size over the
            # link to fal's CDN, which no local run measures honestly (README: Media).
            "MEDIA_MIRROR": "false",
            "MEDIA_LOCAL_DIR": str(self.out_dir / "media"),
            "HOST": "127.0.0.1",
            "PORT": str(self.api_port),
            "LOG_LEVEL": "info",
            "FAL_MAX_IN_FLIGHT": str(BENCH_MAX_IN_FLIGHT),
        }

    def simulator_env(self, port: int, delay_s: float, concurrency: int) -> dict[str, str]:
        return {
            **clean_environment(),
            "SIMULATOR_PORT": str(port),
            # URLs the simulator hands out (status, result) go through the counting proxy.
            "SIMULATOR_PUBLIC_URL": self.proxy_url,
            "SIMULATOR_DELAY_S": str(delay_s),
            "SIMULATOR_CONCURRENCY": str(concurrency),
            "SIMULATOR_SIGNING_KEYS": SIGNING_SEED,
            "SIMULATOR_FAL_KEY": FAL_KEY,
            "SIMULATOR_DATA_DIR": str(self.out_dir / f"simulator-{port}"),
        }

    def start_all(self) -> None:
        self.redis_url = self.stack.start_redis()
        base = clean_environment()
        sims = (
            ("sim-dispatch", self.sim_dispatch_port, NEVER_FINISHES_S, 1),
            ("sim-latency", self.sim_latency_port, NEVER_FINISHES_S, 1),
            ("sim-calls", self.sim_calls_port, self.plan.calls_model_delay_s, 8),
        )
        for name, port, delay_s, concurrency in sims:
            env = self.simulator_env(port, delay_s, concurrency)
            self.stack.start(name, ["service.cli", "simulator"], env)
        peer_args = ["bench.peer", "--port", str(self.peer_port)]
        peer_args += ["--proxy-port", str(self.proxy_port), "--seed", SIGNING_SEED]
        peer_args += ["--upstream", f"http://127.0.0.1:{self.sim_latency_port}"]
        self.stack.start("peer", peer_args, base)
        self.stack.start("fakefal", ["bench.fakefal", "--port", str(self.fakefal_port)], base)
        self.stack.start("api", ["service.cli", "api"], self.vidhook_env(self.proxy_url))
        ceiling_env = {**base, "REDIS_URL": self.redis_url, "PORT": str(self.ceiling_port)}
        self.stack.start("ceiling", ["bench.ceiling"], {**ceiling_env, "LOG_LEVEL": "info"})
        self.stack.wait_http("api", f"{self.api_url}/healthz")
        self.stack.wait_http("ceiling", f"{self.ceiling_url}/")
        self.stack.wait_http("peer", f"{self.peer_url}/_peer/health")
        for name, port, _, _ in sims:
            self.stack.wait_http(name, f"http://127.0.0.1:{port}/.well-known/jwks.json")

    def sampled(
        self, child: str, phase: str, delay_s: float = 0.0
    ) -> contextlib.AbstractContextManager[None]:
        """Profile child `child` during a block, when the run was asked to (--profile)."""
        output = self.out_dir / f"profile-{phase}-{child}.folded"
        return sampled(self.profile, self.stack.pid(child), output, delay_s)

    def peer(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - loopback only
            f"{self.peer_url}{path}", data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    # --- load ------------------------------------------------------------------------------

    def write_requests(self, name: str, rows: list[tuple[str, dict[str, str], bytes]]) -> Path:
        """Write requests as the TSV bench/wrk/requests.lua and bench/loadgen.py read."""
        path = self.out_dir / f"{name}.tsv"
        with path.open("w", encoding="utf-8") as fh:
            for target, headers, body in rows:
                fields = [target]
                for key, value in headers.items():
                    fields += [key, value]
                fields.append(body.decode())
                fh.write("\t".join(fields) + "\n")
        return path

    def load(
        self,
        url: str,
        requests: Path,
        connections: int,
        duration_s: float,
        rate: float = 0.0,
        max_count: int = 0,
    ) -> dict[str, float]:
        """One load run with wrk (or the fallback generator); returns its BENCH_RESULT."""
        env = {**os.environ, "BENCH_REQUESTS": str(requests)}
        env["BENCH_RATE"], env["BENCH_MAX"] = str(rate), str(max_count)
        if self.wrk:
            # wrk takes whole seconds.
            seconds = max(1, round(duration_s))
            command = [self.wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
            command += ["-s", str(WRK_SCRIPT), url]
        else:
            command = [sys.executable, "-m", "bench.loadgen", "--url", url]
            command += ["--requests", str(requests), "--connections", str(connections)]
            command += ["--duration", str(duration_s), "--rate", str(rate)]
            command += ["--max", str(max_count)]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
        for line in done.stdout.splitlines():
            if line.startswith("BENCH_RESULT "):
                result: dict[str, float] = json.loads(line.removeprefix("BENCH_RESULT "))
                return result
        raise RuntimeError(f"load generator failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")

    # --- bodies ----------------------------------------------------------------------------

    def intake_body(self) -> bytes:
        """A typical image-to-video job with a URL input, a callback and some metadata."""
        body = {
            "endpoint": "fal-ai/veo3.1/image-to-video",
            "input": {
                "prompt": "A slow dolly shot across a rain-soaked neon street at night, "
                "reflections rippling in puddles as a lone cyclist passes under flickering "
                "signs.",
                "image_url": f"{self.peer_url}/sample.jpg",
                "aspect_ratio": "16:9",
                "duration": "8s",
                "resolution": "1080p",
                "generate_audio": True,
            },
            "callback_url": f"{self.peer_url}/callbacks/acme?tenant=acme",
            "metadata": {"user_id": 4211, "campaign": "winter-teaser"},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def calls_input(self) -> dict[str, Any]:
        """The smallest render the simulator does: 4 s 720p, no audio."""
        return {
            "prompt": "A lighthouse at dusk, waves rolling in",
            "image_url": f"{self.peer_url}/sample.jpg",
            "duration": "4s",
            "resolution": "720p",
            "generate_audio": False,
        }

    @staticmethod
    def api_headers() -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}

    # --- phase 1: intake -------------------------------------------------------------------

    def phase_intake(self) -> None:
        plan = self.plan
        row = ("/v1/jobs", self.api_headers(), self.intake_body())
        intake = self.write_requests("intake", [row])
        ceiling = self.write_requests("ceiling", [("/ceiling", *row[1:])])
        subjects = {"vidhook": (self.api_url, intake), "ceiling": (self.ceiling_url, ceiling)}
        for url, requests in subjects.values():  # warm both servers and Redis
            self.load(url, requests, 16, 1.0)
        runs: dict[str, dict[int, list[dict[str, float]]]] = {"vidhook": {}, "ceiling": {}}
        with self.sampled("api", "intake"):
            for level in plan.levels:
                for round_ in range(plan.rounds):
                    # Alternate who goes first, so drift on a shared machine hits both.
                    order = ("ceiling", "vidhook") if round_ % 2 == 0 else ("vidhook", "ceiling")
                    for name in order:
                        url, requests = subjects[name]
                        result = self.load(url, requests, level, plan.run_s)
                        runs[name].setdefault(level, []).append(result)
                self.stack.check_alive()
                rates = ", ".join(f"{n} {combine(runs[n][level])['rps']:.0f}/s" for n in runs)
                print(f"  intake c={level}: {rates}", flush=True)
        curves = {
            name: {level: combine(results) for level, results in by_level.items()}
            for name, by_level in runs.items()
        }
        peak = max(curves["vidhook"], key=lambda level: curves["vidhook"][level]["rps"])
        ceiling_peak = max(curves["ceiling"], key=lambda level: curves["ceiling"][level]["rps"])
        half_rate = round(curves["vidhook"][peak]["rps"] / 2)
        half = {
            name: self.load(url, requests, 32, plan.half_load_s, rate=half_rate)
            for name, (url, requests) in subjects.items()
        }
        self.results["intake"] = {
            "curves": {name: {str(k): v for k, v in c.items()} for name, c in curves.items()},
            "peak_level": peak,
            "ceiling_peak_level": ceiling_peak,
            "vidhook": curves["vidhook"][peak],
            "ceiling": curves["ceiling"][ceiling_peak],
            "half_rate": half_rate,
            "half_load": half,
        }

    # --- phase 2: webhooks -----------------------------------------------------------------

    async def webhook_rows(self, count: int) -> list[tuple[str, dict[str, str], bytes]]:
        """A signed fal completion webhook for each of `count` jobs phase 1 created."""
        redis = Redis.from_url(self.redis_url)
        try:
            job_ids = [i.decode() for i in await redis.zrange(f"vh:jobs:{TENANT}", 0, count - 1)]
        finally:
            await redis.aclose()
        # The webhook URL vidhook gives fal for each job, as the API's settings derive it.
        env = self.vidhook_env(self.proxy_url)
        settings = Settings(**{name.lower(): value for name, value in env.items()})
        tokens = [settings.webhook_tokens.token(job_id) for job_id in job_ids]
        signer = WebhookSigner([SIGNING_SEED])
        timestamp = str(int(time.time()))
        rows = []
        for job_id, token in zip(job_ids, tokens, strict=True):
            request_id = str(uuid.uuid4())
            video_url = f"http://127.0.0.1:{self.sim_latency_port}/files/{job_id}.mp4"
            payload = ok_webhook_payload(request_id, video_url, RESULT_VIDEO_BYTES)
            # As the simulator's (and fal's) sender does: compact JSON, signed per delivery.
            body = json.dumps(payload, separators=(",", ":")).encode()
            signature = signer.sign(
                request_id=request_id, user_id="bench-user", timestamp=timestamp, body=body
            )
            headers = {
                "Content-Type": "application/json",
                "X-Fal-Webhook-Request-Id": request_id,
                "X-Fal-Webhook-User-Id": "bench-user",
                "X-Fal-Webhook-Timestamp": timestamp,
                "X-Fal-Webhook-Signature": signature,
            }
            rows.append((f"/v1/fal/webhooks/{job_id}?token={token}", headers, body))
        return rows

    def phase_webhooks(self) -> None:
        plan = self.plan
        level = 32
        per_round = 4000 if plan.rounds > 1 else 2500
        rows = uvloop.run(self.webhook_rows(per_round * plan.rounds))
        if len(rows) < per_round * plan.rounds:
            raise RuntimeError(f"phase 1 left only {len(rows)} jobs for the webhook phase")
        ceiling = self.write_requests("ceiling-webhook", [("/ceiling", *rows[0][1:])])
        results: dict[str, list[dict[str, float]]] = {"vidhook": [], "ceiling": []}
        with self.sampled("api", "webhooks"):
            for round_ in range(plan.rounds):
                chunk = rows[round_ * per_round : (round_ + 1) * per_round]
                hooks = self.write_requests(f"webhooks-{round_}", chunk)
                results["ceiling"].append(self.load(self.ceiling_url, ceiling, level, plan.run_s))
                results["vidhook"].append(
                    self.load(self.api_url, hooks, level, plan.run_s, max_count=len(chunk))
                )
        self.stack.check_alive()
        completed = uvloop.run(self.count_status([r[0].split("/")[-1].split("?")[0] for r in rows]))
        self.results["webhooks"] = {
            "level": level,
            "vidhook": combine(results["vidhook"]),
            "ceiling": combine(results["ceiling"]),
            "jobs_completed": completed.get("completed", 0),
            "webhooks_sent": sum(int(r["requests"]) for r in results["vidhook"]),
        }

    async def count_status(self, job_ids: list[str]) -> dict[str, int]:
        redis = Redis.from_url(self.redis_url)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hget(f"vh:job:{job_id}", "status")
                statuses = await pipe.execute()
        finally:
            await redis.aclose()
        counts: dict[str, int] = {}
        for status in statuses:
            key = status.decode() if status else "missing"
            counts[key] = counts.get(key, 0) + 1
        return counts

    # --- phase 3: dispatch -----------------------------------------------------------------

    async def flush(self) -> None:
        redis = Redis.from_url(self.redis_url)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()

    async def create_jobs(self, count: int, body: bytes) -> list[str]:
        raw = load_requests(
            self.write_requests("create", [("/v1/jobs", self.api_headers(), body)]),
            f"127.0.0.1:{self.api_port}",
        )
        async with LoadGenerator(self.api_url, 16) as gen:
            sent, _ = await gen.closed(raw, 120.0, max_count=count)
        if any(s.status != 202 for s in sent):
            raise RuntimeError("some jobs were not accepted while filling the queue")
        return [json.loads(s.body)["id"] for s in sent]

    async def drained(self, queue: str, task_ids: list[str], timeout_s: float) -> dict[str, Any]:
        """Wait for ARQ to finish every task; their rate from ARQ's own start/finish times."""
        redis = Redis.from_url(self.redis_url)
        cpu_samples: list[tuple[float, dict[str, float]]] = []
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                self.stack.check_alive()
                cpu_samples.append((time.time(), self.stack.cpu_seconds()))
                # Tasks due now; each submit also leaves a reconcile task due much later.
                due = await redis.zcount(queue, "-inf", int(time.time() * 1000))
                # The deadline sweep (a cron) may be running: it is not the work measured.
                running = [
                    key for key in await redis.keys("arq:in-progress:*") if b"sweep_jobs" not in key
                ]
                if due == 0 and not running:
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(
                    f"{queue} was not drained in {timeout_s}s: {due} due, running {running[:5]}"
                )
            async with redis.pipeline(transaction=False) as pipe:
                for task_id in task_ids:
                    pipe.get(f"arq:result:{task_id}")
                raw = await pipe.execute()
        finally:
            await redis.aclose()
        results = [deserialize_result(r, deserializer=tasks.deserialize) for r in raw if r]
        first = min(r.start_time for r in results)
        last = max(r.finish_time for r in results)
        elapsed_s = (last - first).total_seconds()
        cpu = cpu_between(cpu_samples, first.timestamp(), last.timestamp())
        return {
            "cpu_ms_per_task": {name: 1000 * s / len(results) for name, s in cpu.items()},
            "tasks": len(task_ids),
            "finished": len(results),
            "succeeded": sum(1 for r in results if r.success),
            "outcomes": _tally(str(r.result).split(" ")[0] for r in results),
            "elapsed_s": elapsed_s,
            "rate": len(results) / elapsed_s if elapsed_s else 0.0,
        }

    async def enqueue_noops(self, count: int) -> list[str]:
        pool = ConnectionPool.from_url(self.redis_url)
        redis = ArqRedis(pool, job_serializer=tasks.serialize, job_deserializer=tasks.deserialize)
        try:
            ids = [f"noop_{uuid.uuid4().hex}" for _ in range(count)]
            for task_id in ids:
                await redis.enqueue_job("noop", task_id, _job_id=task_id, _queue_name=NOOP_QUEUE)
        finally:
            await redis.aclose()
            await pool.aclose()
        return ids

    def phase_dispatch(self) -> None:
        count = self.plan.dispatch_jobs
        sim = f"http://127.0.0.1:{self.sim_dispatch_port}"
        uvloop.run(self.flush())
        noop_ids = uvloop.run(self.enqueue_noops(count))
        env = {**self.vidhook_env(sim), "NOOP_QUEUE": NOOP_QUEUE}
        self.stack.start("noop-worker", ["bench.noop_worker"], env)
        noop = uvloop.run(self.drained(NOOP_QUEUE, noop_ids, 120))
        self.stack.stop("noop-worker")
        job_ids = uvloop.run(self.create_jobs(count, self.intake_body()))
        submits_before = self.simulator_submits("sim-dispatch")
        self.stack.start("worker-dispatch", ["service.cli", "worker"], self.vidhook_env(sim))
        with self.sampled("worker-dispatch", "dispatch", delay_s=1.5):
            dispatch = uvloop.run(self.drained("vidhook:queue", job_ids, 180))
        self.stack.stop("worker-dispatch")
        dispatch["simulator_received"] = self.simulator_submits("sim-dispatch") - submits_before
        self.results["dispatch"] = {"vidhook": dispatch, "ceiling": noop}

    async def enqueue_posts(self, count: int) -> list[str]:
        pool = ConnectionPool.from_url(self.redis_url)
        redis = ArqRedis(pool, job_serializer=tasks.serialize, job_deserializer=tasks.deserialize)
        try:
            ids = [f"post_{uuid.uuid4().hex}" for _ in range(count)]
            for task_id in ids:
                await redis.enqueue_job("post", task_id, _job_id=task_id, _queue_name=NOOP_QUEUE)
        finally:
            await redis.aclose()
            await pool.aclose()
        return ids

    async def redis_figures(self) -> dict[str, int]:
        """Lease count and Redis's command counters (the Lua steps are one EVALSHA each)."""
        redis = Redis.from_url(self.redis_url)
        try:
            stats = await redis.info("commandstats")
            leases = int(await redis.zcard("vh:inflight"))
        finally:
            await redis.aclose()
        return {
            "leases": leases,
            "evalsha": int(stats.get("cmdstat_evalsha", {}).get("calls", 0)),
        }

    def phase_budget(self) -> None:
        """Dispatch with the budget in place vs one ARQ task per POST, both to the fake fal.

        Alternating, BUDGET_ROUNDS times each; the best round of each side is its figure (as
        intake's best concurrency is), every round is kept in the results.
        """
        rounds: dict[str, list[dict[str, Any]]] = {"vidhook": [], "ceiling": []}
        for _ in range(BUDGET_ROUNDS):
            rounds["ceiling"].append(self.budget_ceiling_round())
            rounds["vidhook"].append(self.budget_vidhook_round())
        best = {side: max(runs, key=lambda r: r["rate"]) for side, runs in rounds.items()}
        self.results["budget"] = {
            **best,
            "rounds": {side: [r["rate"] for r in runs] for side, runs in rounds.items()},
            "max_in_flight": BENCH_MAX_IN_FLIGHT,
        }

    def budget_ceiling_round(self) -> dict[str, Any]:
        fake = f"http://127.0.0.1:{self.fakefal_port}"
        uvloop.run(self.flush())
        post_ids = uvloop.run(self.enqueue_posts(self.plan.dispatch_jobs))
        env = {**self.vidhook_env(fake), "NOOP_QUEUE": NOOP_QUEUE, "NOOP_POST_URL": fake}
        self.stack.start("post-worker", ["bench.noop_worker"], env)
        with self.sampled("post-worker", "budget", delay_s=0.5):
            ceiling = uvloop.run(self.drained(NOOP_QUEUE, post_ids, 120))
        self.stack.stop("post-worker")
        return ceiling

    def budget_vidhook_round(self) -> dict[str, Any]:
        count = self.plan.dispatch_jobs
        fake = f"http://127.0.0.1:{self.fakefal_port}"
        uvloop.run(self.flush())
        job_ids = uvloop.run(self.create_jobs(count, self.intake_body()))
        before = uvloop.run(self.redis_figures())
        self.stack.start("worker-budget", ["service.cli", "worker"], self.vidhook_env(fake))
        with self.sampled("worker-budget", "budget", delay_s=1.5):
            dispatch = uvloop.run(self.drained("vidhook:queue", job_ids, 180))
        self.stack.stop("worker-budget")
        after = uvloop.run(self.redis_figures())
        dispatch["leases_held"] = after["leases"]
        dispatch["evalsha_per_job"] = (after["evalsha"] - before["evalsha"]) / count
        return dispatch

    def simulator_submits(self, name: str) -> int:
        """Submits the simulator logged as accepted (its own log, read from outside)."""
        log = (self.stack.logs_dir / f"{name}.log").read_text(errors="replace")
        return sum(1 for line in log.splitlines() if " submitted to " in line)

    # --- phase 4: added latency ------------------------------------------------------------

    async def paced_jobs(self, rate: float, count: int, body: bytes) -> list[Sent]:
        raw = load_requests(
            self.write_requests("paced", [("/v1/jobs", self.api_headers(), body)]),
            f"127.0.0.1:{self.api_port}",
        )
        async with LoadGenerator(self.api_url, 32) as gen:
            return await gen.paced(raw, rate, count)

    def wait_callbacks(self, job_ids: set[str], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            records = self.peer("/_peer/records")
            seen = {job_id for _, job_id in records["callbacks"]}
            if job_ids <= seen or time.monotonic() > deadline:
                return dict(records)
            self.stack.check_alive()
            time.sleep(0.5)

    def phase_latency(self) -> None:
        plan = self.plan
        uvloop.run(self.flush())
        memory_before = uvloop.run(self.used_memory())
        upstream = f"http://127.0.0.1:{self.sim_latency_port}"
        self.peer("/_peer/config", {"upstream": upstream, "emit_webhooks": True})
        # One worker process per core: the deployment this machine allows.
        for n in range(1, plan.latency_workers + 1):
            env = self.vidhook_env(self.proxy_url)
            self.stack.start(f"worker-{n}", ["service.cli", "worker"], env)
        time.sleep(1.5)  # the workers' start-up is not what is measured
        finished: list[str] = []
        self.results["latency"] = {}
        for rate in plan.latency_rates:
            self.peer("/_peer/reset", {})
            with self.sampled("worker-1", f"latency-{rate:.0f}", delay_s=0.5):
                figures, job_ids = self.latency_at(rate)
            self.results["latency"][f"{rate:.0f}"] = figures
            finished += job_ids
            print(f"  {rate:.0f} jobs/s: {json.dumps(figures)}", flush=True)
        self.peer("/_peer/config", {"emit_webhooks": False})
        for n in range(1, plan.latency_workers + 1):
            self.stack.stop(f"worker-{n}")
        self.results["memory"] = uvloop.run(self.memory(sorted(finished), memory_before))

    def latency_at(self, rate: float) -> tuple[dict[str, Any], list[str]]:
        """Jobs paced at `rate` for plan.latency_s: how long vidhook's own legs take."""
        plan = self.plan
        cpu_before = self.stack.cpu_seconds()
        started = time.monotonic()
        count = int(rate * plan.latency_s)
        sent = uvloop.run(self.paced_jobs(rate, count, self.intake_body()))
        accepted = [s for s in sent if s.status == 202]
        intake_sent = {json.loads(s.body)["id"]: s.sent_at for s in accepted}
        records = self.wait_callbacks(set(intake_sent), plan.latency_drain_s)
        busy_s = time.monotonic() - started
        cpu = self.stack.cpu_seconds()
        warm_until = min(intake_sent.values()) + plan.latency_warmup_s
        measured = {job for job, at in intake_sent.items() if at >= warm_until}
        submits = {
            job_of(r["webhook"]): r["t"]
            for r in records["requests"]
            if r["kind"] == "submit" and r["webhook"]
        }
        hooks = {job: at for at, job in records["webhooks_sent"]}
        callbacks = {job: at for at, job in records["callbacks"]}
        to_submit = [submits[j] - intake_sent[j] for j in measured if j in submits]
        to_callback = [callbacks[j] - hooks[j] for j in measured if j in hooks and j in callbacks]
        figures = {
            "rate": rate,
            "jobs": len(sent),
            "accepted": len(accepted),
            "measured": len(measured),
            "intake_ms": percentiles([s.latency_s for s in accepted]),
            "intake_to_submit_ms": percentiles(to_submit),
            "webhook_to_callback_ms": percentiles(to_callback),
            "submitted": len(to_submit),
            "called_back": len(to_callback),
            "seconds_to_finish_all": busy_s,
            "cpu_ms_per_job": {
                name: round(1000 * (cpu[name] - cpu_before.get(name, 0.0)) / max(1, len(sent)), 2)
                for name in cpu
                if cpu[name] - cpu_before.get(name, 0.0) > 0.01
            },
        }
        return figures, list(intake_sent)

    # --- phase 5: fal calls per job --------------------------------------------------------

    def phase_calls(self) -> None:
        plan = self.plan
        upstream = f"http://127.0.0.1:{self.sim_calls_port}"
        self.peer("/_peer/config", {"upstream": upstream, "emit_webhooks": False})
        # One worker, started fresh: its connections to fal are all this phase's.
        self.stack.start(
            "worker-calls", ["service.cli", "worker"], self.vidhook_env(self.proxy_url)
        )
        time.sleep(1.5)
        self.peer("/_peer/reset", {})
        endpoint = "fal-ai/veo3.1/fast/image-to-video"
        fal_input = self.calls_input()
        command = [sys.executable, "-m", "bench.falclient_run", "--queue-url", self.proxy_url]
        command += ["--endpoint", endpoint, "--input", json.dumps(fal_input)]
        command += ["--jobs", str(plan.calls_jobs)]
        env = {**clean_environment(), "FAL_KEY": FAL_KEY}
        fal_client = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        body = {"endpoint": endpoint, "input": fal_input}
        body["callback_url"] = f"{self.peer_url}/callbacks/calls"
        sent = uvloop.run(
            self.paced_jobs(50.0, plan.calls_jobs, json.dumps(body, separators=(",", ":")).encode())
        )
        intake_sent = {json.loads(s.body)["id"]: s.sent_at for s in sent if s.status == 202}
        try:
            stdout, _ = fal_client.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            fal_client.kill()
            raise
        records = self.wait_callbacks(set(intake_sent), 120)
        self.stack.stop("worker-calls")
        calls = json.loads(stdout.split("BENCH_RESULT ", 1)[1])["calls"]
        callbacks = {job: at for at, job in records["callbacks"]}
        vidhook_spans = [(intake_sent[j], callbacks[j]) for j in intake_sent if j in callbacks]
        fal_spans = [(c["start"], c["end"]) for c in calls if c["ok"]]
        self.results["calls"] = {
            "model_delay_s": plan.calls_model_delay_s,
            "vidhook": fal_usage(records, vidhook_spans, fal_client=False),
            "fal_client": fal_usage(records, fal_spans, fal_client=True),
            "vidhook_poll_mode": self.poll_mode_calls(body),
        }

    def poll_mode_calls(self, body: dict[str, Any]) -> dict[str, Any]:
        """The same jobs with a worker in poll mode (no PUBLIC_BASE_URL): its status polls."""
        env = {k: v for k, v in self.vidhook_env(self.proxy_url).items() if k != "PUBLIC_BASE_URL"}
        self.stack.start("worker-poll", ["service.cli", "worker"], env)
        time.sleep(1.5)
        self.peer("/_peer/reset", {})
        raw = json.dumps({**body, "callback_url": f"{self.peer_url}/callbacks/poll"}).encode()
        sent = uvloop.run(self.paced_jobs(50.0, self.plan.calls_jobs, raw))
        intake_sent = {json.loads(s.body)["id"]: s.sent_at for s in sent if s.status == 202}
        records = self.wait_callbacks(set(intake_sent), 180)
        self.stack.stop("worker-poll")
        callbacks = {job: at for at, job in records["callbacks"]}
        spans = [(intake_sent[j], callbacks[j]) for j in intake_sent if j in callbacks]
        usage = fal_usage(records, spans, fal_client=False)
        usage["poll_interval_s"] = Settings.model_fields["fal_poll_interval_s"].default
        usage["poll_max_interval_s"] = Settings.model_fields["fal_poll_max_interval_s"].default
        return usage

    # --- phase 6: memory -------------------------------------------------------------------

    async def used_memory(self) -> int:
        redis = Redis.from_url(self.redis_url)
        try:
            return int((await redis.info("memory"))["used_memory"])
        finally:
            await redis.aclose()

    async def memory(self, job_ids: list[str], used_before: int) -> dict[str, Any]:
        """Bytes each finished job keeps in Redis, key by key (MEMORY USAGE, every element).

        Every key that names a sampled job (found by one SCAN) is measured under a label with
        the job id taken out; the shared indexes and the global event stream are charged per
        job by their share of entries. ARQ's task results are reported apart: they expire
        TASK_RESULT_KEEP_S after the task, the rest lives as long as the job.
        """
        redis = Redis.from_url(self.redis_url)
        try:
            used_after = int((await redis.info("memory"))["used_memory"])
            statuses = await self.count_status(job_ids)
            sample = job_ids[: min(len(job_ids), 300)]
            sampled = set(sample)
            by_job: dict[str, list[str]] = {}
            async for raw in redis.scan_iter(count=1000):
                key = raw.decode()
                found = JOB_ID_RE.search(key)
                if found and found[0] in sampled:
                    by_job.setdefault(found[0], []).append(key)
            rows: dict[str, list[float]] = {}
            for job_id in sample:
                measured: dict[str, float] = {}
                for key in by_job.get(job_id, []):
                    label = key.replace(job_id, "{id}")
                    measured[label] = float(await redis.memory_usage(key, samples=0) or 0)
                job_key = f"vh:job:{job_id}"
                result = await redis.hget(job_key, "result") or b""
                measured["(result payload)"] = float(len(result))
                # The same hash without the result field, measured the same way.
                dumped = await redis.dump(job_key)
                if dumped is not None:
                    scratch = f"bench:scratch:{job_id}"
                    await redis.restore(scratch, 0, dumped, replace=True)
                    await redis.hdel(scratch, "result")
                    measured["vh:job:{id} without result"] = float(
                        await redis.memory_usage(scratch, samples=0) or 0
                    )
                    encoding = await redis.object("encoding", job_key)
                    # 1 when Redis keeps the hash compact (no value over hash-max-ziplist-value).
                    measured["(job hash compact)"] = float(encoding in (b"ziplist", b"listpack"))
                    await redis.delete(scratch)
                # One line of the hash's history field each (service/events.py).
                history = await redis.hget(job_key, "history") or b""
                measured["(state changes)"] = float(history.count(b"\n"))
                measured["(history field)"] = float(len(history))
                for label, value in measured.items():
                    rows.setdefault(label, []).append(value)
            changes_per_job = statistics.fmean(rows.get("(state changes)", [0.0]))
            shared: dict[str, float] = {}
            for key, count in (
                (f"vh:jobs:{TENANT}", "zcard"),
                ("vh:jobs", "zcard"),
                ("vh:events", "xlen"),
            ):
                entries = await getattr(redis, count)(key)
                if not entries:
                    continue
                per_entry = (await redis.memory_usage(key, samples=0) or 0) / entries
                # A job has one entry in each index, and one stream entry per state change.
                per_job = 1.0 if count == "zcard" else changes_per_job
                shared[f"{key} (share)"] = per_entry * per_job
        finally:
            await redis.aclose()
        mean = {label: statistics.fmean(values) for label, values in rows.items()}
        mean.update(shared)
        arq = sum(v for label, v in mean.items() if label.startswith("arq:"))
        kept = sum(
            v
            for label, v in mean.items()
            if label.startswith("vh:") and not label.endswith("without result")
        )
        excluded = kept - mean.get("vh:job:{id}", 0) + mean.get("vh:job:{id} without result", 0)
        return {
            "jobs": len(job_ids),
            "statuses": statuses,
            "sampled": len(sample),
            "per_key": mean,
            "included": kept,
            "excluded": excluded,
            "arq_results": arq,
            "used_memory_delta_per_job": (used_after - used_before) / max(1, len(job_ids)),
        }

    # --- phase 7: long-poll ----------------------------------------------------------------

    def phase_longpoll(self) -> None:
        # Its own stack (a fresh Redis and API): the commands counted are the long-polls' only.
        polls = 300 if self.quick else 1000
        out = self.out_dir / "longpoll"
        out.mkdir(exist_ok=True)
        self.results["longpoll"] = asyncio.run(longpoll.run(polls, 3.0, out))

    # --- the run ---------------------------------------------------------------------------

    def run(self, only: set[str] | None = None) -> dict[str, Any]:
        """Run the phases (all, or those named in `only`) and return every figure."""
        started = time.monotonic()
        self.results["machine"] = machine()
        self.results["command"] = "make bench" + (" BENCH_ARGS=--quick" if self.quick else "")
        self.results["generator"] = "wrk" if self.wrk else "bench/loadgen.py (wrk not found)"
        phases = {
            "intake": self.phase_intake,
            "webhooks": self.phase_webhooks,
            "dispatch": self.phase_dispatch,
            "latency": self.phase_latency,
            "calls": self.phase_calls,
            "budget": self.phase_budget,
            "longpoll": self.phase_longpoll,
        }
        try:
            self.start_all()
            for name, phase in phases.items():
                if only and name not in only:
                    continue
                print(f"bench: {name}…", flush=True)
                phase_started = time.monotonic()
                phase()
                print(f"bench: {name} done in {time.monotonic() - phase_started:.0f}s", flush=True)
        finally:
            self.stack.stop_all()
        self.results["duration_s"] = time.monotonic() - started
        return self.results


def cpu_between(
    samples: list[tuple[float, dict[str, float]]], start: float, end: float
) -> dict[str, float]:
    """CPU seconds each process used between two wall-clock times, from periodic samples."""

    def at(moment: float) -> dict[str, float]:
        before = [s for s in samples if s[0] <= moment] or samples[:1]
        after = [s for s in samples if s[0] >= moment] or samples[-1:]
        (t0, c0), (t1, c1) = before[-1], after[0]
        weight = 0.0 if t1 == t0 else (moment - t0) / (t1 - t0)
        return {k: c0[k] + weight * (c1.get(k, c0[k]) - c0[k]) for k in c0}

    if not samples:
        return {}
    first, last = at(start), at(end)
    return {k: round(last[k] - first[k], 3) for k in first if k in last}


def job_of(webhook_url: str) -> str:
    return webhook_url.split("?", 1)[0].rsplit("/", 1)[-1]


def combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Several runs of one configuration: total rate, mean of the latency percentiles."""
    requests = sum(r["requests"] for r in runs)
    duration = sum(r["duration_s"] for r in runs)
    combined = {"requests": requests, "duration_s": duration, "rps": requests / duration}
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"):
        combined[key] = statistics.fmean(r[key] for r in runs)
    combined["errors"] = sum(
        r[k] for r in runs for k in r if k.startswith("errors_") and isinstance(r[k], int | float)
    )
    return combined


def percentiles(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {"count": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(v * 1000 for v in values_s)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    return {"count": len(ordered), "p50": at(50), "p99": at(99), "max": ordered[-1]}


def fal_usage(
    records: dict[str, Any], spans: list[tuple[float, float]], *, fal_client: bool
) -> dict[str, Any]:
    """HTTP calls and connections to fal per completed job, for one side of phase 5."""

    def mine(ua: str) -> bool:
        return ua.startswith("fal-client/") == fal_client

    requests = [r for r in records["requests"] if mine(r["ua"])]
    kinds = _tally(r["kind"] for r in requests)
    completed = len(spans)
    conns = [c for c in records["connections"] if c["ua"] and mine(c["ua"])]
    if not spans:
        return {"completed": 0, "calls": len(requests), "kinds": kinds}
    window = (min(s for s, _ in spans), max(e for _, e in spans))
    job_seconds = sum(e - s for s, e in spans)
    conn_seconds = sum(
        max(0.0, min(c["closed"] or window[1], window[1]) - max(c["opened"], window[0]))
        for c in conns
    )
    return {
        "completed": completed,
        "calls": len(requests),
        "calls_per_job": len(requests) / completed,
        "kinds": kinds,
        "kinds_per_job": {k: v / completed for k, v in kinds.items()},
        "connections_opened": len(conns),
        "connections_per_inflight_job": conn_seconds / job_seconds if job_seconds else 0.0,
        "mean_job_s": job_seconds / completed,
        "status_polls_per_job_second": kinds.get("status", 0) / job_seconds,
    }


def _tally(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def machine() -> dict[str, str]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_version = "unknown"
    try:
        from service.dev.localredis import find_redis_server

        redis_version = subprocess.run(
            [find_redis_server(), "--version"], capture_output=True, text=True, check=False
        ).stdout.split()[2]
    except (OSError, IndexError, RuntimeError):
        pass
    wrk = shutil.which("wrk")
    wrk_version = "missing"
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_version = (out.stdout + out.stderr).split()[1] if (out.stdout + out.stderr) else "?"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "memory_gib": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "redis": redis_version,
        "wrk": wrk_version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="vidhook's benchmark suite")
    parser.add_argument("--quick", action="store_true", help="a short smoke run, noisier")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"), help="results directory")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "bench-intake.png"))
    parser.add_argument(
        "--phases",
        default="",
        help="comma-separated subset of intake,webhooks,dispatch,latency,calls,budget,longpoll "
        "(webhooks needs intake); prints the raw figures instead of the table",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the process under load in each phase"
    )
    args = parser.parse_args()
    # A SIGTERM unwinds like Ctrl-C, so the stack's `finally` stops every child it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out_dir = Path(args.out)
    marker = out_dir / ".bench-out"
    if out_dir.exists() and any(out_dir.iterdir()) and not marker.exists():
        raise SystemExit(f"bench: {out_dir} exists and is not a bench output directory")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    marker.touch()
    if not shutil.which("wrk"):
        print(
            "bench: wrk not found; using bench/loadgen.py, which shares the CPU with the "
            "servers. For figures that mean something: sudo apt-get install wrk",
            file=sys.stderr,
        )
    plan = Plan.quick() if args.quick else Plan.full()
    only = set(filter(None, args.phases.split(",")))
    bench = Bench(plan, out_dir, quick=args.quick, profile=args.profile)
    results = bench.run(only)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    if only:
        print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
        return
    table = report.table(results)
    (out_dir / "results.md").write_text(table + "\n")
    print()
    print(table)
    report.plot(results, Path(args.plot))
    print(f"\nplot: {args.plot}; results: {out_dir / 'results.json'}")


if __name__ == "__main__":
    main()
