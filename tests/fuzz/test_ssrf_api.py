"""The SSRF table through the API: every client-supplied URL the server would request.

Image URLs (``inputs.frameImages``, 0.5.24's ``frameImages``, ``imageUpload.image``,
``mediaStorage.media``) are fetched at submission; ``webhookURL`` and ``uploadEndpoint`` are
checked at submission and requested later. For loopback in every spelling, private and
link-local ranges, the unspecified address, IPv6 forms of loopback and a name resolving to
loopback, each answers an ``invalid*`` error naming the parameter, at once (well below the
server's 10 s connect timeout, so nothing was even tried), and a listener on the loopback port
the URLs point at never sees a connection.

A second server allow-lists only ``127.0.0.1/32``, where a receiver answers redirects into
private space: the first hop is fetched, the redirect is refused (a listener on 127.0.0.2 shows
the second hop never happened), and webhook/upload deliveries do not follow redirects at all.
Positive control: an image on the allow-listed receiver is fetched and used.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.api.conftest import LiveServer
from tests.fuzz.conftest import (
    REPLY_TIMEOUT_S,
    assert_envelope,
    cheap_video,
    new_uuid,
    ready,
    start_fuzz_server,
)

#: Connect/read timeouts of the servers here: a refusal must come back far quicker than this.
OUTBOUND_TIMEOUT_S = 10.0
#: A refused URL is answered within this (no connection attempt, no DNS beyond /etc/hosts).
QUICK_S = 3.0
POLICY = "only public addresses may be reached"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()

# --------------------------------------------------------------------------- local receivers


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.record(Seen(self.command, self.path, body))
        status, headers, payload = self.server.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Receiver(ThreadingHTTPServer):
    """An HTTP server on loopback that counts every TCP connection and records every request."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        self.address_family = family
        self.connections = 0
        self.seen: list[Seen] = []
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self._lock = threading.Lock()
        super().__init__((host, port), _Handler)
        self.host, self.port = host, int(self.server_address[1])
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn = super().get_request()
        with self._lock:
            self.connections += 1
        return conn

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class Sentinels:
    """Listeners on the loopback port the table's URLs name (IPv4 and, where possible, IPv6)."""

    port: int
    listeners: list[Receiver]

    @property
    def connections(self) -> int:
        return sum(r.connections for r in self.listeners)


@pytest.fixture(scope="module")
def sentinels() -> Iterator[Sentinels]:
    v4 = Receiver()
    listeners = [v4]
    with contextlib.suppress(OSError):  # without IPv6 loopback the [::1] cases still must be refused
        listeners.append(Receiver("::1", v4.port, socket.AF_INET6))
    yield Sentinels(v4.port, listeners)
    for listener in listeners:
        listener.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[LiveServer]:
    """The default policy: public addresses only."""
    yield from start_fuzz_server(
        tmp_path_factory.mktemp("ssrf"),
        tiny_model_dir,
        fetch_connect_timeout_s=OUTBOUND_TIMEOUT_S,
        fetch_read_timeout_s=OUTBOUND_TIMEOUT_S,
    )


# --------------------------------------------------------------------------- the table

HOSTS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0177.0.0.1",
    "0x7f000001",
    "0x7f.0.0.1",
    "localhost",
    "LOCALHOST",
    "0.0.0.0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::]",
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.255.254",
    "169.254.169.254",
    "0251.0376.0251.0376",  # 169.254.169.254 in octal
    "[::ffff:169.254.169.254]",
    "100.64.0.1",
]


def _placements(url: str) -> list[tuple[dict[str, Any], str, str]]:
    """(task, code, parameter) for each parameter that takes a URL."""
    frame = cheap_video(new_uuid()) | {"inputs": {"frameImages": [{"image": url, "frame": "first"}]}}
    shorthand = cheap_video(new_uuid()) | {"inputs": {"frameImages": [url]}}
    legacy = cheap_video(new_uuid()) | {"frameImages": [{"inputImage": url, "frame": "first"}]}
    upload = {"taskType": "imageUpload", "taskUUID": new_uuid(), "image": url}
    media = {"taskType": "mediaStorage", "taskUUID": new_uuid(), "operation": "upload", "media": url}
    webhook = cheap_video(new_uuid()) | {"webhookURL": url}
    endpoint = cheap_video(new_uuid()) | {"uploadEndpoint": url}
    return [
        (frame, "invalidImage", "inputs.frameImages[0].image"),
        (shorthand, "invalidImage", "inputs.frameImages[0].image"),
        (legacy, "invalidInputImage", "frameImages[0].inputImage"),
        (upload, "invalidImage", "image"),
        (media, "invalidMedia", "media"),
        (webhook, "invalidWebhookURL", "webhookURL"),
        (endpoint, "invalidUploadEndpoint", "uploadEndpoint"),
    ]


