"""URL parsing, address policy and resolution of the SSRF guard (no network)."""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest

from ltxserve.net import (
    BlockedAddress,
    DnsError,
    InvalidUrl,
    check_ip,
    check_url,
    parse_networks,
    parse_url,
    resolve,
)
from ltxserve.net.guard import parse_ipv4_loose
from tests.net.conftest import fake_dns


@pytest.mark.parametrize(
    ("url", "canonical", "ip"),
    [
        ("http://example.com", "http://example.com/", None),
        ("HTTPS://Example.COM:443/a/../b?q=1#frag", "https://example.com/b?q=1", None),
        ("http://example.com:8080/x%20y", "http://example.com:8080/x%20y", None),
        ("http://münchen.de/ä", "http://xn--mnchen-3ya.de/%C3%A4", None),
        ("http://a_b.example.com/", "http://a_b.example.com/", None),
        ("http://2130706433/", "http://127.0.0.1/", "127.0.0.1"),
        ("http://0177.0.0.1/", "http://127.0.0.1/", "127.0.0.1"),
        ("http://0x7f.1/", "http://127.0.0.1/", "127.0.0.1"),
        ("http://0X7F000001:81/", "http://127.0.0.1:81/", "127.0.0.1"),
        ("http://017700000001/", "http://127.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "http://127.0.0.1/", "127.0.0.1"),
        ("http://127.0.0.1./", "http://127.0.0.1/", "127.0.0.1"),
        ("http://10.1/", "http://10.0.0.1/", "10.0.0.1"),
        ("http://0/", "http://0.0.0.0/", "0.0.0.0"),
        ("http://[::1]:8080/", "http://[::1]:8080/", "::1"),
        ("http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "::ffff:7f00:1"),
        ("http://[2606:4700:4700:0::1111]/", "http://[2606:4700:4700::1111]/", "2606:4700:4700::1111"),
    ],
)
def test_parse_url_canonicalises(url: str, canonical: str, ip: str | None) -> None:
    parsed = parse_url(url)
    assert parsed.url == canonical
    assert parsed.ip == (ipaddress.ip_address(ip) if ip else None)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "only http"),
        ("gopher://127.0.0.1:70/_HELO", "only http"),
        ("ftp://example.com/x", "only http"),
        ("javascript:alert(1)", "only http"),
        ("data:image/png;base64,AAAA", "only http"),
        ("//example.com/x", "must start with"),
        ("example.com/x", "must start with"),
        ("http:example.com", "no host"),
        ("http:/\\example.com", "no host"),
        ("http://", "no host"),
        ("http://:80/", "no host"),
        ("http://user@example.com/", "user name"),
        ("http://user:pass@example.com/", "user name"),
        ("http://example.com\\@127.0.0.1/", "user name"),
        ("http://evil.com\\.example.com/", "backslash"),
        ("http://example.com:0/", "out of range"),
        ("http://example.com:70000/", "port"),
        ("http://example.com:25/", "not allowed"),
        ("http://example.com:6379x/", "malformed"),
        ("http://ex ample.com/", "whitespace"),
        ("http://example.com/\n", "whitespace"),
        ("http://1.2.3.4.5/", "looks like an IPv4"),
        ("http://256.0.0.1/", "looks like an IPv4"),
        ("http://09.0.0.1/", "looks like an IPv4"),
        ("http://%31%32%37.0.0.1/", "looks like an IPv4"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://-bad-.example.com/", "not a valid host"),
        ("http://exa%6dple.com/", "not a valid host"),
        ("http://" + "a" * 8200 + ".com/", "longer than"),
    ],
)
def test_parse_url_refuses(url: str, why: str) -> None:
    with pytest.raises(InvalidUrl, match=why):
        parse_url(url)


BLOCKED = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.168.0.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::8.8.8.8",  # deprecated IPv4-compatible, whatever it carries
    "::ffff:0:7f00:1",  # IPv4-translated
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",
    "3fff::1",
    "100::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "5f00::1",
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",  # the kernel connects to 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8 (DNS64 networks)
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("ip", BLOCKED)
def test_check_ip_blocks(ip: str) -> None:
    with pytest.raises(BlockedAddress, match="only public addresses"):
        check_ip(ip)
    with pytest.raises(BlockedAddress):
        check_ip(ipaddress.ip_address(ip), [])


