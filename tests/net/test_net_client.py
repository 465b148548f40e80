"""SafeHttpClient against real loopback servers (allow-listed explicitly)."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest

from ltxserve.config import Settings
from ltxserve.net import (
    BadResponse,
    BadStatus,
    BlockedAddress,
    ConnectFailed,
    DnsError,
    FetchError,
    FetchTimeout,
    InvalidUrl,
    RedirectRefused,
    ResponseTooLarge,
    SafeHttpClient,
    TooManyRedirects,
    WrongContentType,
    from_settings,
)
from tests.net.conftest import PNG, Seen, ServerFactory, fake_dns, redirect, respond, route, write_response

LOCAL = ["127.0.0.1/32"]


def client(**kw: object) -> SafeHttpClient:
    options: dict[str, object] = {
        "allow": LOCAL,
        "connect_timeout_s": 1.0,
        "read_timeout_s": 1.0,
        "fetch_timeout_s": 5.0,
        "send_timeout_s": 5.0,
    }
    options.update(kw)
    return SafeHttpClient(**options)  # type: ignore[arg-type]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- plain fetches ----------------------------------------------------------------------------


async def test_fetch_returns_body_type_and_final_url(
    serve: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy in the environment must be ignored (it would do its own DNS): port 9 is discard.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    server = await serve(respond(headers=[("Content-Type", "image/png; charset=binary")]))
    result = await client().fetch(
        server.url("/a/img.png?x=1#frag"), max_bytes=len(PNG), accept_types=("image/*",)
    )
    assert result.content == PNG
    assert result.content_type == "image/png"
    assert result.final_url == server.url("/a/img.png?x=1")
    [seen] = server.requests
    assert seen.method == "GET"
    assert seen.target == "/a/img.png?x=1"
    assert seen.header("host") == f"127.0.0.1:{server.port}"
    assert seen.header("accept-encoding") == "identity"
    assert seen.header("accept") == "image/*"
    assert (seen.header("user-agent") or "").startswith("ltxserve/")


async def test_odd_ip_spelling_of_allowed_address_is_fetched_canonically(serve: ServerFactory) -> None:
    server = await serve(respond())
    result = await client().fetch(f"http://0x7f.1:{server.port}/img", max_bytes=10_000)
    assert result.final_url == f"http://127.0.0.1:{server.port}/img"
    assert server.requests[0].header("host") == f"127.0.0.1:{server.port}"


async def test_any_type_accepted_without_accept_types(serve: ServerFactory) -> None:
    server = await serve(respond(body=b"<html>", headers=[("Content-Type", "text/html")]))
    result = await client().fetch(server.url(), max_bytes=100)
    assert (result.content, result.content_type) == (b"<html>", "text/html")


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("image/png", True),
        ("IMAGE/JPEG", True),
        ("image/webp; q=1", True),
        ("text/html", False),
        ("imagex/png", False),
        ("application/octet-stream", False),
        (None, False),
    ],
)
async def test_content_type_check(serve: ServerFactory, content_type: str | None, ok: bool) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    server = await serve(respond(headers=headers))
    fetch = client().fetch(server.url(), max_bytes=10_000, accept_types=("image/*",))
    if ok:
        assert (await fetch).content == PNG
    else:
        with pytest.raises(WrongContentType, match=r"expected image/\*"):
            await fetch


async def test_compressed_body_is_refused(serve: ServerFactory) -> None:
    server = await serve(respond(headers=[("Content-Type", "image/png"), ("Content-Encoding", "gzip")]))
    with pytest.raises(BadResponse, match="gzip"):
        await client().fetch(server.url(), max_bytes=10_000)


async def test_error_status_is_reported(serve: ServerFactory) -> None:
    server = await serve(respond(404, b"missing", [("Content-Type", "text/plain")]))
    with pytest.raises(BadStatus, match="404") as info:
        await client().fetch(server.url(), max_bytes=10_000)
    assert info.value.status == 404


# --- byte caps ----------------------------------------------------------------------------------


async def test_body_exactly_at_cap_is_ok_one_more_byte_is_not(serve: ServerFactory) -> None:
    server = await serve(respond())
    assert (await client().fetch(server.url(), max_bytes=len(PNG))).content == PNG
    with pytest.raises(ResponseTooLarge, match=f"{len(PNG)} bytes"):
        await client().fetch(server.url(), max_bytes=len(PNG) - 1)


async def _endless(writer: asyncio.StreamWriter, chunked: bool, wrote: list[int]) -> None:
    block = b"x" * 65536
    for _ in range(10_000):  # 640 MB if nobody stops reading: the client must hang up first
        writer.write(b"10000\r\n" + block + b"\r\n" if chunked else block)
        await writer.drain()
        wrote[0] += len(block)


async def test_declared_length_over_cap_fails_before_reading(serve: ServerFactory) -> None:
    wrote = [0]

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n")
        await _endless(writer, False, wrote)

    server = await serve(handler)
    started = time.monotonic()
    with pytest.raises(ResponseTooLarge, match="1000000000 bytes"):
        await client().fetch(server.url(), max_bytes=1_000_000)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("chunked", [False, True], ids=["until-close", "chunked"])
async def test_undeclared_length_over_cap_stops_while_streaming(serve: ServerFactory, chunked: bool) -> None:
    wrote = [0]

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        framing = "Transfer-Encoding: chunked" if chunked else "Connection: close"
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n{framing}\r\n\r\n".encode())
        await _endless(writer, chunked, wrote)

    server = await serve(handler)
    started = time.monotonic()
    with pytest.raises(ResponseTooLarge, match="more than the limit of 300000 bytes"):
        await client().fetch(server.url(), max_bytes=300_000)
    assert time.monotonic() - started < 2
    await asyncio.sleep(0.05)
    assert wrote[0] < 50_000_000  # the server was cut off long before the 640 MB


async def test_chunked_body_within_cap(serve: ServerFactory) -> None:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(PNG), 100):
            part = PNG[i : i + 100]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server = await serve(handler)
    assert (await client().fetch(server.url(), max_bytes=len(PNG))).content == PNG


async def test_truncated_body_is_a_bad_response(serve: ServerFactory) -> None:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\nshort")
        await writer.drain()

    server = await serve(handler)
    with pytest.raises(BadResponse):
        await client().fetch(server.url(), max_bytes=10_000)


# --- time bounds --------------------------------------------------------------------------------


async def test_server_that_never_answers_times_out(serve: ServerFactory) -> None:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    server = await serve(handler)
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match="read timeout"):
        await client(read_timeout_s=0.3).fetch(server.url(), max_bytes=100)
    assert 0.25 < time.monotonic() - started < 1.5


async def test_dripping_server_hits_the_total_deadline(serve: ServerFactory) -> None:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(1000):  # one byte per 0.1 s: each read is well inside the read timeout
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)

    server = await serve(handler)
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match=r"longer than 0\.6s"):
        await client(read_timeout_s=1.0, fetch_timeout_s=0.6).fetch(server.url(), max_bytes=1_000_000)
    assert 0.55 < time.monotonic() - started < 1.5


async def test_hanging_dns_is_bounded_by_the_connect_timeout() -> None:
    async def hang(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return []

    started = time.monotonic()
    with pytest.raises(DnsError, match="took longer"):
        await client(connect_timeout_s=0.3, resolver=hang).fetch("http://slow.example.test/", max_bytes=1)
    assert time.monotonic() - started < 1.5


async def test_unreachable_address_is_bounded_by_the_connect_timeout() -> None:
    # TEST-NET-1 is never routed: the SYN is dropped (timeout) or refused by the network stack.
    started = time.monotonic()
    with pytest.raises((FetchTimeout, ConnectFailed)):
        await client(allow=["192.0.2.0/24"], connect_timeout_s=0.3).fetch(
            "http://192.0.2.1:8080/", max_bytes=1
        )
    assert time.monotonic() - started < 1.5


async def test_refused_connection_is_a_connect_failure() -> None:
    with pytest.raises(ConnectFailed, match=re.escape("could not connect to 127.0.0.1: Connection refused")):
        await client().fetch(f"http://127.0.0.1:{free_port()}/", max_bytes=1)


async def test_unknown_host_is_a_dns_error() -> None:
    with pytest.raises(DnsError, match=re.escape("could not resolve host nowhere.example.test")):
        await client(resolver=fake_dns({})).fetch("http://nowhere.example.test/", max_bytes=1)


# --- redirects ----------------------------------------------------------------------------------


async def test_redirect_chain_within_limit_with_relative_locations(serve: ServerFactory) -> None:
    server = await serve(
        route(
            {
                "/a/start": redirect("next?step=1", 301),  # relative to /a/
                "/a/next": redirect("../b/third", 307),
                "/b/third": redirect("/final.png", 308),
                "/final.png": respond(),
            }
        )
    )
    result = await client(max_redirects=3).fetch(server.url("/a/start"), max_bytes=10_000)
    assert result.content == PNG
    assert result.final_url == server.url("/final.png")
    assert [s.target for s in server.requests] == ["/a/start", "/a/next?step=1", "/b/third", "/final.png"]


async def test_scheme_relative_and_absolute_redirects(serve: ServerFactory) -> None:
    target = await serve(respond())
    server = await serve(
        route(
            {
                "/one": redirect(f"//127.0.0.1:{target.port}/two", 303),
            }
        )
    )
    result = await client().fetch(server.url("/one"), max_bytes=10_000)
    assert result.final_url == f"http://127.0.0.1:{target.port}/two"


async def test_too_many_redirects(serve: ServerFactory) -> None:
    server = await serve(route({f"/r{i}": redirect(f"/r{i + 1}") for i in range(10)}))
    with pytest.raises(TooManyRedirects, match="more than 3 times"):
        await client(max_redirects=3).fetch(server.url("/r0"), max_bytes=10_000)
    assert len(server.requests) == 4
    with pytest.raises(TooManyRedirects):
        await client(max_redirects=0).fetch(server.url("/r0"), max_bytes=10_000)


async def test_redirect_loop_ends(serve: ServerFactory) -> None:
    server = await serve(route({"/loop": redirect("/loop")}))
    with pytest.raises(TooManyRedirects):
        await client().fetch(server.url("/loop"), max_bytes=10_000)


async def test_redirect_without_location(serve: ServerFactory) -> None:
    server = await serve(respond(302, b"", []))
    with pytest.raises(RedirectRefused, match="without a Location"):
        await client().fetch(server.url(), max_bytes=10_000)


@pytest.mark.parametrize(
    "location",
    ["http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://0x7f.2/"],
)
async def test_redirect_to_blocked_address_is_refused(serve: ServerFactory, location: str) -> None:
    server = await serve(redirect(location))
    with pytest.raises(BlockedAddress, match="redirected to"):
        await client().fetch(server.url(), max_bytes=10_000)


async def test_redirect_to_live_but_unlisted_loopback_server_never_reaches_it(serve: ServerFactory) -> None:
    hidden = await serve(respond(), host="127.0.0.2")
    front = await serve(redirect(hidden.url("/secret")))
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2 is a loopback address"):
        await client().fetch(front.url(), max_bytes=10_000)
    assert hidden.requests == []


async def test_redirect_to_name_resolving_private_is_refused(serve: ServerFactory) -> None:
    server = await serve(redirect("http://internal.example.test/admin"))
    dns = fake_dns({"internal.example.test": ["192.168.1.10"]})
    with pytest.raises(BlockedAddress, match=re.escape("internal.example.test resolves to 192.168.1.10")):
        await client(resolver=dns).fetch(server.url(), max_bytes=10_000)


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "http://user:pw@127.0.0.1/"]
)
async def test_redirect_to_forbidden_url_is_refused(serve: ServerFactory, location: str) -> None:
    server = await serve(redirect(location))
    with pytest.raises(InvalidUrl, match="redirected to"):
        await client().fetch(server.url(), max_bytes=10_000)


# --- the connection goes to the checked address ----------------------------------------------


async def test_connection_goes_to_the_checked_ip_with_the_name_as_host(serve: ServerFactory) -> None:
    server = await serve(respond(), host="127.0.0.2")  # listening only there
    calls: list[str] = []
    dns = fake_dns({"cdn.example.test": ["127.0.0.2"]}, calls)
    result = await client(allow=["127.0.0.2/32"], resolver=dns).fetch(
        f"http://cdn.example.test:{server.port}/img.png", max_bytes=10_000
    )
    assert result.content == PNG
    assert result.final_url == f"http://cdn.example.test:{server.port}/img.png"
    [seen] = server.requests
    assert seen.header("host") == f"cdn.example.test:{server.port}"
    assert calls == ["cdn.example.test"]  # resolved exactly once


async def test_dns_rebinding_after_the_check_changes_nothing(serve: ServerFactory) -> None:
    server = await serve(respond(), host="127.0.0.2")
    answers = iter([["127.0.0.2"], ["10.0.0.1"], ["10.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    result = await client(allow=["127.0.0.2/32"], resolver=rebinding).fetch(
        f"http://rebind.example.test:{server.port}/", max_bytes=10_000
    )
    assert result.content == PNG
    assert next(answers) == ["10.0.0.1"]  # only the first answer was consumed


async def test_answer_mixing_allowed_and_private_addresses_is_refused(serve: ServerFactory) -> None:
    server = await serve(respond(), host="127.0.0.2")
    dns = fake_dns({"mixed.example.test": ["127.0.0.2", "10.0.0.1"]})
    with pytest.raises(BlockedAddress, match=re.escape("resolves to 10.0.0.1")):
        await client(allow=["127.0.0.2/32"], resolver=dns).fetch(
            f"http://mixed.example.test:{server.port}/", max_bytes=10_000
        )
    assert server.requests == []


async def test_falls_through_to_the_next_checked_address(serve: ServerFactory) -> None:
    server = await serve(respond(), host="127.0.0.2")
    dns = fake_dns({"multi.example.test": ["127.0.0.3", "127.0.0.2"]})  # nothing on .3
    result = await client(allow=["127.0.0.0/8"], resolver=dns).fetch(
        f"http://multi.example.test:{server.port}/", max_bytes=10_000
    )
    assert result.content == PNG


# --- webhooks and uploads -----------------------------------------------------------------------


async def test_post_json_sends_exactly_the_given_headers(serve: ServerFactory) -> None:
    server = await serve(respond(200, b"ok", [("Content-Type", "text/plain")]))
    body = b'{"taskUUID":"t","status":"success"}'
    response = await client().post_json(
        server.url("/hook?sig=abc"), body, {"webhook-id": "msg_1", "X-Custom": "v"}
    )
    assert response.status == 200
    assert response.headers["content-type"] == "text/plain"
    [seen] = server.requests
    assert (seen.method, seen.target, seen.body) == ("POST", "/hook?sig=abc", body)
    assert seen.header_names == {"host", "content-length", "content-type", "webhook-id", "x-custom"}
    assert seen.header("content-type") == "application/json"
    assert seen.header("content-length") == str(len(body))
    assert seen.header("x-custom") == "v"


async def test_put_bytes_like_a_presigned_upload(serve: ServerFactory) -> None:
    server = await serve(respond(201, b"", []))
    data = bytes(range(256)) * 20_000  # 5 MB
    status = await client().put_bytes(
        server.url("/bucket/video.mp4?X-Amz-Signature=deadbeef"), data, "video/mp4", {"x-amz-acl": "private"}
    )
    assert status == 201
    [seen] = server.requests
    assert seen.method == "PUT"
    assert seen.body == data
    assert seen.header_names == {"host", "content-length", "content-type", "x-amz-acl"}
    assert seen.header("content-type") == "video/mp4"


async def test_post_does_not_follow_redirects(serve: ServerFactory) -> None:
    other = await serve(respond())
    server = await serve(redirect(other.url("/elsewhere"), 307))
    with pytest.raises(BadStatus, match="redirects are not followed") as info:
        await client().post_json(server.url(), b"{}")
    assert info.value.status == 307
    assert other.requests == []


async def test_post_error_status_carries_status_and_excerpt(serve: ServerFactory) -> None:
    server = await serve(respond(503, b"busy, retry later", [("Content-Type", "text/plain")]))
    with pytest.raises(BadStatus, match="503") as info:
        await client().put_bytes(server.url("/u?X-Amz-Signature=secret"), b"data", "video/mp4")
    assert (info.value.status, info.value.body) == (503, b"busy, retry later")
    assert "secret" not in str(info.value)  # presigned query strings stay out of messages


async def test_post_success_does_not_wait_for_the_answer_body(serve: ServerFactory) -> None:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(60)

    server = await serve(handler)
    started = time.monotonic()
    assert (await client().post_json(server.url(), b"{}")).status == 200
    assert time.monotonic() - started < 1


async def test_post_to_silent_receiver_times_out(serve: ServerFactory) -> None:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    server = await serve(handler)
    started = time.monotonic()
    with pytest.raises(FetchTimeout):
        await client(read_timeout_s=5, send_timeout_s=0.4).post_json(server.url(), b"{}")
    assert time.monotonic() - started < 1.5


async def test_post_and_put_are_guarded_too(serve: ServerFactory) -> None:
    server = await serve(respond())
    with pytest.raises(BlockedAddress):
        await SafeHttpClient().post_json(server.url(), b"{}")
    with pytest.raises(BlockedAddress):
        await SafeHttpClient().put_bytes(server.url(), b"x", "video/mp4")
    assert server.requests == []


@pytest.mark.parametrize("name", ["Host", "content-length", "Expect", "Transfer-Encoding", "Content-Type"])
async def test_reserved_headers_are_a_caller_bug(name: str) -> None:
    with pytest.raises(ValueError, match="set by SafeHttpClient") as info:
        await client().post_json("http://127.0.0.1:8080/", b"{}", {name: "x"})
    assert not isinstance(info.value, FetchError)


async def test_header_injection_is_refused(serve: ServerFactory) -> None:
    server = await serve(respond())
    with pytest.raises(ValueError, match="line break"):
        await client().post_json(server.url(), b"{}", {"X-A": "1\r\nX-Injected: 2"})
    assert server.requests == []


# --- settings -----------------------------------------------------------------------------------


async def test_from_settings(serve: ServerFactory) -> None:
    settings = Settings(
        allow_networks=["127.0.0.1/32"],
        fetch_connect_timeout_s=1.5,
        fetch_read_timeout_s=2.5,
        fetch_max_redirects=1,
        delivery_timeout_s=7.0,
    )
    http = from_settings(settings)
    assert (http.connect_timeout_s, http.read_timeout_s, http.max_redirects, http.send_timeout_s) == (
        1.5,
        2.5,
        1,
        7.0,
    )
    server = await serve(route({"/a": redirect("/b"), "/b": redirect("/c"), "/c": respond()}))
    with pytest.raises(TooManyRedirects):
        await http.fetch(server.url("/a"), max_bytes=10_000)
    assert (await http.fetch(server.url("/b"), max_bytes=10_000)).content == PNG
    assert from_settings(Settings()).allow == []
    with pytest.raises(ValueError, match="allow_networks"):
        from_settings(Settings(allow_networks=["not-a-network"]))


async def test_write_response_helper_roundtrip(serve: ServerFactory) -> None:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        await write_response(writer, 200, b"abc", [("Content-Type", "image/gif")], content_length=False)

    server = await serve(handler)
    assert (await client().fetch(server.url(), max_bytes=3, accept_types=("image/gif",))).content == b"abc"
