"""Deciding whether a client-supplied callback URL may be contacted (SSRF defence).

Callback URLs come from clients and are hostile input: without these checks a client could
make the worker POST to the cloud metadata service, to Redis, or to anything else on the
private network it runs in. Three layers, each cheap enough to run on every delivery:

1. `check_url_syntax` (no DNS, used at intake and again before each delivery): http(s)
   only, a host, no userinfo, no literal address in a forbidden range in any spelling, no
   name that only ever means "this machine or this network" (`localhost`, `*.local`, …).
2. `resolve_public_addresses`: resolve the host through the event loop and refuse the
   target if *any* answer is forbidden (one private answer is enough to be steered to it).
3. The caller then connects to an address that was checked, never to the name again, so a
   DNS answer that changes between check and connect (DNS rebinding) cannot bypass 2.

Errors::

    UnsafeTarget                 the target must not be contacted (message says why)
     └── ResolutionFailed        the host did not resolve; may be temporary

`is_forbidden_address` covers IPv4 and IPv6, including IPv6 forms that carry an IPv4
address (mapped, NAT64, 6to4, Teredo), which are judged by the address they carry. It uses
an explicit table rather than `ipaddress`'s `is_global`/`is_private` alone, because those
properties changed meaning across Python patch releases; the stdlib flags are still
consulted as a second opinion so nothing they consider special slips through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# IANA special-purpose registries (RFC 6890 and successors) plus multicast and class E.
_FORBIDDEN_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified / 'this network'"),
    (_V4("10.0.0.0/8"), "private network"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT shared space"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (includes cloud metadata 169.254.169.254)"),
    (_V4("172.16.0.0/12"), "private network"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments"),
    (_V4("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private network"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (_V4("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved / broadcast"),
)

_FORBIDDEN_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    # Deprecated IPv4-compatible form (::a.b.c.d); never a legitimate destination.
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("::ffff:0:0:0/96"), "IPv4-translated (SIIT)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "SRv6 segment identifiers"),
    (_V6("fc00::/7"), "unique-local"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)

_NAT64_WELL_KNOWN = _V6("64:ff9b::/96")

# Names that by definition mean this host or a private network, whatever DNS says.
_FORBIDDEN_NAMES = frozenset({"localhost", "localhost.localdomain"})
_FORBIDDEN_SUFFIXES = (
    ".localhost",  # RFC 6761: always loopback
    ".local",  # RFC 6762: multicast DNS on the local link (also Kubernetes *.cluster.local)
    ".internal",  # ICANN private-use TLD; e.g. metadata.google.internal
    ".home.arpa",  # RFC 8375: home networks
    ".localdomain",
)

# WHATWG URL: a host whose last label is numeric is an IPv4 address, written in any of the
# forms inet_aton accepts (2130706433, 0x7f000001, 0177.0.0.1, 127.1, …).
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
# Characters that different URL parsers disagree about; refusing them removes the ambiguity.
_AMBIGUOUS_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


_MAX_PORT = 65535
_FAST_PATH_MAX_CHARS = 4096
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# check_url_syntax's fast path: a lowercase http(s) scheme; a host that is a canonical
# dotted-quad IPv4 address or a lowercase name whose last label starts with a letter (so
# never a numeric form); a port without leading zeros; then RFC 3986 characters only.
# Anything else takes the full parse.
_PLAIN_URL = re.compile(
    rf"https?://(?P<host>(?P<ipv4>{_OCTET}(?:\.{_OCTET}){{3}})"
    r"|(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z](?:[a-z0-9-]*[a-z0-9])?)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"(?:[/?#][A-Za-z0-9._~!$&'()*+,;=:@/?#%-]*)?"
)


class UnsafeTarget(Exception):
    """The callback target must not be contacted.

    The message names the rule and, where one is involved, the address; it never contains
    the full URL (whose query string may carry the client's own tokens) or any secret.
    """

    def __init__(self, message: str, *, rule: str, address: IPAddress | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.address = address


class ResolutionFailed(UnsafeTarget):
    """The host name did not resolve (or resolved to nothing).

    A subclass of UnsafeTarget so that a caller refusing on UnsafeTarget also refuses here,
    but distinct because a DNS failure is often temporary and worth retrying.
    """


@dataclass(frozen=True, slots=True)
class Target:
    """A callback URL that passed `check_url_syntax`, taken apart for connecting."""

    url: httpx.URL
    host: str  # ASCII (IDNA-encoded) host as written, without brackets
    port: int  # explicit or the scheme's default
    literal: IPAddress | None  # the address when the host is an IP literal

    @property
    def host_header(self) -> str:
        """The `Host` header value a request to the original URL would carry."""
        return self.url.netloc.decode("ascii")

    @property
    def is_https(self) -> bool:
        return self.url.scheme == "https"


def forbidden_reason(ip: IPAddress) -> str | None:
    """Return the rule that forbids `ip` as a callback destination, or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop any %scope: it does not change the range
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # The packet ends up at the IPv4 address, so that address decides.
            kind, carried = embedded
            for v4 in carried:
                reason = forbidden_reason(v4)
                if reason is not None:
                    return f"{kind} address embedding {v4} ({reason})"
            return None
        for v6net, rule in _FORBIDDEN_V6:
            if ip in v6net:
                return rule
    else:
        for v4net, rule in _FORBIDDEN_V4:
            if ip in v4net:
                return rule
    # Second opinion from the stdlib, for any range the tables above do not list.
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return "special-purpose address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "not globally routable"
    return None


def is_forbidden_address(ip: IPAddress) -> bool:
    """Whether `ip` is private, loopback, link-local, multicast, reserved or otherwise
    not a public unicast address (IPv6 forms embedding such an IPv4 address included)."""
    return forbidden_reason(ip) is not None


def _embedded_ipv4(
    ip: ipaddress.IPv6Address,
) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", (ip.ipv4_mapped,)
    if ip in _NAT64_WELL_KNOWN:
        return "NAT64", (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    if ip.sixtofour is not None:
        return "6to4", (ip.sixtofour,)
    if ip.teredo is not None:
        server, client = ip.teredo
        return "Teredo", (client, server)
    return None


def parse_target(url: str, *, allow_private_targets: bool = False) -> Target:
    """Check `url` without DNS and return it taken apart; see `check_url_syntax`."""
    if _AMBIGUOUS_CHARS.search(url):
        raise UnsafeTarget("URL contains whitespace, control characters or '\\'", rule="syntax")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeTarget(f"not a valid URL: {exc}", rule="syntax") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise UnsafeTarget("only http and https callback URLs are allowed", rule="scheme")
    _, _, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    # httpx reports an empty userinfo ("http://@host/") as b"", so look at the raw text too.
    if parsed.userinfo or "@" in authority:
        raise UnsafeTarget("credentials (userinfo) are not allowed in the URL", rule="userinfo")
    host = parsed.raw_host.decode("ascii").lower()
    if not host:
        raise UnsafeTarget("URL has no host", rule="syntax")
    if parsed.port == 0:
        raise UnsafeTarget("port 0 is not a valid destination", rule="port")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    literal = _literal_address(host)
    if not allow_private_targets:
        _check_host(host, literal)
    return Target(url=parsed, host=host, port=port, literal=literal)


def _check_host(host: str, literal: IPAddress | None) -> None:
    """Refuse a forbidden literal address, or a name that resolves locally by its form."""
    if literal is None:
        _check_name(host)
        return
    reason = forbidden_reason(literal)
    if reason is not None:
        raise UnsafeTarget(
            f"address {literal} is forbidden: {reason}", rule=reason, address=literal
        )


def check_url_syntax(url: str, *, allow_private_targets: bool = False) -> None:
    """Refuse a callback URL that is unsafe on its face, without any DNS lookup.

    Refuses: schemes other than http/https, a missing host, userinfo (`user:pw@`), port 0,
    whitespace/control characters/backslashes, IPv4 written in any non-canonical numeric
    form (decimal, hex, octal, short), IPv6 zone ids, and - unless `allow_private_targets`
    (local development only) - literal addresses `is_forbidden_address` rejects, single-label
    names (they resolve through local search domains) and `localhost`, `*.localhost`,
    `*.local`, `*.internal`, `*.home.arpa`, `*.localdomain`.

    Raises:
        UnsafeTarget: the URL must not be used; the message says which rule.
    """
    plain = _PLAIN_URL.fullmatch(url) if len(url) <= _FAST_PATH_MAX_CHARS else None
    if plain is None or int(plain.group("port") or 1) > _MAX_PORT:
        parse_target(url, allow_private_targets=allow_private_targets)
        return
    # The shape nearly every callback URL has, decided without building an httpx.URL (the
    # costliest step of intake validation): the same rules as parse_target, and for these
    # URLs the same outcome (tests/callbacks/test_ssrf.py holds the two paths together).
    if not allow_private_targets:
        host = plain.group("host")
        _check_host(host, ipaddress.IPv4Address(host) if plain.group("ipv4") else None)


def _literal_address(host: str) -> IPAddress | None:
    if ":" in host:  # only IPv6 literals contain ':' once the port is split off
        if "%" in host:
            raise UnsafeTarget("IPv6 zone identifiers are not allowed", rule="syntax")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UnsafeTarget("malformed IPv6 address", rule="syntax") from None
    bare = host.removesuffix(".")
    if not _NUMERIC_LABEL.fullmatch(bare.rsplit(".", 1)[-1]):
        return None
    try:
        ip = ipaddress.IPv4Address(bare)
    except ValueError:
        ip = None
    if ip is None or host != str(ip):
        # Other software (libc, browsers, proxies) reads these forms as addresses; a
        # legitimate callback never needs them, so they are refused whatever they denote.
        raise UnsafeTarget(
            f"non-canonical numeric IPv4 host {host!r}{_inet_aton_hint(bare)}",
            rule="numeric host",
        )
    return ip


def _inet_aton_hint(host: str) -> str:
    try:
        return f" (= {socket.inet_ntoa(socket.inet_aton(host))})"
    except OSError:
        return ""


def _check_name(host: str) -> None:
    name = host.removesuffix(".")
    if name in _FORBIDDEN_NAMES or name.endswith(_FORBIDDEN_SUFFIXES):
        raise UnsafeTarget(
            f"host {name!r} names this machine or a private network", rule="local name"
        )
    if "." not in name:
        raise UnsafeTarget(
            f"single-label host {name!r} would resolve through local search domains",
            rule="local name",
        )


async def resolve_addresses(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` through the running loop's getaddrinfo, without judging the answers.

    Returns the distinct addresses in resolver order; an IP literal is returned as is.

    Raises:
        ResolutionFailed: the name did not resolve or resolved to nothing.
    """
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ResolutionFailed(f"could not resolve {host!r}: {reason}", rule="dns") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # IPv6 sockaddrs may carry "%scope"; the scope does not change the range.
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise ResolutionFailed(f"{host!r} resolved to no addresses", rule="dns")
    return addresses


def check_addresses(host: str, addresses: list[IPAddress]) -> None:
    """Refuse `host` if any of its resolved `addresses` is forbidden.

    Raises:
        UnsafeTarget: naming the first forbidden address and its rule.
    """
    for ip in addresses:
        reason = forbidden_reason(ip)
        if reason is not None:
            raise UnsafeTarget(
                f"{host!r} resolves to forbidden address {ip}: {reason}", rule=reason, address=ip
            )


async def resolve_public_addresses(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` via the event loop and return its addresses if all of them are public.

    One forbidden answer refuses the whole name: an attacker who controls the name's DNS
    could otherwise arrange for the private answer to be the one used.

    Raises:
        ResolutionFailed: the name did not resolve.
        UnsafeTarget: some resolved address is forbidden.
    """
    addresses = await resolve_addresses(host, port)
    check_addresses(host, addresses)
    return addresses