@pytest.mark.parametrize("ip", PUBLIC)
def test_check_ip_allows_public(ip: str) -> None:
    check_ip(ip)


def test_allow_list() -> None:
    allow = parse_networks(["127.0.0.1/32", "10.1.0.0/16", "fd00::/8"])
    check_ip("127.0.0.1", allow)
    check_ip("::ffff:127.0.0.1", allow)  # mapped form of an allowed IPv4
    check_ip("10.1.200.3", allow)
    check_ip("fd00::5", allow)
    for ip in ["127.0.0.2", "10.2.0.1", "169.254.169.254", "::1", "64:ff9b::7f00:1"]:
        with pytest.raises(BlockedAddress):
            check_ip(ip, allow)


def test_check_ip_refuses_non_addresses() -> None:
    with pytest.raises(BlockedAddress, match="not an IP address"):
        check_ip("localhost")


def test_parse_networks() -> None:
    assert parse_networks(["10.0.0.1/8", " ::1 "]) == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
    with pytest.raises(ValueError, match="does not appear"):
        parse_networks(["nope"])


def test_check_url_checks_literals_without_dns() -> None:
    assert check_url("https://hooks.example.com/x").host == "hooks.example.com"
    with pytest.raises(BlockedAddress):
        check_url("http://0x0a000001/")
    assert check_url("http://10.0.0.1/", parse_networks(["10.0.0.0/8"])).ip is not None


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        ("1", "0.0.0.1"),
        ("0x", "0.0.0.0"),
        ("4294967295", "255.255.255.255"),
        ("0xffffffff", "255.255.255.255"),
        ("1.0x10.010", "1.16.0.8"),
        ("192.168.257", "192.168.1.1"),
    ],
)
def test_parse_ipv4_loose(host: str, ip: str) -> None:
    assert parse_ipv4_loose(host) == ipaddress.IPv4Address(ip)


@pytest.mark.parametrize("host", ["4294967296", "1.2.3.256", "0x100000000", "1..2", "1.2.3.4.5", "08"])
def test_parse_ipv4_loose_invalid(host: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_ipv4_loose(host)


@pytest.mark.parametrize("host", ["example.com", "1.example", "1a", "xn--80ak6aa92e.com", "0xg"])
def test_parse_ipv4_loose_names(host: str) -> None:
    assert parse_ipv4_loose(host) is None


async def test_resolve_checks_every_answer() -> None:
    dns = fake_dns(
        {
            "public.example.test": ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"],
            "mixed.example.test": ["93.184.216.34", "10.0.0.1"],
            "garbage.example.test": ["not-an-ip"],
            "empty.example.test": [],
        }
    )
    assert await resolve("public.example.test", 80, resolver=dns) == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:2800:220:1::1"),
    ]
    with pytest.raises(
        BlockedAddress, match=re.escape("mixed.example.test resolves to 10.0.0.1, which is a private")
    ):
        await resolve("mixed.example.test", 80, resolver=dns)
    with pytest.raises(DnsError, match="not an address"):
        await resolve("garbage.example.test", 80, resolver=dns)
    with pytest.raises(DnsError, match="no addresses"):
        await resolve("empty.example.test", 80, resolver=dns)
    with pytest.raises(DnsError, match="could not resolve"):
        await resolve("missing.example.test", 80, resolver=dns)


async def test_resolve_literals_never_ask_dns() -> None:
    async def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("DNS asked for a literal")

    assert await resolve("8.8.8.8", 80, resolver=no_dns) == [ipaddress.ip_address("8.8.8.8")]
    assert await resolve("2606:4700:4700::1111", 80, resolver=no_dns) == [
        ipaddress.ip_address("2606:4700:4700::1111")
    ]
    with pytest.raises(BlockedAddress):
        await resolve("127.0.0.1", 80, resolver=no_dns)


async def test_resolve_uses_the_system_resolver_for_localhost() -> None:
    with pytest.raises(BlockedAddress, match="localhost resolves to"):
        await resolve("localhost", 80)


async def test_resolve_maps_os_errors() -> None:
    async def broken(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(DnsError, match="Temporary failure"):
        await resolve("x.example.test", 80, resolver=broken)
