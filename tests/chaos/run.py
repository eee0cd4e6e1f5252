"""`make chaos`: hundreds of jobs through real processes while everything that can fail, fails.

Real parts: Redis (LocalRedis, AOF, `appendfsync everysec` as deploy/redis.conf ships it), the
fal simulator (`vidhook simulator`, render cache on, its signing keys rotating), the `vidhook
api` and `vidhook worker` processes, and in this process a fault proxy in front of the
simulator that fal's webhooks to vidhook also pass through (tests/chaos/faults.py) and a
callback receiver verifying with `standardwebhooks` (tests/chaos/receiver.py).

Meanwhile: workers are SIGKILLed again and again (with submits and callbacks in flight), the
API is SIGKILLed and restarted, Redis is SIGKILLed and restarted from its AOF, fal answers
429 and 503 in bursts, the callback receiver goes down, the proxy drops 30 % of webhooks,
duplicates, delays and forges some, and makes some submits' answers late or 504s.

Prints the figures and exits 1 when an assertion fails. `python -m tests.chaos.run --help`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from redis import Redis

from service.dev.localredis import LocalRedis, free_port
from service.events import JobEvent, parse_history
from service.jobs import REVISIONS, JobStatus
from tests.chaos.faults import ChaosProxy, FaultRates
from tests.chaos.receiver import VerifyingReceiver
from tests.support.servers import ServerThread

ENDPOINTS = (
    "fal-ai/veo3.1/image-to-video",
    "fal-ai/veo3.1/fast/image-to-video",
    "fal-ai/veo3.1/first-last-frame-to-video",
    "fal-ai/veo3.1/fast/first-last-frame-to-video",
    "fal-ai/veo3.1/reference-to-video",
    "fal-ai/veo3.1/extend-video",
    "fal-ai/veo3.1/fast/extend-video",
    "fal-ai/veo2/image-to-video",
)
API_KEY = "vhchaos_" + "k" * 24
FAL_KEY = "chaos-fal-key"
PREFIX = "vidhook:"
# vidhook's timeouts, short so that a killed worker's tasks come back soon (kill_recovery_s).
FAL_SUBMIT_TIMEOUT_S = 3.0
FAL_STATUS_TIMEOUT_S = 3.0
LATE_SUBMIT_S = 4.5  # a late submit answer: past FAL_SUBMIT_TIMEOUT_S
RECONCILE_AFTER_S = 5.0
LATE_WEBHOOK_S = 12.0  # after the reconciler has acted
SUBMIT_GRACE_S = 30.0
SUBMIT_LOOKUP_INTERVAL_S = 2.0
# ARQ's log line for a task it ends as failed: "<t>s ! <task id>:<function> failed, <Error>".
ARQ_FAILED_RE = re.compile(r"! \S+?:(\w+) failed, (\w+)")


def job_input(endpoint: str, marker: str, media: str) -> dict[str, Any]:
    """A valid input for `endpoint` whose prompt names the job (every input is unique).

    Its files are URLs of the simulator's bundled samples (`media`): data URIs would make
    every listing page fal's Platform API returns (`expand=payloads`) megabytes long.
    """
    prompt = f"A lighthouse at dusk, waves rolling in [{marker}]"
    jpg, png = f"{media}/sample.jpg", f"{media}/sample.png"
    if "first-last" in endpoint:
        return {"prompt": prompt, "first_frame_url": jpg, "last_frame_url": png, "duration": "4s"}
    if "reference" in endpoint:
        return {"prompt": prompt, "image_urls": [jpg], "resolution": "720p"}
    if "extend" in endpoint:
        return {"prompt": prompt, "video_url": f"{media}/sample.mp4"}
    if "veo2" in endpoint:
        return {"prompt": prompt, "image_url": jpg, "duration": "5s"}
    return {"prompt": prompt, "image_url": jpg, "duration": "4s", "resolution": "720p"}


@dataclass
class Accepted:
    marker: str
    endpoint: str
    job_id: str
    accepted_at: float  # wall clock, when the 202 came
    tries: int


@dataclass
class Kill:
    what: str
    at: float  # monotonic
    wall: float
    submits_in_flight: int = 0
    callbacks_in_flight: int = 0


class Process:
    """A `vidhook …` child process with its own log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Chaos:
    """The run's moving parts and what it saw."""

    args: argparse.Namespace
    workdir: Path
    rng: random.Random
    redis: LocalRedis
    proxy: ChaosProxy
    receiver: VerifyingReceiver
    receiver_port: int
    api: Process
    api_url: str
    workers: list[Process]
    simulator: Process
    accepted: list[Accepted] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    redis_kills: list[float] = field(default_factory=list)  # wall clock
    client_retries: Counter[str] = field(default_factory=Counter)
    worker_exits: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    receiver_server: ServerThread | None = None
    receiver_down_s: float = 0.0
    media_url: str = ""
    api_down: bool = False


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def warm_simulator(sim_url: str, timeout_s: float = 120.0) -> float:
    """One request per endpoint straight to the simulator (not through the proxy, so never
    counted), so its render cache holds every plan the run's inputs make before the clock
    starts: the first render of each costs seconds of CPU, the rest a hard link."""
    started = time.monotonic()
    headers = {"Authorization": f"Key {FAL_KEY}"}
    with httpx.Client(base_url=sim_url, headers=headers, timeout=10.0) as http:
        pending = []
        for endpoint in ENDPOINTS:
            answer = http.post(
                f"/{endpoint}", json=job_input(endpoint, "warm-up", f"{sim_url}/samples")
            )
            answer.raise_for_status()
            pending.append(
                answer.json()["status_url"].replace(_origin(answer.json()["status_url"]), sim_url)
            )
        deadline = started + timeout_s
        while pending and time.monotonic() < deadline:
            pending = [url for url in pending if http.get(url).json().get("status") != "COMPLETED"]
            time.sleep(0.5)
        if pending:
            raise RuntimeError(f"simulator warm-up: {len(pending)} renders unfinished")
    return time.monotonic() - started


