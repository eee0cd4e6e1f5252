"""Configuration is read once from the environment and refused clearly when wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from service.settings import Settings, describe_validation_error
from tests.conftest import CALLBACK_SECRET

VALID: dict[str, Any] = {
    "redis_url": "redis://127.0.0.1:1/0",
    "fal_key": "fal-key",
    "public_base_url": "https://vidhook.example.com",
    "api_keys": "key-for-tenant-one-0000:one, key-for-tenant-two-0000:two",
    "callback_signing_secret": CALLBACK_SECRET,
}


def problems(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**{**VALID, **overrides})
    return describe_validation_error(caught.value)


def test_valid_settings_parse_keys_and_defaults() -> None:
    settings = Settings(**VALID)
    assert settings.tenants_by_api_key == {
        "key-for-tenant-one-0000": "one",
        "key-for-tenant-two-0000": "two",
    }
    assert str(settings.fal_queue_base_url) == "https://queue.fal.run/"
    assert str(settings.fal_jwks_url) == "https://rest.fal.ai/.well-known/jwks.json"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    url = settings.fal_webhook_url("job_1")
    assert url.startswith("https://vidhook.example.com/v1/fal/webhooks/job_1?token=")


def test_a_changed_copy_derives_its_values_afresh() -> None:
    settings = Settings(**VALID, callback_retry_schedule_s="0,5")
    assert settings.callback_schedule_s == (0.0, 5.0)  # computed, and cached on `settings`
    assert settings.tenants_by_api_key["key-for-tenant-one-0000"] == "one"
    copy = settings.model_copy(
        update={
            "callback_retry_schedule_s": "0,0.2,1.5",
            "api_keys": "key-for-tenant-three-0:three",
        }
    )
    assert copy.callback_schedule_s == (0.0, 0.2, 1.5)
    assert copy.tenants_by_api_key == {"key-for-tenant-three-0": "three"}
    assert settings.callback_schedule_s == (0.0, 5.0)


def test_webhook_tokens_differ_per_job_and_per_key() -> None:
    settings = Settings(**VALID)
    token = settings.webhook_tokens.token("job_1")
    assert len(token) >= 32
    assert settings.webhook_tokens.matches("job_1", token)
    assert not settings.webhook_tokens.matches("job_2", token)
    assert Settings(**VALID).webhook_tokens.token("job_1") == token, "stable across processes"
    rekeyed = Settings(**VALID, webhook_token_secret="another-key-entirely")
    assert rekeyed.webhook_tokens.token("job_1") != token


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"api_keys": "no-tenant-here"}, "API_KEYS: each entry must be `key:tenant`"),
        ({"api_keys": "short:tenant"}, "API_KEYS: API key for tenant 'tenant' is shorter than 16"),
        ({"callback_signing_secret": "not-whsec"}, "CALLBACK_SIGNING_SECRET"),
        ({"callback_signing_secret": "whsec_c2hvcnQ="}, "CALLBACK_SIGNING_SECRET"),
        ({"public_base_url": "not a url"}, "PUBLIC_BASE_URL"),
        ({"tenant_limits": "{not json"}, "TENANT_LIMITS"),
        ({"tenant_limits": '{"acme": {"weight": 0}}'}, "TENANT_LIMITS"),
        ({"tenant_limits": '{"acme": {"max_in_flight": 2, "colour": 1}}'}, "TENANT_LIMITS"),
        ({"fal_max_in_flight": 0}, "FAL_MAX_IN_FLIGHT"),
        ({"price_overrides": '{"no-such-family": {}}'}, "PRICE_OVERRIDES"),
        ({"retry_base_delay_s": 10, "retry_max_delay_s": 1}, "RETRY_BASE_DELAY_S"),
    ],
)
def test_a_wrong_setting_is_named_in_the_message(overrides: dict[str, Any], expected: str) -> None:
    assert expected in problems(**overrides)


def test_secrets_never_appear_in_the_settings_repr() -> None:
    text = repr(Settings(**VALID))
    assert "fal-key" not in text and CALLBACK_SECRET not in text


def test_vidhook_api_with_nothing_configured_exits_2_naming_every_missing_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in VALID}}
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "api"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 2
    # PUBLIC_BASE_URL is optional: without it vidhook runs in poll mode.
    for name in ("REDIS_URL", "FAL_KEY", "API_KEYS", "CALLBACK_SIGNING_SECRET"):
        assert name in run.stderr
