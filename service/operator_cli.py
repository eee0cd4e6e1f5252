"""`vidhook jobs …`, `vidhook callbacks …`, `vidhook keys …`: operators' commands on Redis.

They need only REDIS_URL (and REDIS_KEY_PREFIX / ARQ_QUEUE_NAME / JOB_RETENTION_S when
changed), read like the services read them. Tables for people by default, `--json` for
scripts. `jobs list` pages through the same index as `GET /v1/jobs`, across every tenant
unless `--tenant` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis

from service import operator
from service.apikeys import ApiKeyStore, UnknownKey
from service.cancellation import CancelOutcome, cancel_job
from service.context import ApiContext
from service.domain_errors import DomainError
from service.fal import FalQueueClient
from service.fal_webhooks import FalWebhookVerifier, JwksCache
from service.job_index import BadCursor, JobFilter, JobIndex
from service.jobs import Job, JobStatus, iso_from_ms
from service.keys import RedisKeys
from service.media import open_media_store
from service.settings import Settings, describe_validation_error
from service.store import JobStore
from service.streams import TenantFeeds
from service.waiters import JobWaiters


class OperatorSettings(BaseSettings):
    """The part of Settings that operator commands need."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    redis_url: str
    redis_key_prefix: str = "vh:"
    arq_queue_name: str = "vidhook:queue"
    job_retention_s: int = 7 * 86_400


def add_commands(commands: Any) -> None:
    """Register the operator command groups on the top-level subparsers."""
    jobs = commands.add_parser("jobs", help="list, show, retry or cancel jobs").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    listing = jobs.add_parser("list", help="jobs newest first (every tenant unless --tenant)")
    listing.add_argument("--tenant")
    listing.add_argument("--status", choices=[status.value for status in JobStatus])
    listing.add_argument("--endpoint")
    listing.add_argument("--created-after", type=int, metavar="EPOCH_MS")
    listing.add_argument("--created-before", type=int, metavar="EPOCH_MS")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="next_cursor from an earlier page")
    _json_flag(listing)
    show = jobs.add_parser("show", help="one job, with its event log")
    show.add_argument("job_id")
    _json_flag(show)
    for name, text in (
        ("retry", "run an active job's next step again (dispatch, or a fal status check)"),
        ("cancel", "cancel a job (at fal too, if it is there; needs the service's settings)"),
    ):
        action = jobs.add_parser(name, help=text)
        action.add_argument("job_id")
        _json_flag(action)
    callbacks = commands.add_parser("callbacks", help="redeliver client callbacks")
    redeliver = callbacks.add_subparsers(dest="action", required=True, metavar="ACTION")
    again = redeliver.add_parser("redeliver", help="send a finished job's callback again")
    again.add_argument("job_id")
    _json_flag(again)
    keys = commands.add_parser("keys", help="API keys kept in Redis").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = keys.add_parser("create", help="a new key for a tenant, printed once")
    create.add_argument("tenant")
    create.add_argument("--label", default="")
    _json_flag(create)
    revoke = keys.add_parser("revoke", help="revoke a key by its id (from `keys list`)")
    revoke.add_argument("key_id")
    _json_flag(revoke)
    _json_flag(keys.add_parser("list", help="every key kept in Redis (ids, never keys)"))


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(args: argparse.Namespace, settings: OperatorSettings) -> int:
    """Run one operator command; returns the process exit status."""
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: OperatorSettings) -> int:
    redis = Redis.from_url(settings.redis_url)
    keys = RedisKeys(settings.redis_key_prefix, settings.arq_queue_name)
    store = JobStore(redis, keys, job_retention_s=settings.job_retention_s)
    try:
        handler = _HANDLERS[(args.command, args.action)]
        return await handler(args, store)
    finally:
        await redis.aclose()


async def _jobs_list(args: argparse.Namespace, store: JobStore) -> int:
    where = JobFilter(
        tenant=args.tenant,
        status=JobStatus(args.status) if args.status else None,
        endpoint=args.endpoint,
        created_after_ms=args.created_after,
        created_before_ms=args.created_before,
    )
    try:
        page = await JobIndex(store.redis, store.keys).page(
            where, limit=args.limit, cursor=args.cursor
        )
    except BadCursor as exc:
        return _fail(str(exc))
    if args.json:
        data = [{**job.to_resource(), "tenant": job.tenant} for job in page.jobs]
        _print_json({"object": "list", "data": data, "next_cursor": page.next_cursor})
        return 0
    _print_table(
        ["ID", "TENANT", "STATUS", "ENDPOINT", "CREATED", "FAL REQUEST"],
        [_job_row(job) for job in page.jobs],
    )
    if page.next_cursor:
        print(f"\nmore: --cursor {page.next_cursor}")
    return 0


def _job_row(job: Job) -> list[str]:
    return [
        job.id,
        job.tenant,
        job.status.value,
        job.endpoint,
        iso_from_ms(job.created_at_ms) or "",
        job.fal_request_id or "-",
    ]


