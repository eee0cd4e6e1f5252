"""Delivering signed callbacks over real HTTP to a receiver on loopback.

Every request in this module goes to 127.0.0.1: names that are not `localhost` are mapped
to loopback by an injected resolver, so no test depends on (or sends) real DNS traffic.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from service.callbacks import CallbackSender, DeliveryResult
from service.dev.localredis import free_port
from service.ssrf import IPAddress, ResolutionFailed
from tests.callbacks.conftest import SECRET, Receiver

PAYLOAD = json.dumps({"type": "job.completed", "data": {"job_id": "job_123"}}).encode()
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def deliver(
    url: str,
    *,
    message_id: str = "msg_1",
    payload: bytes = PAYLOAD,
    timestamp_s: int | None = None,
    client_options: dict[str, Any] | None = None,
    **sender_options: Any,
) -> DeliveryResult:
    """Send one callback through a fresh client, the way a worker would."""

    async def run() -> DeliveryResult:
        options = {"trust_env": False, **(client_options or {})}
        async with httpx.AsyncClient(**options) as client:
            sender = CallbackSender(client, SECRET, **sender_options)
            return await sender.send(
                url, message_id=message_id, payload=payload, timestamp_s=timestamp_s
            )

    return asyncio.run(run())


class StaticResolver:
    """Answers every lookup with fixed addresses and counts the lookups."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = [ipaddress.ip_address(a) for a in addresses]
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.lookups.append((host, port))
        return self.addresses


def test_delivered_callback_verifies_with_standardwebhooks(receiver: Receiver) -> None:
    result = deliver(f"{receiver.url}/hook", message_id="msg_verify", allow_private_targets=True)

    assert result == DeliveryResult(
        delivered=True, retryable=False, status_code=204, detail="delivered (HTTP 204)"
    )
    [request] = receiver.requests
    assert request.body == PAYLOAD
    assert Webhook(SECRET).verify(request.body, request.headers) == json.loads(PAYLOAD)
    assert request.headers["webhook-id"] == "msg_verify"
    assert request.headers["webhook-signature"].startswith("v1,")
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("vidhook/")


def test_webhook_id_is_stable_across_sends_of_one_message(receiver: Receiver) -> None:
    now = int(time.time())
    for timestamp_s in (now - 30, now):
        result = deliver(
            f"{receiver.url}/hook",
            message_id="msg_retry",
            timestamp_s=timestamp_s,
            allow_private_targets=True,
        )
        assert result.delivered

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "msg_retry"
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    for request in (first, second):
        Webhook(SECRET).verify(request.body, request.headers)


def test_signature_with_another_secret_does_not_verify(receiver: Receiver) -> None:
    deliver(f"{receiver.url}/hook", allow_private_targets=True)
    [request] = receiver.requests
    other = Webhook("whsec_" + "A" * 32)
    with pytest.raises(Exception, match="No matching signature"):
        other.verify(request.body, request.headers)


@pytest.mark.parametrize(
    ("status", "delivered", "retryable"),
    [
        (200, True, False),
        (201, True, False),
        (202, True, False),
        (500, False, True),
        (502, False, True),
        (503, False, True),
        (429, False, True),
        (408, False, True),
        (425, False, True),
        (400, False, True),
        (401, False, True),
        (404, False, True),
        (410, False, False),  # Gone: the receiver says stop
        (422, False, True),
    ],
)
def test_status_codes_are_classified(
    receiver: Receiver, status: int, delivered: bool, retryable: bool
) -> None:
    result = deliver(f"{receiver.url}/status/{status}", allow_private_targets=True)

    assert (result.delivered, result.retryable, result.status_code) == (
        delivered,
        retryable,
        status,
    )
    assert str(status) in result.detail