PLACEMENT_IDS = [
    "frameImages",
    "frameImages-shorthand",
    "legacy-frameImages",
    "imageUpload",
    "mediaStorage",
    "webhookURL",
    "uploadEndpoint",
]


def refused(live: LiveServer, task: dict[str, Any]) -> dict[str, Any]:
    """POST one task; it must be refused quickly with exactly one error, which is returned."""
    start = time.monotonic()
    reply = httpx.post(
        f"{live.url}/v1",
        json=[task],
        headers={"Authorization": f"Bearer {live.key}"},
        timeout=REPLY_TIMEOUT_S,
    )
    elapsed = time.monotonic() - start
    assert elapsed < QUICK_S, f"took {elapsed:.1f} s: the server tried to reach the address"
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert_envelope(body, {task["taskUUID"]})
    assert "data" not in body, body
    (error,) = body["errors"]
    assert error["taskUUID"] == task["taskUUID"]
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize("placement", range(len(PLACEMENT_IDS)), ids=PLACEMENT_IDS)
@pytest.mark.parametrize("host", HOSTS)
def test_private_addresses_are_refused(
    guarded: LiveServer, sentinels: Sentinels, host: str, placement: int
) -> None:
    url = f"http://{host}:{sentinels.port}/img.png"
    task, code, parameter = _placements(url)[placement]
    error = refused(guarded, task)
    assert error["code"] == code, error
    assert error["parameter"] == parameter, error
    assert POLICY in error["message"], error  # refused by the guard, not a failed connection
    assert sentinels.connections == 0, "the server connected to a loopback listener"


@pytest.mark.parametrize(
    "url",
    [
        "http://[fe80::1]/x.png",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[64:ff9b::7f00:1]/x.png",
        "http://[2002:7f00:1::]/x.png",
    ],
)
def test_ipv6_private_forms_are_refused(guarded: LiveServer, url: str) -> None:
    for task, code, parameter in _placements(url):
        error = refused(guarded, task)
        assert (error["code"], error["parameter"]) == (code, parameter), error


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@127.0.0.1/x.png",
        "http://example.com@127.0.0.1/x.png",
        "http://example.com:25/x.png",  # a "bad port" (SMTP)
        "http://example.com:0/x.png",
    ],
)
def test_refused_url_shapes(guarded: LiveServer, sentinels: Sentinels, url: str) -> None:
    for task, code, parameter in _placements(url):
        error = refused(guarded, task)
        assert (error["code"], error["parameter"]) == (code, parameter), error
    assert sentinels.connections == 0


def test_guarded_server_still_healthy(guarded: LiveServer, sentinels: Sentinels) -> None:
    ready(guarded)
    assert sentinels.connections == 0
    assert not any(listener.seen for listener in sentinels.listeners)


# --------------------------------------------------------------------------- allow-listed receiver