async def _jobs_show(args: argparse.Namespace, store: JobStore) -> int:
    job = await store.get(args.job_id)
    if job is None:
        return _fail(f"no job {args.job_id}")
    events = await store.events(args.job_id)
    resource = {**job.to_resource(), "tenant": job.tenant}
    if args.json:
        _print_json({**resource, "events": events})
        return 0
    for name, value in resource.items():
        if value not in (None, {}, []):
            text = value if isinstance(value, str) else json.dumps(value)
            print(f"{name:<20} {text}")
    for event in events:
        print(f"{'event':<20} {json.dumps(event)}")
    return 0


def _action(
    do: Callable[[JobStore, str], Awaitable[operator.Done]],
) -> Callable[[argparse.Namespace, JobStore], Awaitable[int]]:
    async def handler(args: argparse.Namespace, store: JobStore) -> int:
        done = await do(store, args.job_id)
        if args.json:
            _print_json({"ok": done.ok, "message": done.message})
        else:
            print(done.message, file=sys.stdout if done.ok else sys.stderr)
        return 0 if done.ok else 1

    return handler


async def _jobs_cancel(args: argparse.Namespace, store: JobStore) -> int:
    """The API's cancel (service.cancellation): at once while queued, at fal once there.

    Cancelling at fal takes the service's own settings (FAL_KEY …): run it where the API runs.
    """
    try:
        settings = Settings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        return _fail("jobs cancel needs the service's settings:\n" + describe_validation_error(exc))
    job = await store.get(args.job_id)
    if job is None:
        return _fail(f"no job {args.job_id}")
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False) as http,
        open_media_store(settings) as media,
    ):
        ctx = ApiContext(
            settings=settings,
            redis=store.redis,
            http=http,
            store=store,
            verifier=FalWebhookVerifier(JwksCache(http, str(settings.fal_jwks_url))),
            prices=settings.price_table(),
            media=media,
            # Cancelling waits for nothing: a hub never started and no feed.
            waiters=JobWaiters(store.redis, store.keys),
            feeds=TenantFeeds(store.redis, store.keys, max_open=0),
            fal=FalQueueClient(
                http,
                queue_base_url=str(settings.fal_queue_base_url),
                api_key=settings.fal_key.get_secret_value(),
                submit_timeout_s=settings.fal_submit_timeout_s,
            ),
        )
        try:
            cancelled = await cancel_job(ctx, job.tenant, args.job_id)
        except DomainError as exc:
            return _fail(f"{args.job_id}: {exc}")
    message = (
        f"{args.job_id} cancelled"
        if cancelled.outcome is CancelOutcome.CANCELLED
        else f"{args.job_id}: fal was asked to cancel; the job ends when fal says how it ended"
    )
    if args.json:
        _print_json({"ok": True, "outcome": cancelled.outcome.value, "message": message})
    else:
        print(message)
    return 0


async def _keys_create(args: argparse.Namespace, store: JobStore) -> int:
    try:
        api_key, stored = await ApiKeyStore(store.redis, store.keys).create(
            args.tenant, label=args.label
        )
    except ValueError as exc:
        return _fail(str(exc))
    if args.json:
        _print_json({"key": api_key, "id": stored.key_id, "tenant": stored.tenant})
    else:
        print(f"{api_key}\n(id {stored.key_id}, tenant {stored.tenant}; shown only this once)")
    return 0


async def _keys_revoke(args: argparse.Namespace, store: JobStore) -> int:
    try:
        stored = await ApiKeyStore(store.redis, store.keys).revoke(args.key_id)
    except UnknownKey as exc:
        return _fail(str(exc))
    if args.json:
        _print_json({"revoked": stored.key_id, "tenant": stored.tenant})
    else:
        print(f"revoked {stored.key_id} (tenant {stored.tenant})")
    return 0


async def _keys_list(args: argparse.Namespace, store: JobStore) -> int:
    stored = await ApiKeyStore(store.redis, store.keys).list()
    if args.json:
        _print_json(
            [
                {
                    "id": k.key_id,
                    "tenant": k.tenant,
                    "label": k.label,
                    "created_at": iso_from_ms(k.created_at_ms),
                }
                for k in stored
            ]
        )
        return 0
    _print_table(
        ["ID", "TENANT", "LABEL", "CREATED"],
        [[k.key_id, k.tenant, k.label, iso_from_ms(k.created_at_ms) or ""] for k in stored],
    )
    return 0


_HANDLERS: dict[tuple[str, str], Callable[[argparse.Namespace, JobStore], Awaitable[int]]] = {
    ("jobs", "list"): _jobs_list,
    ("jobs", "show"): _jobs_show,
    ("jobs", "retry"): _action(operator.retry),
    ("jobs", "cancel"): _jobs_cancel,
    ("callbacks", "redeliver"): _action(operator.redeliver_callback),
    ("keys", "create"): _keys_create,
    ("keys", "revoke"): _keys_revoke,
    ("keys", "list"): _keys_list,
}


def _fail(message: str) -> int:
    print(f"vidhook: {message}", file=sys.stderr)
    return 1


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if not rows:
        print("(none)")