def _origin(url: str) -> str:
    return "/".join(url.split("/", 3)[:3])


# -- the client ---------------------------------------------------------------------------------


def submit_all(chaos: Chaos) -> None:
    """Create the jobs at a steady pace, each retried with its Idempotency-Key until accepted."""
    total = chaos.args.jobs
    pace_s = chaos.args.submit_seconds / total
    callback = f"http://127.0.0.1:{chaos.receiver_port}/hooks"
    with httpx.Client(
        base_url=chaos.api_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5.0
    ) as http:
        started = time.monotonic()
        for n in range(total):
            endpoint = ENDPOINTS[n % len(ENDPOINTS)]
            marker = f"chaos-{n:04d}-{uuid.uuid4().hex[:8]}"
            body = {
                "endpoint": endpoint,
                "input": job_input(endpoint, marker, chaos.media_url),
                "callback_url": f"{callback}/{marker}",
            }
            tries = 0
            while True:
                tries += 1
                try:
                    answer = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": marker})
                except httpx.HTTPError as exc:
                    chaos.client_retries[type(exc).__name__] += 1
                    time.sleep(0.2)
                    continue
                if answer.status_code in (200, 202):
                    job_id = answer.json()["id"]
                    with chaos.lock:
                        chaos.accepted.append(
                            Accepted(marker, endpoint, job_id, time.time(), tries)
                        )
                    break
                chaos.client_retries[f"HTTP {answer.status_code}"] += 1
                if answer.status_code < 500 and answer.status_code != 429:
                    raise RuntimeError(f"job refused: {answer.status_code} {answer.text[:300]}")
                time.sleep(0.2)
            time.sleep(max(0.0, started + (n + 1) * pace_s - time.monotonic()))


# -- the chaos ----------------------------------------------------------------------------------


def kill_workers(chaos: Chaos, *, both: bool) -> None:
    victims = chaos.workers if both else [chaos.rng.choice(chaos.workers)]
    kill = Kill(
        "workers" if both else "worker",
        time.monotonic(),
        time.time(),
        chaos.proxy.inflight_submits,
        chaos.receiver.in_flight(),
    )
    for worker in victims:
        worker.kill()
    chaos.kills.append(kill)
    for worker in victims:
        worker.start()


