"""Webhook delivery: fal's headers and signature, retries, 3xx refusal, key rotation."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.dev.simulator.signing import WebhookSigner, signed_message
from tests.simulator.conftest import Sim, _start_sim
from tests.simulator.helpers import Receiver, verifying_key_index

I2V = "fal-ai/veo3.1/image-to-video"
INVALID = {"image_url": "data:image/png;base64,AAAA"}
OLD_KEY = "11" * 32
NEW_KEY = "22" * 32


def test_delivery_carries_documented_headers_and_verifiable_signature(
    sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]]
) -> None:
    key, webhook = hook()
    submitted = sim.fal.submit(I2V, INVALID, webhook=webhook)
    [delivery] = receiver.wait(key)
    headers = delivery.headers
    assert headers["x-fal-webhook-request-id"] == submitted["request_id"]
    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 60
    assert len(headers["x-fal-webhook-signature"]) == 128
    assert verifying_key_index(delivery, sim.fal.jwks()) == 0
    # The signature covers the raw body: any change breaks it.
    tampered = type(delivery)(delivery.headers, delivery.body + b" ")
    assert verifying_key_index(tampered, sim.fal.jwks()) is None


def test_failed_deliveries_are_retried_until_acknowledged(
    sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]]
) -> None:
    key, webhook = hook("fail=2")
    sim.fal.submit(I2V, INVALID, webhook=webhook)
    deliveries = receiver.wait(key, count=3)
    time.sleep(0.3)  # acknowledged: no fourth attempt follows
    assert len(receiver.deliveries(key)) == 3
    assert len({d.body for d in deliveries}) == 1
    jwks = sim.fal.jwks()
    assert all(verifying_key_index(d, jwks) == 0 for d in deliveries)


def test_redirect_is_a_permanent_failure_and_not_followed(
    sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]]
) -> None:
    key, webhook = hook("redirect=1")
    sim.fal.submit(I2V, INVALID, webhook=webhook)
    receiver.wait(key)
    # With the test time scale the first retry would come after 7 ms.
    time.sleep(0.3)
    assert len(receiver.deliveries(key)) == 1
    assert receiver.deliveries(f"{key}-target") == []


@pytest.fixture(scope="module")
def rotated_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    yield from _start_sim(tmp_path_factory.mktemp("rotated"), signing_keys=[NEW_KEY, OLD_KEY])


def test_rotation_publishes_every_key_and_signs_with_the_first(
    rotated_sim: Sim, receiver: Receiver, hook: Callable[..., tuple[str, str]]
) -> None:
    jwks = rotated_sim.fal.jwks()
    assert len(jwks["keys"]) == 2
    assert len({k["kid"] for k in jwks["keys"]}) == 2
    key, webhook = hook()
    rotated_sim.fal.submit(I2V, INVALID, webhook=webhook)
    [delivery] = receiver.wait(key)
    assert verifying_key_index(delivery, jwks) == 0
    only_old = {"keys": jwks["keys"][1:]}
    assert verifying_key_index(delivery, only_old) is None
    assert json.loads(delivery.body)["status"] == "ERROR"


def test_timed_rotation_signs_with_each_key_in_turn_and_publishes_its_neighbours() -> None:
    now = [100.0]
    seeds = [f"{i:02x}" * 32 for i in range(1, 5)]
    signer = WebhookSigner(seeds, rotation_s=10.0, clock=lambda: now[0])
    publics = [Ed25519PrivateKey.from_private_bytes(bytes.fromhex(s)).public_key() for s in seeds]
    kids = [WebhookSigner([seed]).jwks()["keys"][0]["kid"] for seed in seeds]
    message = signed_message("r", "u", "1", b"{}")

    def signing_index() -> int:
        signature = bytes.fromhex(
            signer.sign(request_id="r", user_id="u", timestamp="1", body=b"{}")
        )
        for index, public in enumerate(publics):
            try:
                public.verify(signature, message)
                return index
            except InvalidSignature:
                continue
        raise AssertionError("no key verifies")

    def published() -> list[str]:
        return [key["kid"] for key in signer.jwks()["keys"]]

    assert signing_index() == 0 and published() == kids[0:2]
    now[0] += 10.5
    assert signing_index() == 1 and published() == kids[0:3]
    now[0] += 10
    assert signing_index() == 2 and published() == kids[1:4]
    now[0] += 100  # the last key stays
    assert signing_index() == 3 and published() == kids[2:4]
