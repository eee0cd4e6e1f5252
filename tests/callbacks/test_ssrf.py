"""The SSRF rules: URL syntax, forbidden address ranges, and checking resolved names."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import pytest

from service.ssrf import (
    ResolutionFailed,
    UnsafeTarget,
    check_url_syntax,
    is_forbidden_address,
    parse_target,
    resolve_addresses,
    resolve_public_addresses,
)

# Teredo stores the client's IPv4 address bit-inverted: ~127.0.0.1 == 0x80fffffe.
TEREDO_EMBEDDING_LOOPBACK = "2001:0:4136:e378:8000:63bf:80ff:fffe"

FORBIDDEN_URLS = [
    # scheme, host, userinfo, syntax
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://example.com/",
    "example.com/hook",
    "http:///hook",
    "http://user:pw@example.com/hook",
    "http://@example.com/hook",
    "http://example.com\\@127.0.0.1/",
    "http://exa mple.com/",
    "http://example.com:0/",
    # IPv4 loopback in every spelling libc and browsers accept
    "http://127.0.0.1/",
    "http://127.0.0.1:6379/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7F.0.0.1/",
    "http://0177.0.0.1/",
    "http://0177.0.0.01/",
    "http://127.1/",
    "http://127.0.1/",
    "http://127.0.0.1./",
    "http://1.2.3.0x7f/",
    "http://0/",
    "http://0.0.0.0/",
    # other private and special IPv4 ranges
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://198.18.0.1/",
    "http://192.0.2.10/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    # IPv6
    "http://[::1]/",
    "http://[::]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    f"http://[{TEREDO_EMBEDDING_LOOPBACK}]/",
    "http://[fd00::1]/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    # names that always mean this machine or a private network
    "http://localhost/",
    "http://LOCALHOST:8000/",
    "http://localhost./",
    "http://api.localhost/",
    "http://printer.local/",
    "http://redis.default.svc.cluster.local/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://router.home.arpa/",
    "http://redis/",
    "http://metadata/",
]

ALLOWED_URLS = [
    "https://example.com/hook",
    "http://example.com/hook?token=abc#frag",
    "https://example.com:8443/hooks/vidhook",
    "https://EXAMPLE.com./hook",
    "https://münchen.example/hook",
    "http://8.8.8.8/",
    "https://1.1.1.1:443/hook",
    "https://[2606:4700::1111]/hook",
    "https://[2001:4860:4860::8888]:8443/",
    "https://[::ffff:8.8.8.8]/",
]

FORBIDDEN_ADDRESSES = [
    "0.0.0.0",
    "0.1.2.3",
    "10.1.2.3",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.255",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.0.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.251",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0:7f00:1",
    "64:ff9b::127.0.0.1",
    "64:ff9b::192.168.0.1",
    "64:ff9b:1::8.8.8.8",
    "100::1",
    "2001:db8::1",
    "2002:7f00:1::1",
    "2002:a9fe:a9fe::",
    "2002:c0a8:101::",
    TEREDO_EMBEDDING_LOOPBACK,
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd12:3456:789a::1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
]

ALLOWED_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.32.0.1",  # just above 172.16/12
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # mapped, NAT64 and 6to4 forms are judged by the IPv4 they carry
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_check_url_syntax_refuses_unsafe_urls(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_url_syntax(url)


@pytest.mark.parametrize("url", ALLOWED_URLS)
def test_check_url_syntax_accepts_public_urls(url: str) -> None:
    check_url_syntax(url)


@pytest.mark.parametrize("address", FORBIDDEN_ADDRESSES)
def test_is_forbidden_address_refuses_special_ranges(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED_ADDRESSES)
def test_is_forbidden_address_allows_public_unicast(address: str) -> None:
    assert not is_forbidden_address(ipaddress.ip_address(address))


def test_teredo_test_vector_really_embeds_loopback() -> None:
    teredo = ipaddress.IPv6Address(TEREDO_EMBEDDING_LOOPBACK).teredo
    assert teredo is not None
    assert teredo[1] == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://0x7f000001/", ["non-canonical", "127.0.0.1"]),
        ("http://[::ffff:a9fe:a9fe]/", ["169.254.169.254", "link-local"]),
        ("http://100.64.1.1/", ["100.64.1.1", "carrier-grade NAT"]),
        ("http://localhost/", ["localhost"]),
        ("http://u:p@example.com/", ["userinfo"]),
    ],
)
def test_refusal_message_says_which_address_and_rule(url: str, words: list[str]) -> None:
    with pytest.raises(UnsafeTarget) as caught:
        check_url_syntax(url)
    for word in words:
        assert word in str(caught.value)


def test_refusal_message_does_not_repeat_the_url_query() -> None:
    with pytest.raises(UnsafeTarget) as caught:
        check_url_syntax("http://10.0.0.1/hook?token=client-private-token")
    assert "client-private-token" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hook", "http://localhost:8000/", "http://[::1]/", "http://redis/"],
)
def test_private_targets_pass_syntax_check_when_allowed(url: str) -> None:
    check_url_syntax(url, allow_private_targets=True)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://localhost/",
        "http://user@localhost/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[fe80::1%25lo]/",
    ],
)
def test_allowing_private_targets_keeps_the_syntax_rules(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_url_syntax(url, allow_private_targets=True)


def test_localhost_resolving_to_loopback_is_refused() -> None:
    # "localhost" comes from /etc/hosts via the loop's getaddrinfo: no DNS traffic.
    with pytest.raises(UnsafeTarget) as caught:
        asyncio.run(resolve_public_addresses("localhost", 80))
    assert not isinstance(caught.value, ResolutionFailed)
    assert caught.value.address is not None
    assert caught.value.address.is_loopback
    assert "loopback" in str(caught.value)


def test_resolve_addresses_returns_the_answers_unjudged() -> None:
    addresses = asyncio.run(resolve_addresses("localhost", 80))
    assert ipaddress.ip_address("127.0.0.1") in addresses


def test_literal_addresses_are_judged_without_dns() -> None:
    assert asyncio.run(resolve_public_addresses("8.8.8.8", 443)) == [
        ipaddress.ip_address("8.8.8.8")
    ]
    with pytest.raises(UnsafeTarget):
        asyncio.run(resolve_public_addresses("::ffff:127.0.0.1", 443))


def _outcome(
    check: Callable[..., object], url: str, allow_private: bool
) -> tuple[str, str, str] | None:
    try:
        check(url, allow_private_targets=allow_private)
    except UnsafeTarget as exc:
        return (type(exc).__name__, exc.rule, str(exc))
    return None


_SCHEMES = ["http", "https", "HTTP", "ftp"]
_HOSTS = [
    "example.com", "app.example.com", "a-b.example.org", "example", "localhost",
    "printer.local", "svc.internal", "x.localhost", "Example.COM", "a.b-.com", "-a.com",
    "127.0.0.1", "10.0.0.1", "8.8.8.8", "169.254.169.254", "100.64.1.1", "255.255.255.255",
    "0.0.0.0", "1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "0x7f.1", "2130706433",
    "a.0x1f", "a.1", "xn--bcher-kva.example", "[::1]", "[2606:4700::1111]", "u@example.com",
    "",
]  # fmt: skip
_PORTS = ["", ":0", ":1", ":80", ":080", ":8712", ":65535", ":65536", ":99999", ":"]
_TAILS = [
    "", "/", "/hooks/veo?tenant=acme", "/a%zz", "/a@b", "?x=1#frag", "#f", "/a b", "/a\\b",
    "/p?q=http://10.0.0.1/", "/ü", "/%2e%2e/", "/a;b=c,d!$&'()*+",
]  # fmt: skip


@pytest.mark.parametrize("allow_private", [False, True])
def test_check_url_syntax_fast_path_agrees_with_the_full_parse(allow_private: bool) -> None:
    # check_url_syntax decides common-shaped URLs without httpx; every outcome (accepted, or
    # the same refusal, rule and message) must be the one parse_target gives.
    for scheme in _SCHEMES:
        for host in _HOSTS:
            for port in _PORTS:
                for tail in _TAILS:
                    url = f"{scheme}://{host}{port}{tail}"
                    fast = _outcome(check_url_syntax, url, allow_private)
                    full = _outcome(parse_target, url, allow_private)
                    assert fast == full, url
