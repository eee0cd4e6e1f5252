"""Every Redis key vidhook uses, built in one place under one prefix.

ARQ's own keys (`arq:job:…`, `arq:result:…`) keep ARQ's names: the worker reads them.
"""

from __future__ import annotations

import re

from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix


class RedisKeys:
    def __init__(self, prefix: str, queue_name: str) -> None:
        self.prefix = prefix
        self.queue = queue_name

    def singleton_task(self, name: str) -> str:
        """The ARQ id of a task this deployment runs one of at a time (keep_inputs, the fal
        probe). ARQ's job keys are global, not under our prefix: two deployments sharing a
        Redis would otherwise each find the other's task queued or running and skip theirs."""
        return f"{self.prefix}{name}"

    def job(self, job_id: str) -> str:
        """Hash holding one job's record."""
        return f"{self.prefix}job:{job_id}"

    def job_events(self, job_id: str) -> str:
        """Capped list of what happened to a job that did not change it (duplicates, resubmits).

        Not the job's state changes: those are in the job hash's `history` field and `events`.
        """
        return f"{self.prefix}job:{job_id}:events"

    def job_transitions(self, job_id: str) -> str:
        """Stream of one job's state changes, with the same entry ids as in `events`, as
        versions before the job hash's `history` field kept them (service/events.py).

        Read, and appended to, for jobs recorded then only; it expires with the job.
        """
        return f"{self.prefix}job:{job_id}:transitions"

    def job_changed(self, job_id: str) -> str:
        """Pub/sub channel announcing each state change of a job (the message: its event id)."""
        return f"{self.prefix}job:{job_id}:changed"

    @property
    def job_changed_pattern(self) -> str:
        """PSUBSCRIBE pattern matching every job's `job_changed` channel (and nothing else)."""
        # The prefix is literal: escape the glob characters Redis would otherwise interpret.
        literal = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix)
        return f"{literal}job:*:changed"

    def job_id_of_changed(self, channel: str) -> str | None:
        """The job id a `job_changed` channel names, None for any other channel."""
        head, tail = f"{self.prefix}job:", ":changed"
        if channel.startswith(head) and channel.endswith(tail) and len(channel) > len(head + tail):
            return channel[len(head) : -len(tail)]
        return None

    @property
    def events(self) -> str:
        """The capped stream of every job's state changes (see service/events.py)."""
        return f"{self.prefix}events"

    @property
    def active(self) -> str:
        """Sorted set of every active job's id, by its deadline (ms)."""
        return f"{self.prefix}active"

    @property
    def sweep_cursor(self) -> str:
        """Where the deadline sweep's walk of the active index goes on from (a deadline, ms)."""
        return f"{self.prefix}sweep:cursor"

    def tenant_jobs(self, tenant: str) -> str:
        """Sorted set of a tenant's job ids by creation time (ms)."""
        return f"{self.prefix}jobs:{tenant}"

    @property
    def all_jobs(self) -> str:
        """Sorted set of every tenant's job ids by creation time (ms), for admin listings."""
        return f"{self.prefix}jobs"

    @property
    def at_fal(self) -> str:
        """Sorted set of jobs submitted to fal and not yet finished, by submit time (ms).

        transition.lua adds to it (naming it from the prefix) on every move to submitted.
        """
        return f"{self.prefix}atfal"

    # Callback deliveries (service/deliveries.py): one per job and event type.
    def delivery(self, job_id: str, event: str) -> str:
        """Hash of one callback delivery: its body, where it stands in the retry schedule."""
        return f"{self.prefix}delivery:{job_id}:{event}"

    def delivery_attempts(self, job_id: str, event: str) -> str:
        """Capped list of a delivery's attempts (JSON each), oldest first: written by versions
        before the attempts went to the delivery's own `log`; still read and kept with it."""
        return f"{self.prefix}delivery:{job_id}:{event}:attempts"

    @property
    def inputs_to_keep(self) -> str:
        """Sorted set of the ids of jobs whose input is to move to the media store, by when."""
        return f"{self.prefix}inputs:to_keep"

    @property
    def input_keep_failures(self) -> str:
        """Hash of job id -> failed copies of its input so far (only jobs whose copy failed)."""
        return f"{self.prefix}inputs:keep_failures"

    @property
    def deliveries_due(self) -> str:
        """Sorted set of `{job_id} {event}` of every scheduled delivery, by its next try (ms)."""
        return f"{self.prefix}deliveries:due"

    def dead_letters(self, tenant: str) -> str:
        """Sorted set of a tenant's dead-lettered deliveries (`{job_id} {event}`), by time (ms)."""
        return f"{self.prefix}deliveries:dead:{tenant}"

    @property
    def dispatch_paused(self) -> str:
        """Present while dispatch to fal is paused (fal refused our key): JSON, the reason."""
        return f"{self.prefix}dispatch:paused"

    # The budget's keys; service/lua/budget.lua builds the same names from the prefix (it
    # cannot be handed keys of tenants and jobs it only finds while running).
    @property
    def inflight(self) -> str:
        """Sorted set of fal in-flight leases: job id -> lease expiry ms."""
        return f"{self.prefix}inflight"

    def inflight_of(self, tenant: str) -> str:
        """One tenant's leases (its max_in_flight)."""
        return f"{self.prefix}inflight:{tenant}"

    def ready_of(self, tenant: str) -> str:
        """List of a tenant's queued jobs waiting for a slot, first in line first."""
        return f"{self.prefix}ready:{tenant}"

    @property
    def ready_ring(self) -> str:
        """List of the tenants with jobs waiting, in turn order (deficit round robin)."""
        return f"{self.prefix}ready"

    @property
    def budget_shrunk(self) -> str:
        """A lower global budget while fal asked us to slow down (429); expires by itself."""
        return f"{self.prefix}budget:shrunk"

    def spend(self, tenant: str, period: str) -> str:
        """A tenant's estimated spend (micro-USD) in a UTC day (YYYY-MM-DD) or month (YYYY-MM)."""
        return f"{self.prefix}spend:{tenant}:{period}"

    def api_key(self, key_digest_hex: str) -> str:
        """Hash of an API key created with `vidhook keys create`, by the key's SHA-256."""
        return f"{self.prefix}apikey:{key_digest_hex}"

    @property
    def api_key_index(self) -> str:
        """Set of the digests of every API key kept in Redis (for `vidhook keys list`)."""
        return f"{self.prefix}apikeys"

    def idempotency(self, tenant: str, key: str) -> str:
        """A client's Idempotency-Key, pointing at the job it created."""
        return f"{self.prefix}idem:{tenant}:{key}"

    @staticmethod
    def arq_job(arq_job_id: str) -> str:
        return job_key_prefix + arq_job_id

    @staticmethod
    def arq_result(arq_job_id: str) -> str:
        return result_key_prefix + arq_job_id

    @staticmethod
    def arq_in_progress(arq_job_id: str) -> str:
        return in_progress_key_prefix + arq_job_id

    # The overview's counters, folded from the event stream by service/stats.py. The fold's
    # Lua script builds the per-tenant and per-minute names from these prefixes.
    @property
    def stats_cursor(self) -> str:
        """Hash: the id of the last event folded into the counters, and whether any were lost."""
        return f"{self.prefix}stats:cursor"

    @property
    def stats_tenants(self) -> str:
        """Set of every tenant the fold has seen."""
        return f"{self.prefix}stats:tenants"

    @property
    def stats_counts_prefix(self) -> str:
        """`{this}{tenant}`: hash of the tenant's active jobs per status."""
        return f"{self.prefix}stats:counts:"

    @property
    def stats_queued_prefix(self) -> str:
        """`{this}{tenant}`: sorted set of the tenant's queued job ids by queued time (ms)."""
        return f"{self.prefix}stats:queued:"

    @property
    def stats_queued_all(self) -> str:
        """Sorted set of every tenant's queued job ids by queued time (ms)."""
        return f"{self.prefix}stats:queued-all"

    @property
    def stats_minute_prefix(self) -> str:
        """`{this}{tenant}:{minute}`: hash of the tenant's terminal moves in that epoch minute."""
        return f"{self.prefix}stats:minute:"

    @property
    def stats_minute_all_prefix(self) -> str:
        """`{this}{minute}`: hash of every tenant's terminal moves in that epoch minute."""
        return f"{self.prefix}stats:minute-all:"
