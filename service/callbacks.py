"""Delivering signed job callbacks to client-supplied URLs.

Callbacks follow the Standard Webhooks spec (https://www.standardwebhooks.com/): headers
`webhook-id` (the caller's message id, stable across retries so receivers can de-duplicate),
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256>`, signed with the
official `standardwebhooks` package so any receiver can verify with the official libraries.

The target is hostile (see `service.ssrf`). Each delivery:

1. checks the URL (`ssrf.parse_target`), resolves the host once and refuses it if any
   address is forbidden (unless the sender was built with `allow_private_targets`);
2. connects to a checked address, never to the name again: the request URL carries the IP,
   the `Host` header and, for https, the TLS SNI / certificate hostname carry the name;
3. follows no redirects, reads at most `max_response_bytes` of the response and keeps none
   of it, and gives the whole delivery (DNS, connect, request, response) one deadline.

Every outcome - refused target, transport failure, any status - is a `DeliveryResult`;
no httpx exception leaves `send`.

Retry classification (`DeliveryResult.retryable`): every answer other than a 2xx is worth
another try, as Standard Webhooks senders do: a receiver that answers 404 or 302 during a
deploy or a misconfiguration usually recovers, and the sender's back-off bounds the cost.
DNS failures, connection errors, timeouts and malformed responses are retried too. Final are
a refused target (the URL is the problem, and it is fixed for the job's life) and 410 Gone
(the receiver says the endpoint is gone for good). Redirects are never followed, whatever the
answer. With 429 or 503 the receiver's `Retry-After` is passed on (`retry_after_s`); the
retry policy (service/deliveries.py) decides how far to honour it.

Signing keys: one default secret, and per tenant one or more of their own. During a
rotation a tenant has two; every message is signed with each, and `webhook-signature`
carries both `v1,` signatures, space-separated, as Standard Webhooks allows: a receiver
holding either secret verifies it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

import httpx
from standardwebhooks import Webhook

from service import ssrf

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[Sequence[ssrf.IPAddress]]]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no spaces: a header value
# Statuses whose Retry-After is read; and the longest one believed (a day).
RETRY_AFTER_STATUSES = frozenset({429, 503})
RETRY_AFTER_MAX_S = 86_400.0


def _user_agent() -> str:
    try:
        return f"vidhook/{metadata.version('vidhook')}"
    except metadata.PackageNotFoundError:
        return "vidhook"


USER_AGENT = _user_agent()


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one delivery attempt.

    `detail` is short, contains no secret and no resolved internal address, and is safe to
    store on the job and show to the client.
    """

    delivered: bool  # a 2xx was received
    retryable: bool  # worth trying again later; see the module docstring
    status_code: int | None  # None when no HTTP response was received
    detail: str
    # A 429's or 503's Retry-After, in seconds from now (at most RETRY_AFTER_MAX_S).
    retry_after_s: float | None = None