@dataclass
class Local:
    live: LiveServer
    receiver: Receiver  # on 127.0.0.1: allow-listed
    beyond: Receiver  # on 127.0.0.2: loopback too, but outside the allow-list


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Local]:
    receiver = Receiver("127.0.0.1")
    beyond = Receiver("127.0.0.2")
    receiver.routes.update(
        {
            "/img.png": (200, {"Content-Type": "image/png"}, PNG),
            "/to-private": (302, {"Location": "http://10.0.0.1/img.png"}, b""),
            "/to-metadata": (307, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/to-beyond": (302, {"Location": beyond.url("/img.png")}, b""),
            "/to-self": (302, {"Location": receiver.url("/img.png")}, b""),
            "/hook": (200, {}, b""),
            "/hook-to-beyond": (307, {"Location": beyond.url("/hook")}, b""),
        }
    )
    beyond.routes.update({"/img.png": (200, {"Content-Type": "image/png"}, PNG), "/hook": (200, {}, b"")})
    servers = start_fuzz_server(
        tmp_path_factory.mktemp("allow"),
        tiny_model_dir,
        allow_networks=["127.0.0.1/32"],
        fetch_connect_timeout_s=OUTBOUND_TIMEOUT_S,
        fetch_read_timeout_s=OUTBOUND_TIMEOUT_S,
        delivery_window_s=5.0,
    )
    live = next(servers)
    yield Local(live, receiver, beyond)
    ready(live)
    assert beyond.connections == 0, "the server reached 127.0.0.2, outside its allow-list"
    for server in (receiver, beyond):
        server.stop()
    next(servers, None)


def _image_placements(url: str) -> list[tuple[dict[str, Any], str]]:
    return [(task, parameter) for task, _, parameter in _placements(url)[:5]]


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata", "/to-beyond"])
def test_redirect_into_private_space_is_refused(local: Local, path: str) -> None:
    url = local.receiver.url(path)
    for task, parameter in _image_placements(url):
        before = len(local.receiver.seen)
        error = refused(local.live, task)
        assert error["code"].startswith("invalid"), error
        assert error["parameter"] == parameter, error
        assert "redirected to" in error["message"], error
        assert POLICY in error["message"], error
        # the allow-listed first hop was requested, once; the second hop never
        assert [(s.method, s.path) for s in local.receiver.seen[before:]] == [("GET", path)]
    assert local.beyond.connections == 0


def test_address_outside_the_allow_list_is_refused(local: Local) -> None:
    for task, code, parameter in _placements(local.beyond.url("/img.png")):
        error = refused(local.live, task)
        assert (error["code"], error["parameter"]) == (code, parameter), error
    assert local.beyond.connections == 0


def test_allow_listed_image_is_fetched_and_used(local: Local) -> None:
    """Positive control: the same guard lets the allow-listed receiver through."""
    for path in ("/img.png", "/to-self"):  # a redirect that stays inside the allow-list is fine
        upload = {"taskType": "imageUpload", "taskUUID": new_uuid(), "image": local.receiver.url(path)}
        reply = local.live.post([upload])
        assert reply.status_code == 200, reply.text
        (item,) = reply.json()["data"]
        assert item["imageUUID"]
        stored = httpx.get(item["imageURL"], timeout=REPLY_TIMEOUT_S)
        assert stored.status_code == 200
        assert Image.open(io.BytesIO(stored.content)).size == (64, 48)
    task = cheap_video(new_uuid()) | {"inputs": {"frameImages": [{"image": local.receiver.url("/img.png")}]}}
    assert local.live.post([task]).status_code == 200
    fetched = [s for s in local.receiver.seen if s.path == "/img.png"]
    assert len(fetched) >= 3
    done = local.live.wait(task["taskUUID"], timeout=60)
    assert done["data"][0]["status"] == "success", done


def test_deliveries_reach_the_allow_listed_receiver_and_never_follow_redirects(local: Local) -> None:
    hook, redirecting = local.receiver.url("/hook"), local.receiver.url("/hook-to-beyond")
    tasks = [
        cheap_video(new_uuid()) | {"webhookURL": hook},
        cheap_video(new_uuid()) | {"webhookURL": redirecting},
        cheap_video(new_uuid()) | {"uploadEndpoint": redirecting},
    ]
    reply = local.live.post(tasks)
    assert reply.status_code == 200, reply.text
    assert [d["taskUUID"] for d in reply.json()["data"]] == [t["taskUUID"] for t in tasks]
    for task in tasks:
        local.live.wait(task["taskUUID"], timeout=60)
    deadline = time.monotonic() + 30
    wanted = {("POST", "/hook"), ("POST", "/hook-to-beyond"), ("PUT", "/hook-to-beyond")}
    while not wanted <= {(s.method, s.path) for s in local.receiver.seen}:
        assert time.monotonic() < deadline, f"deliveries missing: {local.receiver.seen}"
        time.sleep(0.1)
    ok = [s for s in local.receiver.seen if (s.method, s.path) == ("POST", "/hook")]
    assert tasks[0]["taskUUID"].encode() in ok[0].body
    time.sleep(1.0)  # a followed redirect would have landed by now
    assert local.beyond.connections == 0
