"""What the API process holds for its lifetime: settings and the connections made at start-up."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis

from service.apikeys import ApiKeyStore
from service.budgets import Budgets
from service.deliveries import Deliveries
from service.fal import FalQueueClient
from service.fal_webhooks import FalWebhookVerifier, JwksCache
from service.job_index import JobIndex
from service.media import MediaStore
from service.prices import PriceTable
from service.settings import Settings
from service.stats import Stats
from service.store import JobStore
from service.streams import TenantFeeds
from service.waiters import JobWaiters


@dataclass(slots=True)
class ApiContext:
    settings: Settings
    redis: Redis
    http: httpx.AsyncClient
    store: JobStore
    verifier: FalWebhookVerifier
    prices: PriceTable
    waiters: JobWaiters
    feeds: TenantFeeds
    # For the calls the API itself makes to fal (cancel); submits stay with the workers.
    fal: FalQueueClient
    media: MediaStore
    jwks: JwksCache | None = None
    tenants_by_key_digest: dict[bytes, str] = field(default_factory=dict)
    admins_by_key_digest: dict[bytes, str] = field(default_factory=dict)
    api_keys: ApiKeyStore = field(init=False)
    index: JobIndex = field(init=False)
    stats: Stats = field(init=False)
    deliveries: Deliveries = field(init=False)
    budgets: Budgets = field(init=False)

    def __post_init__(self) -> None:
        # Looked up by digest so that the dict lookup's timing says nothing about real keys.
        self.tenants_by_key_digest = {
            key_digest(key): tenant for key, tenant in self.settings.tenants_by_api_key.items()
        }
        self.admins_by_key_digest = {
            key_digest(key): name for key, name in self.settings.admins_by_api_key.items()
        }
        self.api_keys = ApiKeyStore(self.redis, self.store.keys)
        self.index = JobIndex(self.redis, self.store.keys)
        self.stats = Stats(self.redis, self.store.keys)
        self.deliveries = Deliveries(
            self.redis,
            self.store.keys,
            schedule_s=self.settings.callback_schedule_s,
            retention_s=self.settings.job_retention_s,
        )
        self.budgets = Budgets(self.redis, self.store.keys, self.settings.budget)


def key_digest(api_key: str) -> bytes:
    return hashlib.sha256(api_key.encode()).digest()
