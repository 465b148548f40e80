"""The uvicorn server of ``ltxserve serve``, with the limits that live below ASGI.

ASGI sees a request only once its headers are complete, and a WebSocket message only once it is
buffered; what a client can hold before that is bounded here, in uvicorn's protocol classes:

- connections per client address (``max_connections_per_client``, 429) and overall
  (``max_connections``, 503), counted from the TCP connection to its end, WebSockets included;
- complete headers within ``header_timeout_s`` of connecting (or of the first byte of the next
  keep-alive request), else the connection is closed;
- WebSocket frames parsed against the cap of the socket's state: ``ws_preauth_message_bytes``
  until the app says it authenticated (``ltxserve.api.guard.authenticated``), then
  4 x ``max_body_bytes``; a larger frame closes the socket (1009) before it is buffered.

The subclasses use uvicorn's protocol hooks (``connection_made``, ``data_received``,
``connection_lost``, the sans-I/O WebSocket parser's ``max_message_size``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from ltxserve.api.guard import WS_EXTENSION
from ltxserve.config import Settings
from ltxserve.logs import get_logger

log = get_logger(__name__)


class ConnectionLimiter:
    """Open connections per client address and overall, keyed by transport."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.by_client: Counter[str] = Counter()
        self.open: dict[int, str] = {}

    def admit(self, transport: asyncio.BaseTransport) -> int | None:
        """Count ``transport`` in; the HTTP status to refuse it with when it is over a limit."""
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        if len(self.open) >= self.total:
            log.warning("connection refused: server at max_connections", client=client, limit=self.total)
            return 503
        if self.by_client[client] >= self.per_client:
            log.warning(
                "connection refused: client at max_connections_per_client",
                client=client,
                limit=self.per_client,
            )
            return 429
        self.open[id(transport)] = client
        self.by_client[client] += 1
        return None

    def release(self, transport: asyncio.BaseTransport) -> None:
        """Count a closed connection out."""
        client = self.open.pop(id(transport), None)
        if client is None:
            return
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]


_REFUSAL_HEADERS = b"\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
_REFUSALS = {
    429: b"HTTP/1.1 429 Too Many Requests" + _REFUSAL_HEADERS,
    503: b"HTTP/1.1 503 Service Unavailable" + _REFUSAL_HEADERS,
}


def protocol_classes(settings: Settings) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """HTTP and WebSocket protocol classes sharing one :class:`ConnectionLimiter`."""
    limiter = ConnectionLimiter(settings.max_connections, settings.max_connections_per_client)
    header_timeout = settings.header_timeout_s
    preauth = settings.ws_preauth_message_bytes

    class GuardedHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _admitted = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            refusal = limiter.admit(transport)
            super().connection_made(transport)
            if refusal is not None:
                writer = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
                writer.write(_REFUSALS[refusal])
                writer.close()
                return
            self._admitted = True
            self._arm()

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout, self._header_deadline)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _between_requests(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or bool(cycle.response_complete)

        def data_received(self, data: bytes) -> None:
            if self._admitted and self._header_timer is None and self._between_requests():
                self._arm()  # the first byte of a keep-alive request starts its header clock
            super().data_received(data)

        def _header_deadline(self) -> None:
            self._header_timer = None
            transport = self.transport
            if transport.is_closing() or transport.get_protocol() is not self:
                return  # closed, or upgraded to a WebSocket
            if self._between_requests():
                log.info(
                    "connection closed: headers incomplete", client=self.client, timeout_s=header_timeout
                )
                transport.close()

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._disarm()
            super().handle_websocket_upgrade(*args)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            limiter.release(self.transport)
            super().connection_lost(exc)

    class GuardedWebSocket(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn.max_message_size = preauth

        def set_max_message_size(self, size: int) -> None:
            self.conn.max_message_size = size

        async def run_asgi(self) -> None:
            self.scope["extensions"][WS_EXTENSION] = {"set_max_message_size": self.set_max_message_size}  # type: ignore[index]
            await super().run_asgi()

        def connection_lost(self, exc: Exception | None) -> None:
            limiter.release(self.transport)
            super().connection_lost(exc)

    return GuardedHTTP, GuardedWebSocket


def _host(client: Any) -> str:
    return str(client[0]) if isinstance(client, tuple) else "unknown"


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration ``ltxserve serve`` runs (tests start the same one)."""
    http, ws = protocol_classes(settings)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "http": http,
        "ws": ws,
        # Above the app's own limit, so an oversized message from an authenticated client gets a
        # requestTooLarge reply, not a closed socket. Before authentication: the guard's cap.
        "ws_max_size": 4 * settings.max_body_bytes,
        "timeout_keep_alive": settings.keep_alive_s,
        "timeout_graceful_shutdown": None,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