def test_server_error_is_not_delivered_and_retryable(receiver: Receiver) -> None:
    result = deliver(f"{receiver.url}/status/500", allow_private_targets=True)

    assert not result.delivered
    assert result.retryable
    assert result.status_code == 500
    assert receiver.paths() == ["/status/500"]


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    # Even a client configured to follow redirects must not follow one for a callback.
    result = deliver(
        f"{receiver.url}/redirect",
        allow_private_targets=True,
        client_options={"follow_redirects": True},
    )

    assert not result.delivered
    assert result.retryable, "a redirect is retried, never followed"
    assert result.status_code == 302
    assert "redirect" in result.detail
    assert receiver.paths() == ["/redirect"]


def test_huge_response_body_is_not_read_into_memory(receiver: Receiver) -> None:
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = deliver(
            f"{receiver.url}/huge", allow_private_targets=True, max_response_bytes=64 * 1024
        )
        elapsed_s = time.monotonic() - started
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.delivered
    assert result.status_code == 200
    assert elapsed_s < 10
    # The receiver offered 1 GiB; only the cap plus socket buffers ever left it.
    assert receiver.huge_bytes_sent[0] < 64 * 1024 * 1024
    assert peak_bytes < 16 * 1024 * 1024


def test_slow_receiver_times_out_and_is_retryable(receiver: Receiver) -> None:
    started = time.monotonic()
    result = deliver(f"{receiver.url}/slow", allow_private_targets=True, timeout_s=0.3)
    elapsed_s = time.monotonic() - started

    assert not result.delivered
    assert result.retryable
    assert result.status_code is None
    assert "timed out" in result.detail
    assert elapsed_s < 2
    assert receiver.paths() == ["/slow"]


def test_dripping_response_body_is_cut_off_at_the_deadline(receiver: Receiver) -> None:
    # The 200 is the receiver's acknowledgement; a body that never ends must not hold the
    # worker, and being cut off must not turn the acknowledgement into a failure.
    started = time.monotonic()
    result = deliver(f"{receiver.url}/drip", allow_private_targets=True, timeout_s=0.5)
    elapsed_s = time.monotonic() - started

    assert result.delivered
    assert result.status_code == 200
    assert elapsed_s < 2


def test_connection_refused_is_retryable() -> None:
    port = free_port()  # free right now, so nothing is listening there
    result = deliver(f"http://127.0.0.1:{port}/hook", allow_private_targets=True)

    assert not result.delivered
    assert result.retryable
    assert result.status_code is None
    assert "could not connect" in result.detail


def test_loopback_target_is_refused_by_default(receiver: Receiver) -> None:
    result = deliver(f"{receiver.url}/hook")

    assert not result.delivered
    assert not result.retryable
    assert result.status_code is None
    assert "refused" in result.detail
    assert receiver.requests == []


def test_name_resolving_to_loopback_is_refused_by_default(receiver: Receiver) -> None:
    result = deliver(
        f"http://localhost.example:{receiver.port}/hook", resolver=StaticResolver("127.0.0.1")
    )

    assert not result.delivered
    assert not result.retryable
    assert "forbidden address (loopback)" in result.detail
    # The client learns the rule, not which internal address its name points at.
    assert "127.0.0.1" not in result.detail
    assert receiver.requests == []


def test_one_forbidden_answer_among_public_ones_refuses_the_name(receiver: Receiver) -> None:
    # Refused before any connection, so the public address is never contacted.
    resolver = StaticResolver("8.8.8.8", "127.0.0.1")
    result = deliver(f"http://mixed.example:{receiver.port}/hook", resolver=resolver)

    assert not result.delivered
    assert not result.retryable
    assert receiver.requests == []


def test_loopback_target_is_delivered_when_private_targets_are_allowed(
    receiver: Receiver,
) -> None:
    result = deliver(f"{receiver.url}/hook", allow_private_targets=True)

    assert result.delivered
    assert receiver.paths() == ["/hook"]


def test_connects_to_checked_address_and_keeps_original_host_header(
    receiver: Receiver,
) -> None:
    result = deliver(f"http://localhost:{receiver.port}/hook", allow_private_targets=True)

    assert result.delivered
    [request] = receiver.requests
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert request.server == ("127.0.0.1", receiver.port)


