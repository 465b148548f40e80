"""Property tests: the guard never crashes on hostile input and reads IPs like the resolver."""

from __future__ import annotations

import contextlib
import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltxserve.net import BlockedAddress, FetchError, check_ip, parse_url
from ltxserve.net.guard import blocked_reason

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

URLISH = st.builds(
    lambda scheme, auth, rest: f"{scheme}{auth}{rest}",
    st.sampled_from(["http://", "https://", "HTTP://", "http:", "ftp://", "", "http:///", "https:\\\\"]),
    st.text(alphabet=st.sampled_from([*"0123456789abcdefx.:@[]%-_/\\?#", "ü", "１", "\x00"]), max_size=30),
    st.text(max_size=20),
)


@FAST
@given(st.one_of(st.text(max_size=200), URLISH))
def test_parse_url_only_raises_fetch_errors(text: str) -> None:
    try:
        parsed = parse_url(text)
    except FetchError:
        return
    # Whatever was accepted re-parses to itself: the canonical form is a fixed point.
    assert parse_url(parsed.url) == parsed
    assert parsed.scheme in ("http", "https")
    assert 1 <= parsed.port <= 65535


@FAST
@given(st.text(max_size=60))
def test_check_ip_only_raises_blocked_address(text: str) -> None:
    with contextlib.suppress(BlockedAddress):
        check_ip(text)


@FAST
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_ipv4_spelling_means_the_same_address(n: int) -> None:
    ip = ipaddress.IPv4Address(n)
    a, b, c, d = ip.packed
    spellings = [
        str(n),
        hex(n),
        "0" + oct(n)[2:] if n else "0",
        f"{a}.{b}.{c}.{d}",
        f"0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}",
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
    ]
    for host in spellings:
        parsed = parse_url(f"http://{host}/")
        assert parsed.ip == ip, host
        assert parsed.host == str(ip)


BLOCKED_NETS = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
]


@FAST
@given(st.sampled_from(BLOCKED_NETS), st.integers(min_value=0, max_value=2**32 - 1))
def test_blocked_ipv4_is_blocked_in_every_ipv6_wrapping(net: str, offset: int) -> None:
    network = ipaddress.IPv4Network(net)
    ip = network[offset % network.num_addresses]
    n = int(ip)
    for wrapped in [
        ip,
        ipaddress.IPv6Address((0xFFFF << 32) | n),  # ::ffff:a.b.c.d
        ipaddress.IPv6Address(n),  # ::a.b.c.d
        ipaddress.IPv6Address((0x64FF9B << 96) | n),  # 64:ff9b::a.b.c.d
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80)),  # 6to4
    ]:
        assert blocked_reason(wrapped) is not None, wrapped