class CallbackSender:
    """Signs and POSTs callbacks through a shared `httpx.AsyncClient`.

    The client is owned by the caller (one per worker process). Requests are built here and
    sent with `client.send`, so the client's default headers, cookies and auth - which may
    hold credentials meant for fal - never reach a callback receiver. The client's proxy
    settings still apply; build it with `trust_env=False` unless a proxy is intended.

    `signing_secret` signs every message (several: each signs, for a rotation), unless
    `tenant_secrets` names the message's tenant: then that tenant's secrets sign instead.

    `allow_private_targets` disables the forbidden-address rules (never the syntax rules);
    only local development should set it. `resolver` replaces DNS resolution (tests use it
    to map a name to a loopback address); its answers are still checked.

    Raises:
        ValueError: a secret is malformed (the message names no secret).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        signing_secret: str | Sequence[str],
        *,
        tenant_secrets: Mapping[str, Sequence[str]] | None = None,
        allow_private_targets: bool = False,
        timeout_s: float = 10.0,
        max_response_bytes: int = 64 * 1024,
        resolver: Resolver | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")
        self._client = client
        self._default = _webhooks(signing_secret, "the default signing secret")
        self._by_tenant = {
            tenant: _webhooks(secrets, f"tenant {tenant!r}'s signing secret")
            for tenant, secrets in (tenant_secrets or {}).items()
        }
        self._allow_private_targets = allow_private_targets
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._resolve: Resolver = resolver or ssrf.resolve_addresses

    def __repr__(self) -> str:
        return (
            f"CallbackSender(allow_private_targets={self._allow_private_targets}, "
            f"timeout_s={self._timeout_s}, max_response_bytes={self._max_response_bytes})"
        )

    def sign(
        self, *, message_id: str, payload: bytes, timestamp_s: int, tenant: str | None = None
    ) -> dict[str, str]:
        """Return the Standard Webhooks headers for `payload`, signed with `tenant`'s secrets.

        Raises:
            ValueError: `message_id` is not printable ASCII or `payload` is not UTF-8.
        """
        if not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError("message_id must be 1-256 printable ASCII characters, no spaces")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("payload must be UTF-8 encoded JSON") from None
        signed_at = datetime.fromtimestamp(timestamp_s, tz=UTC)
        webhooks = self._by_tenant.get(tenant, self._default) if tenant else self._default
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp_s),
            "webhook-signature": " ".join(
                webhook.sign(message_id, signed_at, text) for webhook in webhooks
            ),
        }

    async def send(
        self,
        url: str,
        *,
        message_id: str,
        payload: bytes,
        timestamp_s: int | None = None,
        tenant: str | None = None,
    ) -> DeliveryResult:
        """POST `payload` to `url`, signed, once; report what happened.

        `message_id` becomes `webhook-id`: pass the same id on every retry of one message.
        `timestamp_s` defaults to now (a retry should be signed afresh, not with the
        original time, or receivers enforcing the 5-minute tolerance will reject it).
        `tenant` picks the signing secrets (see the class).

        Never raises for anything the target does (refusal, DNS, transport, status).

        Raises:
            ValueError: `message_id` or `payload` is malformed (a caller bug).
        """
        if timestamp_s is None:
            timestamp_s = int(time.time())
        signature_headers = self.sign(
            message_id=message_id, payload=payload, timestamp_s=timestamp_s, tenant=tenant
        )
        try:
            target = ssrf.parse_target(url, allow_private_targets=self._allow_private_targets)
        except ssrf.UnsafeTarget as exc:
            return _failed(f"callback URL refused: {exc}", retryable=False)

        loop = asyncio.get_running_loop()
        # One deadline for the whole delivery: httpx's timeouts are per phase and per read,
        # so a receiver dripping one byte at a time could otherwise hold us indefinitely.
        deadline = loop.time() + self._timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                addresses = list(await self._resolve(target.host, target.port))
            if not addresses:
                raise ssrf.ResolutionFailed("resolved to no addresses", rule="dns")
            if not self._allow_private_targets:
                ssrf.check_addresses(target.host, addresses)
        except TimeoutError:
            return _failed("timed out resolving the callback host", retryable=True)
        except ssrf.ResolutionFailed:
            return _failed("callback host did not resolve", retryable=True)
        except ssrf.UnsafeTarget as exc:
            # Operators get the address; the client only the rule, so the detail cannot be
            # used to map which names resolve to which internal addresses.
            logger.warning("callback %s refused: %s", message_id, exc)
            detail = f"callback host resolves to a forbidden address ({exc.rule})"
            return _failed(detail, retryable=False)

        headers = {
            **signature_headers,
            "host": target.host_header,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            # Raw bytes are only counted, never decoded, so no decompression bomb either way.
            "accept-encoding": "identity",
        }
        if target.is_https:
            # The pool keys connections by origin, which is now the IP: a kept-alive TLS
            # connection verified for another name on the same IP must never be reused.
            headers["connection"] = "close"
        result = _failed("no address to connect to", retryable=True)
        for ip in addresses:
            result, connected = await self._post(target, ip, headers, payload, deadline)
            # Only a connection that never opened is safe to retry on the next address:
            # once bytes were sent the receiver may have acted on them.
            if connected:
                break
        return result

    async def _post(
        self,
        target: ssrf.Target,
        ip: ssrf.IPAddress,
        headers: dict[str, str],
        payload: bytes,
        deadline: float,
    ) -> tuple[DeliveryResult, bool]:
        extensions: dict[str, object] = {"timeout": httpx.Timeout(self._timeout_s).as_dict()}
        if target.is_https and target.literal is None:
            extensions["sni_hostname"] = target.host.removesuffix(".")
        request = httpx.Request(
            "POST",
            target.url.copy_with(host=str(ip)),
            headers=headers,
            content=payload,
            extensions=extensions,
        )
        status: int | None = None
        retry_after: str | None = None
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.send(
                    request, stream=True, follow_redirects=False, auth=None
                )
                status = response.status_code
                retry_after = response.headers.get("retry-after")
                try:
                    await self._drain(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            if status is not None:  # the answer arrived; only draining the body timed out
                return _classify(status, retry_after), True
            connected = not isinstance(exc, httpx.ConnectTimeout)
            return _failed(_timeout_detail(exc, self._timeout_s), retryable=True), connected
        except httpx.ConnectError:
            detail = "could not connect (refused, unreachable or TLS failure)"
            return _failed(detail, retryable=True), False
        except httpx.HTTPError as exc:
            if status is not None:
                return _classify(status, retry_after), True
            return _failed(_transport_detail(exc), retryable=True), True
        return _classify(status, retry_after), True

    async def _drain(self, response: httpx.Response) -> None:
        # Read (raw, undecoded) up to the cap so a small body lets the connection be reused;
        # beyond it, stop and let aclose() drop the connection. Nothing is kept.
        received = 0
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received >= self._max_response_bytes:
                break


def decode_signing_secret(signing_secret: str) -> bytes:
    """The key bytes of a `whsec_…` secret; ValueError if it is malformed or too short."""
    # Stricter than `Webhook`, which silently drops non-base64 characters: a mangled secret
    # must fail at start-up, not produce signatures no receiver can verify.
    if not signing_secret.startswith(SECRET_PREFIX):
        raise ValueError(f"signing secret must have the form {SECRET_PREFIX}<base64>")
    encoded = signing_secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"signing secret after {SECRET_PREFIX} is not valid base64") from None
    # The spec recommends 24 to 64 random bytes; less is guessable, more buys nothing.
    if len(key) < 24:
        raise ValueError("signing secret must decode to at least 24 bytes")
    return key


def _webhooks(secrets: str | Sequence[str], what: str) -> tuple[Webhook, ...]:
    listed = [secrets] if isinstance(secrets, str) else list(secrets)
    if not listed:
        raise ValueError(f"{what}: at least one secret is needed")
    webhooks = []
    for secret in listed:
        try:
            webhooks.append(Webhook(decode_signing_secret(secret)))
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    return tuple(webhooks)


def parse_retry_after(value: str | None, *, now_s: float | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now, capped at
    RETRY_AFTER_MAX_S; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    now = time.time() if now_s is None else now_s
    return min(max(moment.timestamp() - now, 0.0), RETRY_AFTER_MAX_S)


def _failed(detail: str, *, retryable: bool, status_code: int | None = None) -> DeliveryResult:
    return DeliveryResult(
        delivered=False, retryable=retryable, status_code=status_code, detail=detail
    )


def _classify(status: int, retry_after: str | None = None) -> DeliveryResult:
    if 200 <= status < 300:
        return DeliveryResult(
            delivered=True, retryable=False, status_code=status, detail=f"delivered (HTTP {status})"
        )
    if 300 <= status < 400:
        detail = f"receiver answered HTTP {status}; redirects are not followed"
        return _failed(detail, retryable=True, status_code=status)
    if status == 410:
        detail = "receiver answered HTTP 410 Gone: no more tries"
        return _failed(detail, retryable=False, status_code=status)
    detail = f"receiver answered HTTP {status}"
    if status in RETRY_AFTER_STATUSES:
        return DeliveryResult(
            delivered=False,
            retryable=True,
            status_code=status,
            detail=detail,
            retry_after_s=parse_retry_after(retry_after),
        )
    return _failed(detail, retryable=True, status_code=status)


def _timeout_detail(exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        phase = "connecting"
    elif isinstance(exc, httpx.WriteTimeout):
        phase = "sending the request"
    elif isinstance(exc, httpx.PoolTimeout):
        phase = "waiting for a free connection"
    else:  # ReadTimeout, or the overall deadline
        phase = "waiting for the response"
    return f"timed out {phase} (limit {timeout_s:g}s)"


def _transport_detail(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.RemoteProtocolError):
        return "receiver closed the connection or sent a malformed HTTP response"
    return f"transport error ({type(exc).__name__})"
