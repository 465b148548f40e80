"""The only HTTP client ltxserve uses for outbound requests: SSRF-safe, bounded, exact.

Every request goes through the same steps:

1. the URL is parsed and canonicalised by :func:`ltxserve.net.guard.parse_url`;
2. the host is resolved **once** and every address is checked (:func:`guard.resolve`);
3. a fresh one-connection httpx transport is built whose network backend can only open TCP
   connections to those checked addresses (:class:`PinnedTransport`). The request URL keeps
   the host *name*, so the Host header, TLS SNI and certificate verification all use the name
   while the socket goes to the checked IP: no second DNS lookup, so no DNS rebinding;
4. everything is bounded: DNS by the connect timeout, each socket operation by the
   connect/read timeouts, and the whole exchange (all redirect hops) by a total deadline, so a
   server dripping one byte per read timeout cannot hold a worker either.

Why a transport per request and not one shared pooled client: a pool keyed by address could
hand a TLS connection verified for one name to a request for another name on the same IP, and
a pool keyed by name would reuse a connection to an address checked for an earlier request.
Outbound requests here are rare (an input image, a webhook), so pooling buys nothing.

Policy choices (also in docs/security.md):
* redirects: only for :meth:`SafeHttpClient.fetch` (GET), at most ``max_redirects`` hops, each
  hop re-parsed, re-resolved and re-checked; relative ``Location`` resolved against the current
  URL; https -> http downgrades refused unless ``allow_https_downgrade``. POST/PUT never follow
  redirects (a webhook body or a presigned upload must not be replayed somewhere else);
* no proxies: the transport never reads ``HTTP(S)_PROXY``/``NO_PROXY`` (a proxy would do its
  own DNS and defeat the address check);
* no compressed bodies for fetches (``Accept-Encoding: identity``; a server compressing anyway
  is refused), so the byte cap is the size of what we keep and no decompression bomb exists;
* POST/PUT send exactly the caller's headers plus Host, Content-Type and Content-Length: no
  User-Agent, Accept-Encoding or ``Expect: 100-continue`` (presigned S3/GCS URLs reject
  requests whose headers differ from what was signed).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import ssl
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import certifi
import httpcore
import httpx

from ltxserve import __version__
from ltxserve.net import guard
from ltxserve.net.errors import (
    BadResponse,
    BadStatus,
    BlockedAddress,
    ConnectFailed,
    FetchError,
    FetchTimeout,
    InvalidUrl,
    RedirectRefused,
    ResponseTooLarge,
    TlsError,
    TooManyRedirects,
    WrongContentType,
)
from ltxserve.net.guard import IPAddress, IPNetwork, ParsedUrl, Resolver, parse_networks, parse_url

if TYPE_CHECKING:
    from ltxserve.config import Settings

__all__ = [
    "FetchResult",
    "HttpResponse",
    "PinnedTransport",
    "SafeHttpClient",
    "from_settings",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
FETCH_OK_STATUSES = frozenset({200, 203})
RESERVED_HEADERS = frozenset(
    {
        # Set by the client itself (or never sent): a caller passing them is a bug.
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "expect",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
ERROR_BODY_BYTES = 4096
"""How much of a failed webhook/upload answer is kept for the log."""
ERROR_BODY_WAIT_S = 2.0
"""How long we wait for that excerpt: the status already decided the outcome."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A fetched body: ``content`` (at most ``max_bytes``), its media type, and the URL that
    finally answered after redirects (canonical form)."""

    content: bytes
    content_type: str
    """Media type without parameters, lower case (``image/png``); "" if none was sent."""
    final_url: str


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The answer to a webhook POST or upload PUT (2xx only; others raise :class:`BadStatus`)."""

    status: int
    headers: httpx.Headers


# --- transport ----------------------------------------------------------------------------------


def _shown(parsed: ParsedUrl) -> str:
    """The URL for messages and logs, without its query: presigned URLs carry secrets there."""
    path = parsed.target.split("?", 1)[0]
    return f"{parsed.scheme}://{parsed.netloc}{path}"