def test_name_is_resolved_once_and_never_looked_up_again(receiver: Receiver) -> None:
    # `receiver.example` exists only in this resolver: if anything looked the name up a
    # second time (httpx connecting by name), the delivery could not succeed.
    resolver = StaticResolver("127.0.0.1")
    result = deliver(
        f"http://receiver.example:{receiver.port}/hook",
        resolver=resolver,
        allow_private_targets=True,
    )

    assert result.delivered
    assert resolver.lookups == [("receiver.example", receiver.port)]
    [request] = receiver.requests
    assert request.headers["host"] == f"receiver.example:{receiver.port}"
    assert request.server == ("127.0.0.1", receiver.port)


def test_next_address_is_tried_when_the_first_refuses_connections(receiver: Receiver) -> None:
    # The receiver listens on 127.0.0.1 only; 127.0.0.2 refuses the connection.
    resolver = StaticResolver("127.0.0.2", "127.0.0.1")
    result = deliver(
        f"http://receiver.example:{receiver.port}/hook",
        resolver=resolver,
        allow_private_targets=True,
    )

    assert result.delivered
    assert len(receiver.requests) == 1


def test_unresolvable_host_is_retryable() -> None:
    async def nxdomain(host: str, port: int) -> Sequence[IPAddress]:
        raise ResolutionFailed(f"could not resolve {host!r}", rule="dns")

    result = deliver("https://gone.example/hook", resolver=nxdomain)

    assert result == DeliveryResult(
        delivered=False, retryable=True, status_code=None, detail="callback host did not resolve"
    )


def test_unsafe_url_becomes_a_result_not_an_exception() -> None:
    result = deliver("http://169.254.169.254/latest/meta-data/?token=client-token")

    assert not result.delivered
    assert not result.retryable
    assert "link-local" in result.detail
    assert "client-token" not in result.detail


def test_client_defaults_never_reach_the_receiver(receiver: Receiver) -> None:
    # A worker's shared client may carry fal credentials; a callback must not leak them.
    result = deliver(
        f"{receiver.url}/hook",
        allow_private_targets=True,
        client_options={
            "headers": {"authorization": "Key fal-credential"},
            "cookies": {"session": "fal-cookie"},
            "auth": ("fal-user", "fal-password"),
        },
    )

    assert result.delivered
    [request] = receiver.requests
    assert "authorization" not in request.headers
    assert "cookie" not in request.headers
    assert "fal-credential" not in str(request.headers)


def test_secret_never_appears_in_repr_or_results(receiver: Receiver) -> None:
    async def run() -> tuple[str, list[DeliveryResult]]:
        async with httpx.AsyncClient(trust_env=False) as client:
            sender = CallbackSender(client, SECRET, allow_private_targets=True, timeout_s=0.3)
            urls = ["ftp://x.example/", f"{receiver.url}/status/500", f"{receiver.url}/slow"]
            results = [await sender.send(u, message_id="m", payload=PAYLOAD) for u in urls]
            return repr(sender), results

    text, results = asyncio.run(run())
    key = SECRET.removeprefix("whsec_")
    for shown in [text, *(r.detail for r in results)]:
        assert key not in shown


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "whsec_",
        "c2VjcmV0LXdpdGhvdXQtcHJlZml4LTAxMjM0NTY3ODk=",
        "whsec_not base64 at all!!",
        "whsec_c2hvcnQ=",
    ],
)
def test_malformed_signing_secret_is_rejected_without_echoing_it(secret: str) -> None:
    async def build() -> None:
        async with httpx.AsyncClient() as client:
            CallbackSender(client, secret)

    with pytest.raises(ValueError) as caught:
        asyncio.run(build())
    body = secret.removeprefix("whsec_")
    if body:
        assert body not in str(caught.value)


@pytest.mark.parametrize(
    ("message_id", "payload"),
    [("", PAYLOAD), ("msg with space", PAYLOAD), ("msg\r\nx-evil: 1", PAYLOAD), ("m", b"\xff")],
)
def test_malformed_message_is_a_caller_error(message_id: str, payload: bytes) -> None:
    with pytest.raises(ValueError):
        deliver("https://example.com/hook", message_id=message_id, payload=payload)
