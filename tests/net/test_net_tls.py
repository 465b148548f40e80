"""TLS still verifies the host *name* although the socket goes to the checked IP.

A throw-away CA signs a certificate for ``images.example.test`` only; our resolver maps names
to 127.0.0.1 (allow-listed). SNI and certificate checks must use the name from the URL.
"""

from __future__ import annotations

import re
import ssl

import pytest

from ltxserve.net import RedirectRefused, SafeHttpClient, TlsError
from tests.net.conftest import PNG, Pki, ServerFactory, fake_dns, redirect, respond, route


def tls_client(pki: Pki, **kw: object) -> SafeHttpClient:
    options: dict[str, object] = {
        "allow": ["127.0.0.1/32"],
        "ssl_context": pki.client_context(),
        "resolver": fake_dns({pki.hostname: ["127.0.0.1"], "other.example.test": ["127.0.0.1"]}),
        "connect_timeout_s": 2.0,
        "read_timeout_s": 2.0,
    }
    options.update(kw)
    return SafeHttpClient(**options)  # type: ignore[arg-type]


async def test_https_by_name_to_pinned_ip_verifies_the_name(pki: Pki, serve: ServerFactory) -> None:
    server = await serve(respond(), ssl_context=pki.server_context())
    url = f"https://{pki.hostname}:{server.port}/img.png"
    result = await tls_client(pki).fetch(url, max_bytes=10_000, accept_types=("image/*",))
    assert result.content == PNG
    [seen] = server.requests
    assert seen.sni == pki.hostname
    assert seen.header("host") == f"{pki.hostname}:{server.port}"


async def test_certificate_for_another_name_is_refused(pki: Pki, serve: ServerFactory) -> None:
    server = await serve(respond(), ssl_context=pki.server_context())
    with pytest.raises(TlsError, match=re.escape("other.example.test")):
        await tls_client(pki).fetch(f"https://other.example.test:{server.port}/", max_bytes=10_000)
    assert server.requests == []


async def test_https_to_bare_ip_needs_an_ip_certificate(pki: Pki, serve: ServerFactory) -> None:
    server = await serve(respond(), ssl_context=pki.server_context())
    with pytest.raises(TlsError, match="not valid"):
        await tls_client(pki).fetch(f"https://127.0.0.1:{server.port}/", max_bytes=10_000)


async def test_untrusted_ca_is_refused(pki: Pki, serve: ServerFactory) -> None:
    server = await serve(respond(), ssl_context=pki.server_context())
    default_trust = ssl.create_default_context()  # the system/certifi store: no test CA
    with pytest.raises(TlsError, match="certificate"):
        await tls_client(pki, ssl_context=default_trust).fetch(
            f"https://{pki.hostname}:{server.port}/", max_bytes=10_000
        )


async def test_https_to_http_downgrade(pki: Pki, serve: ServerFactory) -> None:
    plain = await serve(respond())
    secure = await serve(redirect(plain.url("/img.png")), ssl_context=pki.server_context())
    url = f"https://{pki.hostname}:{secure.port}/"
    with pytest.raises(RedirectRefused, match="downgrade"):
        await tls_client(pki).fetch(url, max_bytes=10_000)
    assert plain.requests == []
    result = await tls_client(pki, allow_https_downgrade=True).fetch(url, max_bytes=10_000)
    assert result.final_url == plain.url("/img.png")


async def test_http_to_https_upgrade_is_followed(pki: Pki, serve: ServerFactory) -> None:
    secure = await serve(route({"/img.png": respond()}), ssl_context=pki.server_context())
    plain = await serve(redirect(f"https://{pki.hostname}:{secure.port}/img.png", 301))
    dns = fake_dns({pki.hostname: ["127.0.0.1"], "plain.example.test": ["127.0.0.1"]})
    result = await tls_client(pki, resolver=dns).fetch(
        f"http://plain.example.test:{plain.port}/", max_bytes=10_000
    )
    assert result.content == PNG
    assert result.final_url == f"https://{pki.hostname}:{secure.port}/img.png"


async def test_webhook_over_tls(pki: Pki, serve: ServerFactory) -> None:
    server = await serve(respond(204, b"", []), ssl_context=pki.server_context())
    response = await tls_client(pki).post_json(f"https://{pki.hostname}:{server.port}/hook", b"{}")
    assert response.status == 204
    assert server.requests[0].sni == pki.hostname