def _os_reason(exc: BaseException) -> str:
    """The most specific OS reason in an exception chain ("Connection refused"), else str()."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


@contextmanager
def _translate(host: str) -> Iterator[None]:
    """httpcore's exceptions -> our FetchError family, with messages a client can act on."""
    try:
        yield
    except httpcore.ConnectTimeout:
        raise FetchTimeout(f"connecting to {host} timed out") from None
    except httpcore.ReadTimeout:
        raise FetchTimeout(f"{host} stopped sending data (read timeout)") from None
    except httpcore.WriteTimeout:
        raise FetchTimeout(f"sending to {host} timed out (write timeout)") from None
    except httpcore.PoolTimeout:  # pragma: no cover - one request per pool
        raise FetchTimeout(f"no connection to {host} became available in time") from None
    except httpcore.ConnectError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise TlsError(
                f"the TLS certificate of {host} is not valid: {cause.verify_message or cause}"
            ) from None
        if isinstance(cause, ssl.SSLError):
            raise TlsError(f"the TLS handshake with {host} failed: {cause.reason or cause}") from None
        raise ConnectFailed(f"could not connect to {host}: {_os_reason(exc)}") from None
    except (httpcore.ReadError, httpcore.WriteError) as exc:
        raise ConnectFailed(f"the connection to {host} broke: {exc or type(exc).__name__}") from None
    except httpcore.RemoteProtocolError as exc:
        raise BadResponse(f"{host} sent an invalid HTTP response: {exc}") from None
    except httpcore.LocalProtocolError as exc:
        raise FetchError(f"the request to {host} could not be sent: {exc}") from None
    except httpcore.UnsupportedProtocol as exc:  # pragma: no cover - parse_url decides schemes
        raise InvalidUrl(f"unsupported URL for {host}: {exc}") from None


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that can only connect to the checked addresses of one host.

    httpcore asks it to connect to the URL's host name; it connects to the pre-checked IPs
    instead (in resolver order, falling through on connection errors) and refuses any other
    host and all Unix sockets, so nothing downstream can open an unchecked connection.
    """

    def __init__(self, host: str, ips: Sequence[IPAddress]) -> None:
        self._host = host
        self._ips = tuple(ips)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not _same_host(host, self._host):
            raise BlockedAddress(f"refusing to connect to unchecked host {host}")
        error: Exception | None = None
        for ip in self._ips:
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # resolve() never returns an empty list
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("Unix sockets are never used for outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    """The response body, with httpcore errors translated like the rest of the exchange."""

    def __init__(self, stream: AsyncIterable[bytes], host: str) -> None:
        self._stream = stream
        self._host = host

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = self._stream.__aiter__()
        while True:
            with _translate(self._host):
                try:
                    part = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _translate(self._host):
                await close()


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport for one host whose connections go only to already-checked IPs.

    TLS uses the host *name* for SNI and certificate verification (httpcore's default for the
    URL host), so connecting to an IP does not weaken certificate checks. One connection, no
    keep-alive, no retries, no proxy; it can also be given to an ``httpx.AsyncClient``.
    """

    def __init__(self, host: str, ips: Sequence[IPAddress], *, ssl_context: ssl.SSLContext) -> None:
        if not ips:
            raise ValueError("PinnedTransport needs at least one checked address")
        self._host = host
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=_PinnedBackend(host, ips),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.raw_host.decode("ascii")
        if not _same_host(host, self._host):
            raise BlockedAddress(f"this transport only reaches {self._host}, not {host}")
        stream = request.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=stream,
            extensions=request.extensions,
        )
        with _translate(self._host):
            core_response = await self._pool.handle_async_request(core_request)
        assert isinstance(core_response.stream, AsyncIterable)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream, self._host),
            extensions=core_response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        with _translate(self._host):
            await self._pool.aclose()


