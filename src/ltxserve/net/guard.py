"""Which URLs and addresses ltxserve may send requests to (SSRF guard).

Client-supplied URLs (``frameImages``/``imageUpload`` image URLs, ``webhookURL``,
``uploadEndpoint``) are hostile: without a guard a client could make the server read cloud
metadata (169.254.169.254), an admin port on localhost, or anything on the private network.

The guard works in three steps, all in this module:

1. :func:`parse_url` accepts only ``http``/``https`` URLs with a host, a usable port and no
   userinfo, and canonicalises every spelling the system resolver would read as an IPv4
   address (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) into the address itself, so
   those are checked as IPs and never sent to DNS.
2. :func:`resolve` looks a host name up *once* and checks *every* answer: one private address in
   an answer refuses the whole name, which defeats DNS answers mixing public and private IPs.
3. :func:`check_ip` refuses everything that is not a public unicast address (table below),
   unwrapping IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4), unless the
   operator allow-listed a network containing it.

The client (``client.py``) then connects to exactly the checked address, so a DNS answer that
changes between check and connect (rebinding) cannot redirect the request.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import httpx

from ltxserve.net.errors import BlockedAddress, DnsError, InvalidUrl

__all__ = [
    "BAD_PORTS",
    "BlockedAddress",
    "IPAddress",
    "IPNetwork",
    "ParsedUrl",
    "Resolver",
    "blocked_reason",
    "check_ip",
    "check_url",
    "parse_networks",
    "parse_url",
    "resolve",
    "system_lookup",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> address strings``: the edge of the world, replaceable in tests."""

MAX_URL_LENGTH = 8192
"""Long enough for presigned S3/GCS URLs (~1-2 KiB), short enough to bound the work."""

DEFAULT_PORTS = {"http": 80, "https": 443}

