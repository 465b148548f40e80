"""The SSRF table: with no allow-list, every one of these is refused and nothing is contacted.

A live image server listens on 127.0.0.1 and the URLs point at its port wherever that makes
sense, so a guard gap would show up as a successful fetch (and a recorded request), not as a
coincidental connection error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest

from ltxserve.net import BlockedAddress, FetchError, InvalidUrl, SafeHttpClient, guard
from tests.net.conftest import RawServer, ServerFactory, respond

P = "{port}"

CASES: list[tuple[str, type[FetchError]]] = [
    (f"http://127.0.0.1:{P}/img.png", BlockedAddress),
    (f"http://127.0.0.2:{P}/img.png", BlockedAddress),
    (f"http://10.0.0.1:{P}/", BlockedAddress),
    (f"http://172.16.0.1:{P}/", BlockedAddress),
    (f"http://172.31.255.254:{P}/", BlockedAddress),
    (f"http://192.168.1.1:{P}/", BlockedAddress),
    (f"http://100.64.0.1:{P}/", BlockedAddress),
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", BlockedAddress),
    ("http://[fd00:ec2::254]/latest/meta-data/", BlockedAddress),
    (f"http://0.0.0.0:{P}/", BlockedAddress),
    (f"http://0:{P}/", BlockedAddress),
    (f"http://[::]:{P}/", BlockedAddress),
    (f"http://[::1]:{P}/", BlockedAddress),
    (f"http://[::ffff:127.0.0.1]:{P}/", BlockedAddress),
    (f"http://[::ffff:7f00:1]:{P}/", BlockedAddress),
    (f"http://[0:0:0:0:0:ffff:127.0.0.1]:{P}/", BlockedAddress),
    (f"http://[64:ff9b::127.0.0.1]:{P}/", BlockedAddress),
    (f"http://[2002:7f00:1::]:{P}/", BlockedAddress),
    (f"http://[fe80::1]:{P}/", BlockedAddress),
    (f"http://2130706433:{P}/", BlockedAddress),
    (f"http://0177.0.0.1:{P}/", BlockedAddress),
    (f"http://0x7f000001:{P}/", BlockedAddress),
    (f"http://0x7f.1:{P}/", BlockedAddress),
    (f"http://127.1:{P}/", BlockedAddress),
    (f"http://127.0.0.1.:{P}/", BlockedAddress),
    ("http://0251.0376.0251.0376/", BlockedAddress),  # 169.254.169.254 in octal
    (f"http://localhost:{P}/", BlockedAddress),
    (f"http://LOCALHOST:{P}/", BlockedAddress),
    (f"http://internal.example.test:{P}/", BlockedAddress),  # our DNS: 10.1.2.3
    (f"http://mixed.example.test:{P}/", BlockedAddress),  # our DNS: public + 127.0.0.1
    (f"http://metadata.example.test:{P}/", BlockedAddress),  # our DNS: mapped metadata IPv6
    (f"http://user@public.example.test:{P}/", InvalidUrl),
    (f"http://user:pass@public.example.test:{P}/", InvalidUrl),
    (f"http://public.example.test@127.0.0.1:{P}/", InvalidUrl),
    ("file:///etc/passwd", InvalidUrl),
    (f"gopher://127.0.0.1:{P}/_GET%20/", InvalidUrl),
    ("ftp://public.example.test/x", InvalidUrl),
    (f"dict://127.0.0.1:{P}/", InvalidUrl),
    ("http://public.example.test:25/", InvalidUrl),
]

DNS = {
    "internal.example.test": ["10.1.2.3"],
    "mixed.example.test": ["93.184.216.34", "127.0.0.1"],
    "metadata.example.test": ["::ffff:169.254.169.254"],
    "public.example.test": ["93.184.216.34"],
}


@pytest.fixture
async def target(serve: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> RawServer:
    """The live loopback image server, plus our DNS names at the resolver edge."""
    real = guard.system_lookup

    async def lookup(host: str, port: int) -> Sequence[str]:
        return DNS[host] if host in DNS else await real(host, port)

    monkeypatch.setattr(guard, "system_lookup", lookup)
    return await serve(respond())


Call = Callable[[SafeHttpClient, str], Awaitable[object]]
CALLS: dict[str, Call] = {
    "fetch": lambda c, url: c.fetch(url, max_bytes=1_000_000, accept_types=("image/*",)),
    "post_json": lambda c, url: c.post_json(url, b"{}", {"webhook-id": "x"}),
    "put_bytes": lambda c, url: c.put_bytes(url, b"video", "video/mp4"),
    "check": lambda c, url: c.check(url),
}


@pytest.mark.parametrize("method", list(CALLS))
@pytest.mark.parametrize(("url", "error"), CASES, ids=[c[0].replace(P, "P") for c in CASES])
async def test_refused_without_allow_list(
    target: RawServer, method: str, url: str, error: type[FetchError]
) -> None:
    http = SafeHttpClient(connect_timeout_s=1, read_timeout_s=1)
    with pytest.raises(error) as info:
        await CALLS[method](http, url.replace(P, str(target.port)))
    assert str(info.value)  # a reason a client can read
    assert target.requests == []


async def test_same_server_is_reachable_once_allow_listed(target: RawServer) -> None:
    """Control for the table: the target works, so refusals above are the guard's doing."""
    http = SafeHttpClient(allow=["127.0.0.0/8"])
    result = await http.fetch(f"http://0x7f.1:{target.port}/img.png", max_bytes=1_000_000)
    assert result.content
    assert len(target.requests) == 1