# --- client -------------------------------------------------------------------------------------


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """certifi's trust store, hostname checking on. Built once: loading the CA bundle is slow
    (tens of ms) and the context is read-only in use (httpcore only sets the same ALPN list)."""
    return ssl.create_default_context(cafile=certifi.where())


def _raw_chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The undecoded body stream (an async generator, so ``aclosing`` can end it early)."""
    return cast("AsyncGenerator[bytes, None]", response.aiter_raw())


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _accepts(media: str, accept_types: Sequence[str]) -> bool:
    for pattern in accept_types:
        pattern = pattern.strip().lower()
        if pattern == "*/*" or media == pattern:
            return True
        if pattern.endswith("/*") and media.startswith(pattern[:-1]) and len(media) > len(pattern) - 1:
            return True
    return False


class SafeHttpClient:
    """SSRF-safe outbound HTTP for image URLs (:meth:`fetch`), webhooks (:meth:`post_json`) and
    uploads (:meth:`put_bytes`). Every failure is a :class:`~ltxserve.net.errors.FetchError`.

    Stateless and cheap: one instance per process is fine, and it is safe to share between
    tasks. ``allow`` lists networks that may be reached although private/loopback (an operator
    setting, e.g. ``["127.0.0.1/32"]`` for a local webhook receiver); ``resolver`` replaces the
    system DNS lookup (tests); ``ssl_context`` replaces the certifi trust store.
    """

    def __init__(
        self,
        *,
        allow: Iterable[str | IPNetwork] = (),
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        fetch_timeout_s: float | None = None,
        send_timeout_s: float = 15.0,
        max_redirects: int = 3,
        allow_https_downgrade: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolver | None = None,
        user_agent: str = f"ltxserve/{__version__}",
    ) -> None:
        if connect_timeout_s <= 0 or read_timeout_s <= 0 or send_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        self.allow: list[IPNetwork] = parse_networks(allow)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        # A whole fetch (every hop, DNS, connect, body) must end even if the server drips bytes
        # just faster than the read timeout: by default, one connect plus two read timeouts.
        self.fetch_timeout_s = fetch_timeout_s or connect_timeout_s + 2 * read_timeout_s
        self.send_timeout_s = send_timeout_s
        self.max_redirects = max_redirects
        self.allow_https_downgrade = allow_https_downgrade
        self.user_agent = user_agent
        self._resolver = resolver
        self._ssl_context = ssl_context or _default_ssl_context()
        self._timeouts = {
            "connect": connect_timeout_s,
            "read": read_timeout_s,
            "write": read_timeout_s,
            "pool": connect_timeout_s,
        }

    async def __aenter__(self) -> SafeHttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to release (no pool); present so callers can treat it like any client."""

    # --- public API ---------------------------------------------------------------------------

    async def check(self, url: str) -> ParsedUrl:
        """Parse, resolve and check ``url`` without sending anything (submission-time checks)."""
        parsed = parse_url(url)
        await guard.resolve(
            parsed.host, parsed.port, self.allow, resolver=self._resolver, timeout_s=self.connect_timeout_s
        )
        return parsed

    async def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        accept_types: tuple[str, ...] | None = None,
        timeout_s: float | None = None,
    ) -> FetchResult:
        """GET ``url`` (following up to ``max_redirects`` checked redirects) and return the body.

        ``accept_types`` (e.g. ``("image/*",)``; exact types and ``type/*`` patterns) refuses
        other Content-Types before any body is read; None accepts anything. The body is refused
        as soon as it is known to exceed ``max_bytes``: by Content-Length before reading, or
        while streaming (never more than ``max_bytes`` plus one network read is held).
        """
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        if accept_types is not None and not accept_types:
            raise ValueError("accept_types must name at least one type (or be None for any)")
        parsed = parse_url(url)
        first = parsed
        budget = timeout_s if timeout_s is not None else self.fetch_timeout_s
        headers = [
            ("Accept", ", ".join(accept_types) if accept_types else "*/*"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", self.user_agent),
        ]
        try:
            async with asyncio.timeout(budget):
                for hop in range(self.max_redirects + 1):
                    try:
                        async with self._exchange("GET", parsed, headers, None) as response:
                            if response.status_code not in REDIRECT_STATUSES:
                                media = self._check_fetch_response(parsed, response, accept_types)
                                content = await self._read_capped(parsed, response, max_bytes)
                                return FetchResult(content, media, parsed.url)
                            target = self._redirect_target(parsed, response)
                    except BlockedAddress as exc:
                        if hop == 0:
                            raise
                        raise BlockedAddress(
                            f"{_shown(first)} redirected to {_shown(parsed)}, which is refused: {exc.reason}",
                            url=_shown(first),
                        ) from None
                    parsed = target
        except TimeoutError:
            raise FetchTimeout(
                f"fetching {_shown(first)} took longer than {budget:g}s", url=_shown(first)
            ) from None
        raise TooManyRedirects(
            f"{_shown(first)} redirected more than {self.max_redirects} times", url=_shown(first)
        )

    async def post_json(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> HttpResponse:
        """POST ``body`` (already-serialised JSON) with exactly ``headers`` plus Content-Type
        ``application/json`` and Content-Length. Redirects are not followed; a non-2xx answer
        raises :class:`BadStatus` (its ``status`` says whether a retry makes sense)."""
        return await self._send("POST", url, body, "application/json", headers, timeout_s)

    async def put_bytes(
        self,
        url: str,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> int:
        """PUT ``data`` (e.g. to a presigned S3/GCS URL) and return the 2xx status; exactly
        ``headers`` plus Content-Type and Content-Length are sent, nothing else."""
        response = await self._send("PUT", url, data, content_type, headers, timeout_s)
        return response.status

    # --- internals ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _exchange(
        self,
        method: str,
        parsed: ParsedUrl,
        headers: list[tuple[str, str]],
        content: bytes | None,
    ) -> AsyncIterator[httpx.Response]:
        """One request to one checked address; the response is open inside the block."""
        ips = await guard.resolve(
            parsed.host, parsed.port, self.allow, resolver=self._resolver, timeout_s=self.connect_timeout_s
        )
        request = httpx.Request(
            method, parsed.url, headers=headers, content=content, extensions={"timeout": self._timeouts}
        )
        async with PinnedTransport(parsed.host, ips, ssl_context=self._ssl_context) as transport:
            response = await transport.handle_async_request(request)
            try:
                yield response
            finally:
                await response.aclose()

    def _check_fetch_response(
        self, parsed: ParsedUrl, response: httpx.Response, accept_types: Sequence[str] | None
    ) -> str:
        status = response.status_code
        if status not in FETCH_OK_STATUSES:
            raise BadStatus(
                f"{_shown(parsed)} answered HTTP {status} {response.reason_phrase}".rstrip(),
                status=status,
                url=_shown(parsed),
            )
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise BadResponse(
                f"{_shown(parsed)} sent a {encoding}-encoded body although none was requested",
                url=_shown(parsed),
            )
        media = _media_type(response.headers.get("content-type"))
        if accept_types is not None and not _accepts(media, accept_types):
            raise WrongContentType(
                f"{_shown(parsed)} has Content-Type {media or '(none)'}, "
                f"expected {' or '.join(accept_types)}",
                url=_shown(parsed),
            )
        return media

    @staticmethod
    async def _read_capped(parsed: ParsedUrl, response: httpx.Response, max_bytes: int) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise BadResponse(
                    f"{_shown(parsed)} sent an invalid Content-Length", url=_shown(parsed)
                ) from None
            if length > max_bytes:
                raise ResponseTooLarge(
                    f"{_shown(parsed)} is {length} bytes, more than the limit of {max_bytes} bytes",
                    url=_shown(parsed),
                )
        body = bytearray()
        async with aclosing(_raw_chunks(response)) as chunks:
            async for chunk in chunks:
                if len(body) + len(chunk) > max_bytes:
                    raise ResponseTooLarge(
                        f"{_shown(parsed)} is more than the limit of {max_bytes} bytes",
                        url=_shown(parsed),
                    )
                body += chunk
        return bytes(body)

    def _redirect_target(self, parsed: ParsedUrl, response: httpx.Response) -> ParsedUrl:
        location = response.headers.get("location", "").strip()
        if not location:
            raise RedirectRefused(
                f"{_shown(parsed)} answered HTTP {response.status_code} without a Location header",
                url=_shown(parsed),
            )
        try:
            joined = str(httpx.URL(parsed.url).join(location))
        except (httpx.InvalidURL, ValueError, TypeError):
            raise InvalidUrl(
                f"{_shown(parsed)} redirected to an invalid URL {location[:200]!r}", url=_shown(parsed)
            ) from None
        try:
            target = parse_url(joined)
        except InvalidUrl as exc:
            raise InvalidUrl(
                f"{_shown(parsed)} redirected to {location[:200]!r}, which is refused: {exc.reason}",
                url=_shown(parsed),
            ) from None
        if parsed.scheme == "https" and target.scheme == "http" and not self.allow_https_downgrade:
            raise RedirectRefused(
                f"{_shown(parsed)} redirected from https to plain http ({_shown(target)}); "
                "insecure downgrades are not followed",
                url=_shown(parsed),
            )
        return target

    async def _send(
        self,
        method: str,
        url: str,
        content: bytes,
        content_type: str,
        headers: Mapping[str, str] | None,
        timeout_s: float | None,
    ) -> HttpResponse:
        parsed = parse_url(url)
        send_headers: list[tuple[str, str]] = []
        for name, value in (headers or {}).items():
            if name.strip().lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by SafeHttpClient itself")
            if any(c in name or c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} contains a line break or NUL")
            send_headers.append((name, value))
        send_headers.append(("Content-Type", content_type))
        budget = timeout_s if timeout_s is not None else self.send_timeout_s
        try:
            async with (
                asyncio.timeout(budget),
                self._exchange(method, parsed, send_headers, content) as response,
            ):
                status = response.status_code
                if 200 <= status < 300:
                    return HttpResponse(status=status, headers=response.headers)
                excerpt = await self._excerpt(response)
                hint = " (redirects are not followed for webhooks and uploads)" if 300 <= status < 400 else ""
                raise BadStatus(
                    f"{_shown(parsed)} answered HTTP {status} {response.reason_phrase}".rstrip() + hint,
                    status=status,
                    body=excerpt,
                    url=_shown(parsed),
                )
        except TimeoutError:
            raise FetchTimeout(
                f"{method} {_shown(parsed)} took longer than {budget:g}s", url=_shown(parsed)
            ) from None

    @staticmethod
    async def _excerpt(response: httpx.Response) -> bytes:
        """The first bytes of an error answer, for logs; best effort and briefly bounded."""
        body = bytearray()
        try:
            async with asyncio.timeout(ERROR_BODY_WAIT_S), aclosing(_raw_chunks(response)) as chunks:
                async for chunk in chunks:
                    body += chunk
                    if len(body) >= ERROR_BODY_BYTES:
                        break
        except (FetchError, TimeoutError):
            pass
        return bytes(body[:ERROR_BODY_BYTES])


def from_settings(settings: Settings, **overrides: Any) -> SafeHttpClient:
    """The process's client, configured from the ``fetch_*``, ``allow_networks`` and
    ``delivery_timeout_s`` settings; ``overrides`` go to :class:`SafeHttpClient` (tests)."""
    try:
        allow = parse_networks(settings.allow_networks)
    except ValueError as exc:
        raise ValueError(f"allow_networks: {exc}") from None
    options: dict[str, Any] = {
        "allow": allow,
        "connect_timeout_s": settings.fetch_connect_timeout_s,
        "read_timeout_s": settings.fetch_read_timeout_s,
        "max_redirects": settings.fetch_max_redirects,
        "send_timeout_s": settings.delivery_timeout_s,
    }
    options.update(overrides)
    return SafeHttpClient(**options)
