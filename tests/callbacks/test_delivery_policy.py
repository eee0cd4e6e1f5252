"""The retry policy and its settings, as plain functions (no Redis, no HTTP)."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from service.callbacks import DeliveryResult, parse_retry_after
from service.deliveries import DeliveryStatus, decide
from service.settings import Settings, describe_validation_error
from tests.conftest import CALLBACK_SECRET, LOG_LINES

SCHEDULE = (0.0, 5.0, 300.0, 1800.0)
GOOD = "whsec_" + base64.b64encode(b"a-good-tenant-secret-0123456789").decode()
LOG_LINES.secrets.extend([GOOD, GOOD.removeprefix("whsec_")])


def no_jitter(low: float, high: float) -> float:
    return 1.0


def failed(status: int | None = 500, *, retryable: bool = True, **extra: float) -> DeliveryResult:
    return DeliveryResult(
        delivered=False, retryable=retryable, status_code=status, detail="no", **extra
    )


def test_a_2xx_delivers() -> None:
    ok = DeliveryResult(delivered=True, retryable=False, status_code=200, detail="ok")
    assert decide(SCHEDULE, 0, ok).status is DeliveryStatus.DELIVERED


def test_a_failure_waits_for_the_next_step_with_jitter() -> None:
    decision = decide(SCHEDULE, 1, failed(), jitter=no_jitter)
    assert (decision.status, decision.delay_s) == (DeliveryStatus.SCHEDULED, 300.0)
    jittered = {decide(SCHEDULE, 0, failed()).delay_s for _ in range(50)}
    assert min(jittered) >= 4.5 and max(jittered) <= 5.5 and len(jittered) > 1


def test_the_last_step_failing_dead_letters() -> None:
    decision = decide(SCHEDULE, len(SCHEDULE) - 1, failed())
    assert decision.status is DeliveryStatus.DEAD_LETTERED
    assert "4" in decision.reason


def test_a_final_answer_dead_letters_at_once() -> None:
    assert decide(SCHEDULE, 0, failed(410, retryable=False)).status is DeliveryStatus.DEAD_LETTERED


@pytest.mark.parametrize(
    ("attempt", "retry_after_s", "expected_s"),
    [
        (0, 60.0, 60.0),  # between the next step (5 s) and the next-but-one (300 s)
        (0, 3600.0, 300.0),  # bounded by the next-but-one step
        (0, 1.0, 5.0),  # shorter than the schedule: the schedule wins
        (2, 7200.0, 1800.0),  # no step after the next: bounded by the next
    ],
)
def test_retry_after_is_honoured_within_the_next_but_one_step(
    attempt: int, retry_after_s: float, expected_s: float
) -> None:
    result = failed(503, retry_after_s=retry_after_s)
    assert decide(SCHEDULE, attempt, result, jitter=no_jitter).delay_s == expected_s


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now_s=1445412420.0) == 60.0
    assert parse_retry_after("99999999") == 86_400.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def settings(**changes: object) -> Settings:
    base: dict[str, object] = {
        "redis_url": "redis://localhost:1/0",
        "fal_key": "k",
        "public_base_url": "http://127.0.0.1:1",
        "api_keys": "tenant-a-key-0123456789abcdef:tenant-a",
        "callback_signing_secret": CALLBACK_SECRET,
    }
    return Settings(**{**base, **changes})  # type: ignore[arg-type]


def test_the_default_schedule_is_ten_attempts_over_about_three_days() -> None:
    schedule = settings().callback_schedule_s
    assert schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert 2.9 < sum(schedule) / 86_400 < 3.3


def test_callback_max_tries_still_bounds_the_attempts() -> None:
    assert settings(callback_max_tries=3).callback_schedule_s == (0, 5, 300)
    stretched = settings(callback_retry_schedule_s="0,1", callback_max_tries=4)
    assert stretched.callback_schedule_s == (0, 1, 1, 1)


@pytest.mark.parametrize("schedule", ["", "0,soon", "0,-1", "0,999999999"])
def test_a_bad_schedule_is_refused_at_start_up(schedule: str) -> None:
    with pytest.raises(ValidationError):
        settings(callback_retry_schedule_s=schedule)


def test_tenant_secrets_parse_one_or_a_rotation() -> None:
    parsed = settings(
        tenant_callback_secrets=json.dumps({"a": GOOD, "b": [GOOD, CALLBACK_SECRET]})
    ).tenant_signing_secrets
    assert parsed == {"a": (GOOD,), "b": (GOOD, CALLBACK_SECRET)}


@pytest.mark.parametrize(
    "value",
    [
        '{"a": "whsec_tooshort"}',
        '{"a": []}',
        '{"a": ["' + GOOD + '", 3]}',
        '["not", "an", "object"]',
        '{"a": "' + GOOD.removeprefix("whsec_") + '"}',
        "not json " + GOOD,
    ],
)
def test_a_bad_tenant_secret_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(tenant_callback_secrets=value)
    # What start-up prints (pydantic's own str() echoes the input; vidhook never prints it).
    printed = describe_validation_error(caught.value)
    assert "TENANT_CALLBACK_SECRETS" in printed
    assert GOOD.removeprefix("whsec_") not in printed and "tooshort" not in printed
