"""Settings for a test's own slice of the session's Redis, which the session worker never reads."""

from __future__ import annotations

import uuid

from service.dev.localredis import free_port
from service.settings import Settings


def isolated(settings: Settings, **changes: object) -> Settings:
    """The session's settings on a fresh queue and key prefix (and API port), plus `changes`."""
    tag = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "redis_key_prefix": f"iso-{tag}:",
            "arq_queue_name": f"iso-{tag}:queue",
            "port": free_port(),
            **changes,
        }
    )


def environment(settings: Settings) -> dict[str, str]:
    """`settings` as the environment variables a `vidhook` process reads them from."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    return env
