"""Real HTTP(S) servers on loopback for the outbound-HTTP tests.

``RawServer`` is an ``asyncio.start_server`` responder: it parses one request, records it
(raw header names included, so tests can assert exactly what was sent) and hands the socket to
a handler that writes whatever bytes the test wants, including malformed, endless or slow
answers that ``http.server`` cannot produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    local_host: str
    sni: str | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def header_names(self) -> set[str]:
        return {key.lower() for key, _ in self.headers}


Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[None]]


async def write_response(
    writer: asyncio.StreamWriter,
    status: int = 200,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (("Content-Type", "image/png"),),
    *,
    content_length: bool = True,
) -> None:
    """A complete HTTP/1.1 response; without ``content_length`` the body ends at close."""
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{k}: {v}" for k, v in headers]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


def respond(
    status: int = 200,
    body: bytes = PNG,
    headers: Sequence[tuple[str, str]] = (("Content-Type", "image/png"),),
    *,
    content_length: bool = True,
) -> Handler:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        await write_response(writer, status, body, headers, content_length=content_length)

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    return respond(status, b"", (("Location", location),))


def route(table: dict[str, Handler]) -> Handler:
    """Dispatch on the request path (query ignored); unknown paths answer 404."""

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        path = seen.target.split("?", 1)[0]
        await table.get(path, respond(404, b"nope", (("Content-Type", "text/plain"),)))(seen, writer)

    return handler


@dataclass
class RawServer:
    handler: Handler
    host: str = "127.0.0.1"
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _sni: list[str | None] = field(default_factory=list)

    async def start(self) -> RawServer:
        if self.ssl_context is not None:
            self.ssl_context.sni_callback = self._on_sni
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _on_sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self._sni.append(name)

    def url(self, path: str = "/img.png", host: str | None = None, scheme: str | None = None) -> str:
        scheme = scheme or ("https" if self.ssl_context else "http")
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = [tuple(line.split(": ", 1)) for line in header_lines if line]
            seen = Seen(method, target, [(k, v) for k, v in headers], b"", self.host)
            length = int(seen.header("content-length") or 0)
            seen.body = await reader.readexactly(length) if length else b""
            seen.sni = self._sni[-1] if self._sni else None
            self.requests.append(seen)
            await self.handler(seen, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task


ServerFactory = Callable[..., Awaitable[RawServer]]


@pytest.fixture
async def serve() -> AsyncIterator[ServerFactory]:
    """``await serve(handler, host="127.0.0.1", ssl_context=None)`` -> a started RawServer."""
    servers: list[RawServer] = []

    async def start(
        handler: Handler, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> RawServer:
        server = await RawServer(handler, host, ssl_context).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def fake_dns(
    table: dict[str, Iterable[str]], calls: list[str] | None = None
) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver answering from ``table`` (unknown names fail like NXDOMAIN)."""
    import socket

    async def lookup(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(table[host])

    return lookup


# --- TLS ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    hostname: str

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA and a server certificate for ``images.example.test`` only (no IP SAN)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    hostname = "images.example.test"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    ca_ext = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]
    run(
        "req",
        "-x509",
        *ec,
        *ca_ext,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    )
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", f"/CN={hostname}")
    (d / "ext.cnf").write_text(
        f"subjectAltName=DNS:{hostname}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return Pki(d / "ca.pem", d / "srv.pem", d / "srv.key", hostname)
