"""One typed settings object, read once from the environment and validated at start-up."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.budgets import BudgetConfig, parse_tenant_limits
from service.callbacks import decode_signing_secret
from service.catalog import completion_s
from service.fal_webhooks import WebhookTokens
from service.prices import PriceTable

DEFAULT_RETRY_SCHEDULE = "0,5,300,1800,7200,18000,36000,50400,72000,86400"
# A CSP host source: scheme://host[:port or :*], no path, quote, semicolon or space.
_CSP_SOURCE = re.compile(r"https?://[A-Za-z0-9.*-]+(:(\d{1,5}|\*))?")


class Settings(BaseSettings):
    """Everything vidhook's API and workers are configured by.

    Each field is read from the environment variable of the same name in upper case.
    Construct with `Settings()` (environment) or keyword arguments (tests).
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with `update` applied, and none of this object's derived values.

        pydantic copies the instance's `__dict__`, where cached properties keep what they
        computed: a copy with another schedule or other secrets would carry the old ones.
        """
        copied = super().model_copy(update=update, deep=deep)
        for name, member in vars(type(self)).items():
            if isinstance(member, cached_property):
                copied.__dict__.pop(name, None)
        return copied

    redis_url: str = Field(
        description="Redis holding jobs and the ARQ queue, e.g. redis://host:6379/0"
    )
    redis_key_prefix: str = "vh:"
    # The API's pool: a burst beyond it waits for a free connection, up to the timeout (then 503).
    redis_max_connections: int = Field(default=200, ge=1)
    redis_pool_timeout_s: float = Field(default=5.0, gt=0)
    arq_queue_name: str = "vidhook:queue"

    fal_key: SecretStr = Field(description="fal API key, sent as `Authorization: Key <FAL_KEY>`")
    fal_queue_base_url: AnyHttpUrl = AnyHttpUrl("https://queue.fal.run")
    # fal's Platform API: its request listing tells whether an unclear submit created a request.
    fal_platform_base_url: AnyHttpUrl = AnyHttpUrl("https://api.fal.ai/v1")
    fal_jwks_url: AnyHttpUrl = AnyHttpUrl("https://rest.fal.ai/.well-known/jwks.json")
    fal_submit_timeout_s: float = Field(default=15.0, gt=0)
    # Each status or result GET (the reconciler and payload_error fetches).
    fal_status_timeout_s: float = Field(default=5.0, gt=0)
    fal_jwks_cache_s: float = Field(
        default=3600.0, le=86_400, description="fal: never cache > 24 h"
    )
    fal_webhook_tolerance_s: int = 300
    fal_user_id: str | None = Field(
        default=None,
        description="Your fal user id: when set, webhooks fal signed for other users are refused",
    )

    public_base_url: AnyHttpUrl | None = Field(
        default=None,
        description="How fal reaches this service's webhook receiver; unset: poll mode (no "
        "webhooks, each request is followed by polling fal's status URL)",
    )

    api_keys: Annotated[str, NoDecode] = Field(
        description="Comma-separated `key:tenant` pairs; clients send `Authorization: Bearer <key>`"
    )
    callback_signing_secret: SecretStr = Field(description="Standard Webhooks secret, `whsec_…`")
    webhook_token_secret: SecretStr | None = Field(
        default=None,
        description="Key for the per-job tokens in fal webhook URLs; derived from "
        "CALLBACK_SIGNING_SECRET when unset. Changing it invalidates jobs in flight.",
    )
    callback_allow_private_targets: bool = False
    callback_timeout_s: float = Field(default=10.0, gt=0)
    # Seconds before each attempt of a delivery, the first after the event itself.
    callback_retry_schedule_s: Annotated[str, NoDecode] = DEFAULT_RETRY_SCHEDULE
    # Before the schedule existed: the number of attempts. Still honoured when set (the
    # schedule is cut to, or its last step repeated up to, that many attempts).
    callback_max_tries: int | None = Field(default=None, ge=1)
    # JSON {"tenant": "whsec_…"} or {"tenant": ["whsec_new", "whsec_old"]} (see settings_doc).
    tenant_callback_secrets: SecretStr | None = None

    allowed_endpoints: Annotated[str, NoDecode] = Field(
        default="",
        description="Comma-separated globs of other fal endpoints to pass through unvalidated",
    )
    price_overrides: str | None = Field(
        default=None, description="JSON overriding the built-in price table (see README)"
    )
    job_retention_s: int = 7 * 86_400
    # The job event stream keeps about this many of the newest state changes, all jobs
    # together (a job makes ~5); each job's own history lives as long as the job.
    event_stream_maxlen: int = Field(default=100_000, ge=1)
    # Long-poll (`?wait=N`) and `Prefer: wait=N` wait at most this long, whatever N (the API
    # allows 60): lower it behind a proxy that closes idle requests sooner.
    wait_max_s: float = Field(default=60.0, ge=0, le=60)
    # SSE streams send a comment line this often, so proxies do not close a quiet stream.
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    # An SSE stream closes after this long; the client resumes with Last-Event-ID.
    sse_max_s: float = Field(default=3600.0, gt=0)
    # Each open GET /v1/events stream holds one blocking Redis read (a connection of its own):
    # at most this many per API process; more are refused with 503 and Retry-After.
    event_streams_max: int = Field(default=100, ge=1)

    # Media: uploads (POST /v1/files) and copies of fal's outputs. With MEDIA_S3_BUCKET they go
    # to that bucket (credentials from the standard AWS environment); without, to a folder
    # served by this API at tokenised URLs under PUBLIC_BASE_URL.
    media_s3_bucket: str | None = None
    media_s3_prefix: str = ""
    s3_endpoint_url: AnyHttpUrl | None = Field(
        default=None, description="S3 API endpoint for MinIO, R2 and others; unset: AWS"
    )
    media_public_base_url: AnyHttpUrl | None = Field(
        default=None,
        description="Public URL of the bucket (a CDN); mirrored assets link there instead of "
        "being pre-signed",
    )
    media_local_dir: Path = Path(".vidhook/media")
    media_mirror: bool = Field(
        default=True, description="Copy every output file of a completed job to the media store"
    )
    # Pre-signed (and local tokenised) URLs; SigV4 caps pre-signing at 7 days.
    media_url_ttl_s: int = Field(default=7 * 86_400, gt=0, le=7 * 86_400)
    media_max_bytes: int = Field(default=2 * 1024**3, gt=0)
    media_part_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    # fal's output URLs are its CDN's; private addresses only in development (the simulator).
    media_allow_private_sources: bool = False
    mirror_max_tries: int = 6
    # Data URIs in POST /v1/jobs decoding to at least this many bytes are stored like uploads
    # and sent to fal as URLs (0: always inline).
    media_data_uri_min_bytes: int = Field(default=1024 * 1024, ge=0)
    # One try's budget for all of a job's files: 2 GiB at a modest 20 MB/s is under two
    # minutes; a stalled download must not hold a worker slot for ever.
    mirror_timeout_s: float = Field(default=15.0, gt=0)
    # The dashboard plays result videos from fal's CDN (https). Other origins it may load
    # videos and images from go here, e.g. the local simulator's http://127.0.0.1:8100.
    dashboard_media_origins: Annotated[str, NoDecode] = Field(
        default="",
        description="Space- or comma-separated origins, beyond https:, that /dashboard may "
        "play result videos and show input images from",
    )

    host: str = "127.0.0.1"
    port: int = 8000
    # Room for the largest valid request: reference-to-video with 3 x 8 MiB data URIs (~34 MB).
    max_request_bytes: int = 40 * 1024 * 1024
    max_webhook_bytes: int = 4 * 1024 * 1024

    # Spend control (service/budgets.py).
    fal_max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Most requests fal holds for us at once (submitted, not finished); "
        "unset: unlimited",
    )
    tenant_limits: str | None = Field(
        default=None,
        description='JSON per tenant: `{"acme": {"max_in_flight": 5, "weight": 2, '
        '"daily_usd": 50, "monthly_usd": 1000}}` (see README, spend control)',
    )
    fal_pause_probe_s: float = Field(default=30.0, gt=0)
    fal_poll_interval_s: float = Field(default=5.0, gt=0)
    fal_poll_max_interval_s: float = Field(default=60.0, gt=0)

    dispatch_max_tries: int = 8
    retry_base_delay_s: float = 2.0
    retry_max_delay_s: float = 300.0
    # After an unclear submit (timeout, 5xx after sending, a worker lost mid-POST) vidhook
    # looks for the request in fal's listing every SUBMIT_LOOKUP_INTERVAL_S, and resubmits only
    # when it has not shown up within the grace: by default the endpoint's completion time
    # from the catalog (the listing shows finished requests only); this overrides it.
    ambiguous_submit_grace_s: float | None = Field(default=None, gt=0)
    submit_lookup_interval_s: float = Field(default=30.0, gt=0)
    # Every job is terminal this long after its creation at the latest (failed with
    # deadline_exceeded); see the README's reliability section for why 6 h.
    job_deadline_s: int = Field(default=6 * 3600, ge=60)
    # How often a worker sweeps active jobs for overdue ones and lost tasks (divides 60).
    deadline_sweep_interval_s: int = Field(default=60, ge=1, le=60)
    # A submitted job whose webhook has not come by then is asked about at fal directly.
    reconcile_after_s: float = 600.0
    worker_max_jobs: int = 50
    # On SIGTERM, in-flight fal calls, webhooks and callbacks get this long to finish (the API
    # stops accepting, the worker stops picking up tasks); what remains is cancelled and
    # runs again elsewhere. Give the process manager's kill timeout a few seconds more.
    shutdown_grace_s: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM, how long in-flight fal calls, webhooks and callbacks may take "
        "to finish",
    )
    # ARQ finds new tasks by polling: this bounds the intake -> fal submit latency (p99 ~ this
    # value), at the cost of one cheap Redis query per interval per idle worker.
    worker_poll_delay_s: float = 0.01

    # Operations (issue 11): metrics, logs, admin access, graceful shutdown.
    admin_api_keys: Annotated[str, NoDecode] = Field(
        default="",
        description="Comma-separated `key:name` pairs whose holders may list every tenant's jobs",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        description="Port on which a worker serves Prometheus /metrics (unset: none)",
    )
    api_processes: int = Field(
        default=1,
        ge=1,
        description="uvicorn worker processes per `vidhook api`; more than 1 needs "
        "PROMETHEUS_MULTIPROC_DIR for correct /metrics",
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error")
    log_format: str = Field(
        default="json", description="`json` (one object per line) or `console` (for people)"
    )
    access_log: bool = Field(default=False, description="Log every HTTP request (uvicorn)")
    example_media_base_url: AnyHttpUrl | None = Field(
        default=None,
        description="Where `GET /v1/endpoints` examples take their sample files from "
        "(`sample.jpg`, `.png`, `.mp4`); unset: fal's public example files",
    )

    @field_validator("api_keys")
    @classmethod
    def _api_keys_are_pairs(cls, value: str) -> str:
        _parse_api_keys(value)
        return value

    @field_validator("admin_api_keys")
    @classmethod
    def _admin_keys_are_pairs(cls, value: str) -> str:
        if value.strip():
            _parse_api_keys(value)
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format_known(cls, value: str) -> str:
        if value not in ("json", "console"):
            raise ValueError("must be `json` or `console`")
        return value

    @field_validator("dashboard_media_origins")
    @classmethod
    def _origins_are_origins(cls, value: str) -> str:
        # Each lands in a Content-Security-Policy: refuse anything that could end a directive.
        for origin in value.replace(",", " ").split():
            if not _CSP_SOURCE.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like https://media.example:443")
        return value

    @field_validator("callback_signing_secret")
    @classmethod
    def _secret_is_whsec(cls, value: SecretStr) -> SecretStr:
        # The same check the callback sender applies, so a bad secret fails here, at start-up.
        decode_signing_secret(value.get_secret_value())
        return value

    @field_validator("callback_retry_schedule_s")
    @classmethod
    def _schedule_parses(cls, value: str) -> str:
        _parse_schedule(value)
        return value

    @field_validator("tenant_callback_secrets")
    @classmethod
    def _tenant_secrets_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _parse_tenant_secrets(value.get_secret_value())
        return value

    @field_validator("media_s3_prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        # "vidhook" would otherwise make keys like "vidhookuploads/…".
        return value if not value or value.endswith("/") else value + "/"

    @field_validator("price_overrides")
    @classmethod
    def _price_overrides_parse(cls, value: str | None) -> str | None:
        PriceTable.from_overrides(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("tenant_limits")
    @classmethod
    def _tenant_limits_parse(cls, value: str | None) -> str | None:
        parse_tenant_limits(value)  # raises ValueError naming the bad entry
        return value

    @model_validator(mode="after")
    def _poll_bounds(self) -> Settings:
        if self.fal_poll_interval_s > self.fal_poll_max_interval_s:
            raise ValueError("FAL_POLL_INTERVAL_S must not exceed FAL_POLL_MAX_INTERVAL_S")
        return self

    @model_validator(mode="after")
    def _retry_bounds(self) -> Settings:
        if self.retry_base_delay_s > self.retry_max_delay_s:
            raise ValueError("RETRY_BASE_DELAY_S must not exceed RETRY_MAX_DELAY_S")
        return self

    @field_validator("deadline_sweep_interval_s")
    @classmethod
    def _sweep_divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (it is run at fixed seconds of each minute)")
        return value

    def submit_grace_s(self, endpoint: str) -> float:
        """How long after an unclear submit to `endpoint` a resubmit may be sent."""
        if self.ambiguous_submit_grace_s is not None:
            return self.ambiguous_submit_grace_s
        return completion_s(endpoint)

    @cached_property
    def callback_schedule_s(self) -> tuple[float, ...]:
        """The delay before each attempt of a callback delivery (CALLBACK_MAX_TRIES applied)."""
        schedule = _parse_schedule(self.callback_retry_schedule_s)
        tries = self.callback_max_tries
        if tries is None:
            return schedule
        return schedule[:tries] + (schedule[-1],) * max(0, tries - len(schedule))

    @cached_property
    def tenant_signing_secrets(self) -> dict[str, tuple[str, ...]]:
        """Each tenant's own callback signing secrets, newest first."""
        if self.tenant_callback_secrets is None:
            return {}
        return _parse_tenant_secrets(self.tenant_callback_secrets.get_secret_value())

    @cached_property
    def tenants_by_api_key(self) -> dict[str, str]:
        return _parse_api_keys(self.api_keys)

    @cached_property
    def admins_by_api_key(self) -> dict[str, str]:
        return _parse_api_keys(self.admin_api_keys) if self.admin_api_keys.strip() else {}

    @cached_property
    def allowed_endpoint_patterns(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.allowed_endpoints.split(",") if part.strip())

    @cached_property
    def dashboard_media_origin_list(self) -> tuple[str, ...]:
        return tuple(part for part in self.dashboard_media_origins.replace(",", " ").split())

    @property
    def budget(self) -> BudgetConfig:
        return _budget_config(self.fal_max_in_flight, self.tenant_limits, self.job_deadline_s)

    @property
    def poll_mode(self) -> bool:
        """No PUBLIC_BASE_URL: fal cannot call us, so every request is followed by polling."""
        return self.public_base_url is None

    @property
    def api_base_url(self) -> str:
        """This API's own URL: PUBLIC_BASE_URL, or where it listens (poll mode, a laptop)."""
        if self.public_base_url is not None:
            return str(self.public_base_url).rstrip("/")
        return f"http://{self.host}:{self.port}"

    def price_table(self) -> PriceTable:
        return PriceTable.from_overrides(self.price_overrides)

    @cached_property
    def webhook_tokens(self) -> WebhookTokens:
        if self.webhook_token_secret is not None:
            key = self.webhook_token_secret.get_secret_value().encode()
        else:
            # A key of its own, derived so that knowing one use of the secret reveals nothing
            # about the other.
            secret = decode_signing_secret(self.callback_signing_secret.get_secret_value())
            key = hmac.new(secret, b"vidhook fal webhook token v1", hashlib.sha256).digest()
        return WebhookTokens(key)

    @cached_property
    def media_tokens(self) -> WebhookTokens:
        """Tokens of local media URLs: an HMAC key of their own, like the webhook tokens'."""
        secret = decode_signing_secret(self.callback_signing_secret.get_secret_value())
        return WebhookTokens(
            hmac.new(secret, b"vidhook media url token v1", hashlib.sha256).digest()
        )

    def fal_webhook_url(self, job_id: str) -> str | None:
        """The receiver URL fal calls for one job: it names the job and carries its token.

        None in poll mode (no PUBLIC_BASE_URL): the submit carries no `fal_webhook`.
        """
        if self.fal_webhook_base is None:
            return None
        return f"{self.fal_webhook_base}{job_id}?token={self.webhook_tokens.token(job_id)}"

    @cached_property
    def fal_webhook_base(self) -> str | None:
        """The receiver URLs' common start; built once, as every submit asks for its URL."""
        if self.public_base_url is None:
            return None
        return f"{str(self.public_base_url).rstrip('/')}/v1/fal/webhooks/"