def wait_for_work_in_flight(chaos: Chaos, timeout_s: float, callbacks: bool) -> None:
    """Wait (a little) until a submit or a callback is in flight, so the kill cuts one off."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not chaos.stop.is_set():
        busy = chaos.receiver.in_flight() if callbacks else chaos.proxy.inflight_submits
        if busy:
            return
        time.sleep(0.02)


def keep_workers_alive(chaos: Chaos) -> None:
    """ARQ workers may exit on their own when Redis vanishes: restart them, counting it."""
    while not chaos.stop.wait(0.5):
        for worker in chaos.workers:
            if not worker.alive():
                chaos.worker_exits += 1
                worker.start()
        if not chaos.api.alive() and not chaos.api_down:
            chaos.api.start()


def chaos_schedule(chaos: Chaos) -> None:
    """The faults, on a timeline relative to the first job (seconds)."""
    args = chaos.args
    span = args.submit_seconds
    events: list[tuple[float, str]] = []
    t = 3.0
    n = 0
    while t < span + 10:
        events.append((t, "kill_workers" if n % 4 == 3 else f"kill_worker_{n % 2}"))
        t += args.kill_every
        n += 1
    # Apart from each other, so that each one's effect shows on its own.
    for at in (span * 0.25, span * 0.72):
        events.append((at, "kill_api"))
    events.append((span * 0.47, "kill_redis"))
    for n, at in enumerate((0.1, 0.35, 0.6, 0.85)):
        events.append((span * at, "burst_429" if n % 2 == 0 else "burst_503"))
    events.append((span * 0.5, "receiver_down"))
    events.sort()
    started = time.monotonic()
    for at, what in events:
        while time.monotonic() < started + at:
            if chaos.stop.wait(0.05):
                return
        log(f"chaos t={at:5.1f}s: {what}")
        if what.startswith("kill_worker"):
            # Alternate: cut a submit off, cut a callback off.
            wait_for_work_in_flight(chaos, 2.0, callbacks=what.endswith("1"))
            kill_workers(chaos, both=what == "kill_workers")
        elif what == "kill_api":
            kill = Kill("api", time.monotonic(), time.time(), chaos.proxy.inflight_submits)
            chaos.api_down = True
            chaos.api.kill()
            chaos.kills.append(kill)
            time.sleep(1.5)
            chaos.api.start()
            chaos.api_down = False
        elif what == "kill_redis":
            chaos.redis_kills.append(time.time())
            chaos.redis.kill()
            time.sleep(1.0)
            chaos.redis.start()
        elif what.startswith("burst_"):
            chaos.proxy.burst(int(what[-3:]), 2.5)
        elif what == "receiver_down":
            server = chaos.receiver_server
            assert server is not None
            down_at = time.monotonic()
            server.stop()
            time.sleep(args.receiver_down_s)
            chaos.receiver_server = ServerThread(
                chaos.receiver.app(), port=chaos.receiver_port
            ).start()
            chaos.receiver_down_s = time.monotonic() - down_at


# -- the verdict --------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wait_until_settled(chaos: Chaos, timeout_s: float) -> dict[str, dict[str, Any]]:
    """Poll every accepted job until all are terminal with their callbacks delivered."""
    deadline = time.monotonic() + timeout_s
    jobs: dict[str, dict[str, Any]] = {}
    with httpx.Client(
        base_url=chaos.api_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5.0
    ) as http:
        while time.monotonic() < deadline:
            pending = 0
            for accepted in chaos.accepted:
                known = jobs.get(accepted.job_id)
                if known and _settled(known):
                    continue
                try:
                    answer = http.get(f"/v1/jobs/{accepted.job_id}")
                except httpx.HTTPError:
                    pending += 1
                    continue
                if answer.status_code == 404:
                    jobs[accepted.job_id] = {"status": "lost"}
                    continue
                if answer.status_code != 200:
                    pending += 1
                    continue
                jobs[accepted.job_id] = answer.json()
                if not _settled(jobs[accepted.job_id]):
                    pending += 1
            if not pending:
                return jobs
            log(f"waiting: {pending} jobs not settled")
            time.sleep(2.0)
    return jobs


def _settled(job: dict[str, Any]) -> bool:
    if job.get("status") == "lost":
        return True
    terminal = job.get("status") in ("completed", "failed", "cancelled")
    return terminal and (job.get("callback") or {}).get("status") == "delivered"


def transitions(redis: Redis, job_id: str) -> list[tuple[str, str, str]]:
    return [
        (e.from_status.value if e.from_status else "", e.to_status.value, e.reason)
        for e in history(redis, job_id)
    ]


def history(redis: Redis, job_id: str) -> list[JobEvent]:
    """The job's state changes, from its hash's `history` field (service/events.py)."""
    raw = cast(list[Any], redis.hmget(f"{PREFIX}job:{job_id}", ["history", "tenant", "endpoint"]))
    if raw[0] is None:
        return []
    return parse_history(raw[0].decode(), job_id, raw[1].decode(), raw[2].decode())


def notes(redis: Redis, job_id: str) -> list[dict[str, Any]]:
    raw_notes = cast(list[bytes], redis.lrange(f"{PREFIX}job:{job_id}:events", 0, -1))
    return [json.loads(raw) for raw in raw_notes]


def verdict(chaos: Chaos, jobs: dict[str, dict[str, Any]], elapsed_s: float) -> int:
    failures: list[str] = []
    redis = Redis.from_url(chaos.redis.url)
    statuses = Counter(job.get("status") for job in jobs.values())
    failed_by = Counter(
        (job.get("error") or {}).get("type", "?")
        for job in jobs.values()
        if job.get("status") == "failed"
    )
    lost = [a for a in chaos.accepted if jobs.get(a.job_id, {}).get("status") == "lost"]
    lost_by_redis = [
        a for a in lost if any(0 <= kill - a.accepted_at <= 1.0 for kill in chaos.redis_kills)
    ]
    not_terminal = [
        a.job_id
        for a in chaos.accepted
        if jobs.get(a.job_id, {}).get("status") not in ("completed", "failed", "cancelled", "lost")
    ]
    # Terminal states never change, but for jobs.REVISIONS (vidhook's own failure yielding).
    revisions = 0
    changed: list[str] = []
    for accepted in chaos.accepted:
        seen_terminal: str | None = None
        for previous, to, reason in transitions(redis, accepted.job_id):
            if seen_terminal is not None:
                allowed = JobStatus(seen_terminal) in REVISIONS.get(JobStatus(to), frozenset())
                if allowed and previous == seen_terminal:
                    revisions += 1
                else:
                    changed.append(f"{accepted.job_id}: {previous}->{to} ({reason})")
            if JobStatus(to).is_terminal:
                seen_terminal = to
    # fal submissions per job: those the simulator accepted (it created a request). A second
    # one is justified only where the first one's answer was lost (late past the submit
    # timeout, a 504 after creation, a worker killed mid-POST) and the first request had not
    # finished within the grace (then neither its webhook nor the listing could tell vidhook).
    by_marker = chaos.proxy.fal_requests_by_marker()
    worker_kills_wall = [k.wall for k in chaos.kills if k.what.startswith("worker")]
    duplicates: list[str] = []
    unjustified: list[str] = []
    lost_answer_faults = {"late", "created_504"}
    for accepted in chaos.accepted:
        created = by_marker.get(accepted.marker, [])
        if len(created) <= 1:
            continue
        first = created[0]
        job_notes = notes(redis, accepted.job_id)
        causes = [n.get("cause", "?") for n in job_notes if n.get("event") == "resubmit"]
        killed = any(abs(at - first.at) <= 1.0 for at in worker_kills_wall)
        lost_why = (
            first.fault
            if first.fault in lost_answer_faults
            else ("worker killed mid-POST" if killed else None)
        )
        hook = chaos.proxy.webhooks.get(first.request_id or "")
        finished_after_s = (hook.first_seen - first.at) if hook else None
        in_time = finished_after_s is not None and finished_after_s < SUBMIT_GRACE_S - 2.0
        finished = f"{finished_after_s:.0f} s" if finished_after_s is not None else "not yet"
        cause = (
            f"{accepted.job_id}: answer lost ({lost_why or 'not lost'}), first request finished "
            f"after {finished} (grace {SUBMIT_GRACE_S:.0f} s); vidhook's note: "
            f"{'; '.join(causes) or 'none'}"
        )
        for _ in created[1:]:
            duplicates.append(cause)
        if not causes or lost_why is None or in_time:
            unjustified.append(f"{len(created)} fal requests, {cause}")
    late_or_504 = sum(
        1 for records in by_marker.values() if any(r.fault in lost_answer_faults for r in records)
    )
    late_or_504_duplicated = sum(
        1
        for records in by_marker.values()
        if len(records) > 1 and records[0].fault in lost_answer_faults
    )
    # Callbacks: at least once per job, one stable webhook-id per event.
    deliveries = chaos.receiver.snapshot()
    ids_by_event: dict[tuple[str, str], set[str]] = defaultdict(set)
    for delivery in deliveries:
        ids_by_event[(delivery.job_id, delivery.event_type)].add(delivery.webhook_id)
    unstable = [
        f"{job}/{event}: {ids}" for (job, event), ids in ids_by_event.items() if len(ids) > 1
    ]
    missing_callback = []
    for accepted in chaos.accepted:
        job = jobs.get(accepted.job_id, {})
        if job.get("status") in ("completed", "failed", "cancelled"):
            event = f"job.{job['status']}"
            if not ids_by_event.get((accepted.job_id, event)):
                missing_callback.append(f"{accepted.job_id} ({event})")
    # Longest delay of a callback cut off by a kill: kill -> the same webhook-id again.
    cut_delays: list[float] = []
    worker_kills = [k.at for k in chaos.kills if k.what.startswith("worker")]
    for kill_at in worker_kills:
        for delivery in deliveries:
            if delivery.arrived <= kill_at and (delivery.answered or 1e18) > kill_at:
                again = [
                    d.arrived
                    for d in deliveries
                    if d.webhook_id == delivery.webhook_id and d.arrived > kill_at
                ]
                if again:
                    cut_delays.append(min(again) - kill_at)
    forged = [r for r in chaos.proxy.webhooks.values() if r.forged_answer is not None]
    # 0: vidhook was down (the API killed) and refused nothing; only a 2xx would be a failure.
    forged_accepted = [r for r in forged if 200 <= (r.forged_answer or 0) < 300]
    forged_effect = [
        job_id for job_id, job in jobs.items() if "forged" in json.dumps(job.get("error") or {})
    ]
    # Creation to the first terminal state, from the job's own history.
    terminal_s = []
    for accepted in chaos.accepted:
        events = history(redis, accepted.job_id)
        terminal_ms = [e.at_ms for e in events if e.to_status.is_terminal]
        if events and terminal_ms:
            terminal_s.append((terminal_ms[0] - events[0].at_ms) / 1000)

    sim_log = chaos.simulator.log_path.read_text(errors="replace")
    jwks_fetches = sim_log.count("/.well-known/jwks.json")
    genuine_refused = sum(
        1 for r in chaos.proxy.webhooks.values() if any(a in (401, 403) for a in r.forwarded)
    )
    worker_kill_list = [k for k in chaos.kills if k.what.startswith("worker")]
    # Tasks ARQ ended as failed (it never runs those again): an exception that is no Retry.
    dropped: Counter[str] = Counter()
    for worker in chaos.workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            found = ARQ_FAILED_RE.search(line)
            if found:
                dropped[f"{found[1]}: {found[2]}"] += 1
    median_s = sorted(terminal_s)[len(terminal_s) // 2] if terminal_s else 0.0
    rows: list[tuple[str, object]] = [
        ("jobs accepted (202)", f"{len(chaos.accepted)} over {len(ENDPOINTS)} endpoints"),
        ("completed", statuses.get("completed", 0)),
        ("failed (by reason)", f"{statuses.get('failed', 0)} {dict(failed_by)}"),
        ("not terminal", len(not_terminal)),
        ("lost (404 after a 202)", f"{len(lost)} (in the second before a Redis kill: "
         f"{len(lost_by_redis)})"),
        ("terminal state changed", len(changed)),
        ("failed -> completed revisions", f"{revisions} (jobs.REVISIONS)"),
        ("duplicate fal submissions", len(duplicates)),
        *(("  -", cause) for cause in duplicates),
        ("late or 504-after-create submits", f"{late_or_504}, paid twice: "
         f"{late_or_504_duplicated}"),
        ("callbacks delivered", f"{len(deliveries)} deliveries, "
         f"{len({d.webhook_id for d in deliveries})} webhook-ids, "
         f"unverified {chaos.receiver.unverified}"),
        ("longest time to terminal", f"{max(terminal_s, default=0):.1f} s "
         f"(median {median_s:.1f} s)"),
        ("longest callback delay after kill", f"{max(cut_delays, default=0):.1f} s "
         f"({len(cut_delays)} callbacks cut off)"),
        ("forged webhooks", f"{len(forged)}, answered "
         f"{dict(Counter(r.forged_answer for r in forged))} (0: API down)"),
        ("kills", f"{dict(Counter(k.what for k in chaos.kills))}, Redis {len(chaos.redis_kills)}"),
        ("in flight at worker kills", f"{sum(k.submits_in_flight for k in worker_kill_list)} "
         f"submits, {sum(k.callbacks_in_flight for k in worker_kill_list)} callbacks"),
        ("workers exited on their own", f"{chaos.worker_exits} (restarted)"),
        ("tasks ARQ ended as failed", dict(dropped) or 0),
        ("faults injected", dict(sorted(chaos.proxy.faults.items()))),
        ("callback receiver down", f"{chaos.receiver_down_s:.1f} s"),
        ("client retries", dict(chaos.client_retries)),
        ("fal key rotations", f"every {chaos.args.key_rotation_s:.0f} s; JWKS fetched "
         f"{jwks_fetches} times (one: the start-up check)"),
        ("genuine webhooks refused once", f"{genuine_refused} (fal redelivered them)"),
    ]  # fmt: skip
    print()
    print(f"chaos run: {elapsed_s:.0f} s, seed {chaos.args.seed}")
    for label, value in rows:
        print(f"  {label:<36}{value}")
    if len(chaos.accepted) < chaos.args.jobs:
        failures.append(f"only {len(chaos.accepted)} of {chaos.args.jobs} jobs accepted")
    if not_terminal:
        failures.append(f"{len(not_terminal)} jobs not terminal: {not_terminal[:5]}")
    if lost:
        failures.append(f"{len(lost)} accepted jobs lost: {[a.job_id for a in lost[:5]]}")
    if changed:
        failures.append(f"terminal states changed: {changed[:5]}")
    if unjustified:
        failures.append(f"duplicate fal submissions without cause: {unjustified[:5]}")
    if unstable:
        failures.append(f"callbacks with more than one webhook-id: {unstable[:5]}")
    if missing_callback:
        failures.append(f"jobs without their callback: {missing_callback[:5]}")
    if chaos.receiver.unverified:
        failures.append(
            f"{chaos.receiver.unverified} callbacks failed standardwebhooks verification"
        )
    if forged_accepted or forged_effect:
        failures.append(
            f"forged webhooks accepted: {len(forged_accepted)}, took effect: {forged_effect[:5]}"
        )
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else f"{len(failures)} assertion(s) failed")
    redis.close()
    return 0 if not failures else 1


# -- wiring -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--submit-seconds", type=float, default=40.0)
    parser.add_argument("--kill-every", type=float, default=6.0)
    parser.add_argument("--receiver-down-s", type=float, default=8.0)
    parser.add_argument("--key-rotation-s", type=float, default=15.0)
    parser.add_argument("--settle-timeout-s", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="vidhook-chaos-"))
    rng = random.Random(args.seed)
    started = time.monotonic()
    redis = LocalRedis(workdir / "redis", appendfsync="everysec")
    redis.start()
    sim_port, api_port, receiver_port = free_port(), free_port(), free_port()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver = VerifyingReceiver(secret, seed=args.seed)
    receiver_server = ServerThread(receiver.app(), port=receiver_port).start()
    api_url = f"http://127.0.0.1:{api_port}"
    proxy = ChaosProxy(
        f"http://127.0.0.1:{sim_port}", api_url, FaultRates(), seed=args.seed,
        late_submit_s=LATE_SUBMIT_S, late_webhook_s=LATE_WEBHOOK_S,
    )  # fmt: skip
    proxy_server = ServerThread(proxy.app()).start()
    proxy.url = proxy_server.url
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMULATOR_", "FAL_"))}
    sim_env = {
        **base_env,
        "SIMULATOR_PORT": str(sim_port),
        # The URLs it hands out (status, result, files) go through the proxy.
        "SIMULATOR_PUBLIC_URL": proxy.url,
        "SIMULATOR_DELAY_S": "0.5",
        "SIMULATOR_CONCURRENCY": "32",
        "SIMULATOR_RENDER_CACHE": "true",
        "SIMULATOR_FAL_KEY": FAL_KEY,
        "SIMULATOR_WEBHOOK_TIME_SCALE": "0.05",
        "SIMULATOR_SIGNING_KEYS": ",".join(secrets.token_hex(32) for _ in range(12)),
        "SIMULATOR_KEY_ROTATION_S": str(args.key_rotation_s),
        "SIMULATOR_DATA_DIR": str(workdir / "simulator"),
        "LOG_LEVEL": "warning",
    }
    env = {
        **base_env,
        "REDIS_URL": redis.url,
        "REDIS_KEY_PREFIX": PREFIX,
        "HOST": "127.0.0.1",
        "PORT": str(api_port),
        "PUBLIC_BASE_URL": api_url,
        "API_KEYS": f"{API_KEY}:chaos",
        "FAL_KEY": FAL_KEY,
        "FAL_QUEUE_BASE_URL": proxy.url,
        "FAL_PLATFORM_BASE_URL": f"{proxy.url}/v1",
        "FAL_JWKS_URL": f"http://127.0.0.1:{sim_port}/.well-known/jwks.json",
        "CALLBACK_SIGNING_SECRET": secret,
        "CALLBACK_ALLOW_PRIVATE_TARGETS": "true",
        "CALLBACK_TIMEOUT_S": "3",
        # The default schedule's 5-minute third step, scaled down like every other timing here:
        # the receiver's outage outlasts the first two attempts.
        "CALLBACK_RETRY_SCHEDULE_S": "0,1,2,4,8,15,30",
        "DEADLINE_SWEEP_INTERVAL_S": "5",
        "FAL_SUBMIT_TIMEOUT_S": str(FAL_SUBMIT_TIMEOUT_S),
        "FAL_STATUS_TIMEOUT_S": str(FAL_STATUS_TIMEOUT_S),
        "MIRROR_TIMEOUT_S": "5",
        "SUBMIT_LOOKUP_INTERVAL_S": str(SUBMIT_LOOKUP_INTERVAL_S),
        "AMBIGUOUS_SUBMIT_GRACE_S": str(SUBMIT_GRACE_S),
        "RECONCILE_AFTER_S": str(RECONCILE_AFTER_S),
        "RETRY_BASE_DELAY_S": "0.2",
        "RETRY_MAX_DELAY_S": "2",
        "MEDIA_LOCAL_DIR": str(workdir / "media"),
        "MEDIA_ALLOW_PRIVATE_SOURCES": "true",
        "LOG_LEVEL": "warning",
    }
    logs = workdir / "logs"
    logs.mkdir()
    simulator = Process("simulator", ["simulator"], sim_env, logs)
    api = Process("api", ["api"], env, logs)
    workers = [Process(f"worker-{i}", ["worker"], env, logs) for i in range(2)]
    chaos = Chaos(
        args, workdir, rng, redis, proxy, receiver, receiver_port, api, api_url, workers,
        simulator, receiver_server=receiver_server, media_url=f"http://127.0.0.1:{sim_port}/samples",
    )  # fmt: skip
    code = 1
    try:
        simulator.start()
        wait_http(f"http://127.0.0.1:{sim_port}/.well-known/jwks.json")
        warm_s = warm_simulator(f"http://127.0.0.1:{sim_port}")
        log(f"chaos: simulator render cache warmed in {warm_s:.0f} s")
        api.start()
        for worker in workers:
            worker.start()
        wait_http(f"{api_url}/healthz")
        log(f"chaos: {args.jobs} jobs over {args.submit_seconds:.0f} s; work dir {workdir}")
        supervisor = threading.Thread(target=keep_workers_alive, args=(chaos,), daemon=True)
        supervisor.start()
        faults = threading.Thread(target=chaos_schedule, args=(chaos,), daemon=True)
        faults.start()
        submit_all(chaos)
        faults.join()
        jobs = wait_until_settled(chaos, args.settle_timeout_s)
        chaos.stop.set()
        code = verdict(chaos, jobs, time.monotonic() - started)
    finally:
        chaos.stop.set()
        for process in (*workers, api, simulator):
            process.stop()
        if chaos.receiver_server is not None:
            chaos.receiver_server.stop()
        proxy_server.stop()
        redis.stop()
        if code == 0 and not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {logs}")
    return code


if __name__ == "__main__":
    sys.exit(main())