BAD_PORTS = frozenset(
    {
        # The Fetch standard's "bad ports": services that can be abused by text sent over
        # HTTP (SMTP spam, IRC, ...). Browsers refuse them; so do we, even on public hosts.
        *(1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95),
        *(101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161),
        *(179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563),
        *(587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060),
        *(5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080),
    }
)

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, what it is). Explicit tables rather than ``ipaddress``'s is_private/is_global alone:
# those flags changed between Python versions (3.11 vs 3.13), and the policy must not.
_BLOCKED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "an unspecified/'this network' address"),
    (_V4("10.0.0.0/8"), "a private address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT (shared) address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("169.254.0.0/16"), "a link-local address (cloud metadata lives here)"),
    (_V4("172.16.0.0/12"), "a private address"),
    (_V4("192.0.0.0/24"), "an IETF protocol-assignment address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("192.88.99.0/24"), "a deprecated 6to4 relay address"),
    (_V4("192.168.0.0/16"), "a private address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved/broadcast address"),
)

_MAPPED = _V6("::ffff:0:0/96")  # IPv4-mapped: the kernel connects to the IPv4 address
_COMPATIBLE = _V6("::/96")  # deprecated IPv4-compatible (also holds :: and ::1)
_NAT64 = _V6("64:ff9b::/96")  # well-known NAT64 prefix: a gateway reaches the embedded IPv4
_SIX_TO_FOUR = _V6("2002::/16")  # 6to4: bits 16..48 are an IPv4 address
_TEREDO = _V6("2001::/32")

_BLOCKED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "the unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_COMPATIBLE, "a deprecated IPv4-compatible address"),
    (_V6("::ffff:0:0:0/96"), "an IPv4-translated (SIIT) address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("100::/64"), "a discard-only address"),
    (_TEREDO, "a Teredo tunnel address"),
    (_V6("2001::/23"), "an IETF protocol-assignment address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("5f00::/16"), "a segment-routing (SRv6) address"),
    (_V6("fc00::/7"), "a unique-local (private) address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a deprecated site-local address"),
    (_V6("ff00::/8"), "a multicast address"),
)


def _v4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for net, what in _BLOCKED_V4:
        if ip in net:
            return what
    # Belt and braces: anything Python also considers non-public is refused too.
    if ip.is_private or ip.is_reserved or ip.is_multicast or not ip.is_global:
        return "not a public address"
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address a transition-format IPv6 address carries, with the format's name."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip.teredo is not None:
        return ip.teredo[1], "Teredo"
    if ip in _COMPATIBLE and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-compatible"
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be reached (ignoring any allow-list), or None when it is public."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip)
    embedded = _embedded_v4(ip)
    if embedded is not None:
        v4, form = embedded
        inner = _v4_reason(v4)
        if inner is not None:
            return f"an IPv6 form ({form}) of {v4}, which is {inner}"
        if form in ("IPv4-mapped", "NAT64", "6to4"):
            # These reach the (public) IPv4 address itself: the kernel for mapped, a gateway
            # for NAT64 (DNS64 networks answer such addresses) and 6to4 relays.
            return None
    for net, what in _BLOCKED_V6:
        if ip in net:
            return what
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_site_local or not ip.is_global:
        return "not a public address"
    return None


def parse_networks(networks: Iterable[str | IPNetwork]) -> list[IPNetwork]:
    """Operator CIDR strings -> networks. Host bits are tolerated (``10.0.0.1/8`` = 10/8)."""
    out: list[IPNetwork] = []
    for net in networks:
        if isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
            out.append(net)
        else:
            out.append(ipaddress.ip_network(net.strip(), strict=False))
    return out


def _allowed(ip: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    if any(ip in net for net in allow):
        return True
    # ::ffff:a.b.c.d reaches a.b.c.d, so an allow-listed IPv4 network covers its mapped form.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return any(ip.ipv4_mapped in net for net in allow)
    return False


def check_ip(ip: IPAddress | str, allow: Sequence[IPNetwork] = ()) -> None:
    """Raise :class:`BlockedAddress` unless ``ip`` is public or inside an allow-listed network.

    Anything that cannot be read as an IP address is refused too (fail closed).
    """
    if isinstance(ip, str):
        text = ip
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise BlockedAddress(f"{text[:100]!r} is not an IP address") from None
    reason = _refusal(ip, allow)
    if reason is not None:
        raise BlockedAddress(f"{ip} is {reason}; {_POLICY}")


_POLICY = "only public addresses may be reached"


def _refusal(ip: IPAddress, allow: Sequence[IPNetwork]) -> str | None:
    return None if _allowed(ip, allow) else blocked_reason(ip)


# --- URLs ---------------------------------------------------------------------------------------

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_HEX_PART = re.compile(r"^0[xX][0-9a-fA-F]*$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A URL the guard accepted, in canonical form.

    ``host`` is a lower-case ASCII (IDNA) host name, or the canonical text of an IP address
    (no brackets) whatever odd spelling the client used; ``ip`` is set exactly when the host is
    an IP literal, so it is checked without DNS. ``target`` is path plus query ("/" at least);
    the fragment is dropped (it is never sent).
    """

    scheme: Literal["http", "https"]
    host: str
    port: int
    target: str
    ip: IPAddress | None = None

    @property
    def netloc(self) -> str:
        """``host[:port]`` as it goes into the URL and the Host header (port only if non-default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The canonical URL string; this, not the client's spelling, is what gets requested."""
        return f"{self.scheme}://{self.netloc}{self.target}"

    def __str__(self) -> str:
        return self.url


def _ends_in_number(host: str) -> bool:
    """WHATWG URL "ends in a number": such hosts are IPv4 addresses, never DNS names."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    return bool(last) and ((last.isascii() and last.isdigit()) or bool(_HEX_PART.match(last)))


def _ipv4_number(part: str) -> int:
    if part == "":
        raise ValueError("empty part")
    if _HEX_PART.match(part):
        return int(part[2:], 16) if len(part) > 2 else 0
    if not (part.isascii() and part.isdigit()):
        raise ValueError(f"{part!r} is not a number")
    if len(part) > 1 and part[0] == "0":
        return int(part[1:], 8)  # raises ValueError for 8/9: inet_aton refuses those too
    return int(part)


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``host`` denotes under inet_aton/WHATWG rules, or None if it is a name.

    ``2130706433``, ``0x7f000001``, ``017700000001``, ``0177.0.0.1``, ``0x7f.1`` and ``127.1``
    all denote 127.0.0.1: the system resolver accepts them, so the guard must too.
    Raises ValueError for hosts that end in a number but are no valid address (``1.2.3.4.5``).
    """
    if not _ends_in_number(host):
        return None
    parts = host.split(".")
    if parts[-1] == "":
        parts.pop()
    if len(parts) > 4:
        raise ValueError("too many parts for an IPv4 address")
    numbers = [_ipv4_number(p) for p in parts]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise ValueError("IPv4 address part out of range")
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_url(url: str) -> ParsedUrl:
    """Parse and canonicalise a client-supplied URL, or raise :class:`InvalidUrl`.

    Accepted: ``http``/``https`` with a host (DNS name or IP literal in any spelling), a port in
    1..65535 that is not a browser "bad port", and no ``user:pass@``. Odd IPv4 spellings are
    turned into the address they denote. Nothing is resolved or checked against the block list
    here (see :func:`check_url` and :func:`resolve`); this only decides what the URL *means*.
    """
    if not isinstance(url, str):
        raise InvalidUrl("the URL must be a string")
    shown = url if len(url) <= 200 else url[:200] + "..."
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"the URL is longer than {MAX_URL_LENGTH} characters", url=shown)
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidUrl("the URL contains whitespace or control characters", url=shown)
    match = _SCHEME.match(url)
    if match is None:
        raise InvalidUrl("the URL must start with http:// or https://", url=shown)
    scheme = match.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidUrl(f"only http:// and https:// URLs are supported, not {scheme}:", url=shown)
    rest = url[len(scheme) + 1 :]
    if not rest.startswith("//"):
        raise InvalidUrl("the URL has no host (expected http://host/...)", url=shown)
    authority = re.match(r"[^/?#]*", rest[2:])
    assert authority is not None  # the pattern matches the empty string
    netloc = authority.group(0)
    if "@" in netloc:
        raise InvalidUrl("URLs with a user name or password (user@host) are not accepted", url=shown)
    if "\\" in netloc:
        raise InvalidUrl("the URL's host part contains a backslash", url=shown)

    # Odd IPv4 spellings first: httpx (rightly) refuses "0177.0.0.1", but the system resolver
    # would accept it, so read it the resolver's way and put the canonical address in its place.
    ip: IPAddress | None = None
    if not netloc.startswith("["):
        host_text, colon, port_text = netloc.partition(":")
        try:
            ip = parse_ipv4_loose(host_text.lower())
        except ValueError as exc:
            raise InvalidUrl(
                f"host {host_text[:100]!r} looks like an IPv4 address but is not: {exc}", url=shown
            ) from None
        if ip is not None:
            after = rest[2 + len(netloc) :]
            url = f"{scheme}://{ip}{colon}{port_text}{after}"

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:  # UnicodeError/IDNAError are ValueErrors
        raise InvalidUrl(f"the URL is malformed: {exc}", url=shown) from None
    if parsed.scheme not in DEFAULT_PORTS or parsed.userinfo:  # pragma: no cover - checked above
        raise InvalidUrl("the URL is malformed", url=shown)
    try:
        raw_host = parsed.raw_host.decode("ascii").lower()
    except UnicodeDecodeError:  # pragma: no cover - httpx IDNA-encodes
        raise InvalidUrl("the URL's host is not valid", url=shown) from None
    if not raw_host:
        raise InvalidUrl("the URL has no host", url=shown)

    if ip is not None:
        pass
    elif ":" in raw_host:  # only bracketed IPv6 literals get here
        if "%" in raw_host:
            raise InvalidUrl("IPv6 zone identifiers (%...) are not accepted", url=shown)
        try:
            ip = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise InvalidUrl(f"{raw_host!r} is not a valid IPv6 address", url=shown) from None
    else:
        name = raw_host[:-1] if raw_host.endswith(".") else raw_host
        if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
            raise InvalidUrl(f"{raw_host[:100]!r} is not a valid host name", url=shown)
        if parse_ipv4_loose(name) is not None:  # pragma: no cover - handled before httpx
            raise InvalidUrl(f"{raw_host!r} is an IP address in disguise", url=shown)
    host = str(ip) if ip is not None else raw_host

    try:
        port = parsed.port if parsed.port is not None else DEFAULT_PORTS[parsed.scheme]
    except (httpx.InvalidURL, ValueError):  # pragma: no cover - httpx validates at parse
        raise InvalidUrl("the URL's port is not valid", url=shown) from None
    if not 1 <= port <= 65535:
        raise InvalidUrl(f"port {port} is out of range (1-65535)", url=shown)
    if port in BAD_PORTS:
        raise InvalidUrl(f"port {port} is not allowed for HTTP requests", url=shown)

    target = parsed.raw_path.decode("ascii") or "/"
    scheme_lit: Literal["http", "https"] = "https" if parsed.scheme == "https" else "http"
    return ParsedUrl(scheme=scheme_lit, host=host, port=port, target=target, ip=ip)


def check_url(url: str | ParsedUrl, allow: Sequence[IPNetwork] = ()) -> ParsedUrl:
    """Parse ``url`` and, when its host is an IP literal, check it; no DNS lookup.

    Meant for validation at submission time (a ``webhookURL`` of ``http://10.0.0.1/`` can be
    refused before the task is accepted). Names are checked only when a request is made.
    """
    parsed = url if isinstance(url, ParsedUrl) else parse_url(url)
    if parsed.ip is not None:
        check_ip(parsed.ip, allow)
    return parsed


# --- DNS ----------------------------------------------------------------------------------------


_DNS_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ltxserve-dns")
"""getaddrinfo blocks a thread until the OS resolver gives up (often 10-30 s for a name whose
DNS server never answers). ``loop.getaddrinfo`` would use the loop's default executor, shared
with every ``asyncio.to_thread`` of the server (image decoding, ...), so hostile names could
starve it; this pool confines them. Our own timeout still bounds every caller."""


async def system_lookup(host: str, port: int) -> list[str]:
    """Addresses the operating system's resolver gives for ``host`` (what ``loop.getaddrinfo``
    does, on a dedicated thread pool).

    The only place ltxserve asks DNS; tests replace it (``monkeypatch.setattr(guard,
    "system_lookup", ...)``) or pass their own resolver to :class:`SafeHttpClient`.
    """
    loop = asyncio.get_running_loop()
    lookup = functools.partial(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    infos = await loop.run_in_executor(_DNS_THREADS, lookup)
    return [str(info[4][0]) for info in infos]


async def resolve(
    host: str,
    port: int,
    allow: Sequence[IPNetwork] = (),
    *,
    resolver: Resolver | None = None,
    timeout_s: float | None = None,
) -> list[IPAddress]:
    """Resolve ``host`` once and return its addresses, all of them checked.

    Refuses the host if *any* answer is blocked: a name answering both a public and a private
    address could otherwise be used to reach the private one. IP literals (in any spelling) are
    checked without asking DNS. The lookup is bounded by ``timeout_s``.
    """
    literal: IPAddress | None = parse_ipv4_loose(host) if ":" not in host else None
    if literal is None and ":" in host:
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise DnsError(f"{host!r} is not a valid IPv6 address") from None
    if literal is not None:
        check_ip(literal, allow)
        return [literal]

    lookup = resolver if resolver is not None else system_lookup
    try:
        async with asyncio.timeout(timeout_s):
            answers = await lookup(host, port)
    except TimeoutError:
        raise DnsError(f"looking up host {host} took longer than {timeout_s:g}s") from None
    except socket.gaierror as exc:
        raise DnsError(f"could not resolve host {host}: {exc.strerror or exc}") from None
    except (OSError, UnicodeError) as exc:
        raise DnsError(f"could not resolve host {host}: {exc}") from None

    ips: list[IPAddress] = []
    for answer in answers:
        try:
            addr = ipaddress.ip_address(answer)
        except ValueError:
            raise DnsError(f"host {host} resolved to something that is not an address") from None
        if addr not in ips:
            ips.append(addr)
    if not ips:
        raise DnsError(f"host {host} has no addresses")
    for addr in ips:
        reason = _refusal(addr, allow)
        if reason is not None:
            raise BlockedAddress(f"host {host} resolves to {addr}, which is {reason}; {_POLICY}")
    return ips