@functools.lru_cache(maxsize=16)
def _budget_config(
    max_in_flight: int | None, tenant_limits: str | None, job_deadline_s: int
) -> BudgetConfig:
    return BudgetConfig(
        max_in_flight=max_in_flight,
        tenants=parse_tenant_limits(tenant_limits),
        job_deadline_s=job_deadline_s,
    )


def _parse_api_keys(value: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        key, sep, tenant = item.rpartition(":")
        if not sep or not key or not tenant:
            raise ValueError("each entry must be `key:tenant`")
        if len(key) < 16:
            raise ValueError(f"API key for tenant {tenant!r} is shorter than 16 characters")
        pairs[key] = tenant
    if not pairs:
        raise ValueError("at least one `key:tenant` pair is required")
    return pairs


def _parse_schedule(value: str) -> tuple[float, ...]:
    steps: list[float] = []
    for item in (part.strip() for part in value.split(",")):
        try:
            step = float(item)
        except ValueError:
            raise ValueError(f"{item!r} is not a number of seconds") from None
        if not 0 <= step <= 7 * 86_400:
            raise ValueError(f"{item} is not between 0 and 604800 seconds")
        steps.append(step)
    return tuple(steps)


def _parse_tenant_secrets(value: str) -> dict[str, tuple[str, ...]]:
    # Error messages name tenants, never a secret: they are printed at start-up.
    try:
        data = json.loads(value)
    except ValueError:
        raise ValueError("must be a JSON object (its content is not shown)") from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object like {"tenant": "whsec_…"}')
    parsed: dict[str, tuple[str, ...]] = {}
    for tenant, secrets in data.items():
        listed = [secrets] if isinstance(secrets, str) else secrets
        if (
            not tenant
            or not isinstance(listed, list)
            or not 1 <= len(listed) <= 3
            or not all(isinstance(item, str) for item in listed)
        ):
            raise ValueError(f"tenant {tenant!r}: give one secret, or a list of one to three")
        for secret in listed:
            try:
                decode_signing_secret(secret)
            except ValueError as exc:
                raise ValueError(f"tenant {tenant!r}: {exc}") from None
        parsed[tenant] = tuple(listed)
    return parsed


def describe_validation_error(exc: Exception) -> str:
    """A settings ValidationError as lines naming the environment variables."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = ["vidhook: invalid configuration:"]
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper() or "(settings)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {name}: {message}")
    return "\n".join(lines)
