"""Credentials first, bytes later: what a client may cost the server before it has authenticated.

A pure ASGI middleware in front of the app:

- ``POST /v1`` with an ``Authorization`` header: the key is checked (through the store's short
  cache) before one byte of the body is read; a bad key is answered 401 and the body never read.
  Without the header the body may be at most ``preauth_body_bytes`` (an ``authentication`` task
  is small), refused from its ``Content-Length`` where it has one.
- Every request body must arrive within ``body_timeout_s`` (408, connection closed), so slow
  clients are not held forever.
- A WebSocket must authenticate within ``ws_auth_timeout_s`` and its messages are capped at
  ``ws_preauth_message_bytes`` until it has; the transport calls :func:`authenticated` /
  :func:`deauthenticated` when the state changes. With ``ltxserve serve``'s protocol
  (``ltxserve.api.server``) the cap is enforced while the frame is parsed, before it is buffered.
- Failed authentications are counted per client address (:class:`AuthThrottle`): past
  ``auth_failures_per_minute`` the address gets 429 ``rateLimitExceeded`` for the rest of the minute.

Anything an attacker sends before authenticating is thus bounded in bytes and time, and cannot
reach the JSON parser in a size that stalls the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ltxserve.api.errors import unavailable
from ltxserve.config import Settings
from ltxserve.logs import get_logger
from ltxserve.protocol import ErrorCode, ErrorDetail, reply

log = get_logger(__name__)

#: The scope key under which a WebSocket's :class:`WsGuardState` travels to the transport.
STATE_KEY = "ltxserve.guard"
#: The ASGI extension ``ltxserve.api.server``'s WebSocket protocol offers to change its frame cap.
WS_EXTENSION = "ltxserve.ws"
API_PATH = "/v1"

Authenticate = Callable[[str], Awaitable[bool]]


def auth_error(code: str, message: str) -> ErrorDetail:
    """An authentication failure, shaped as Runware's clients expect it."""
    return ErrorDetail(code, message, "apiKey", "authentication")


def client_address(scope: Scope) -> str:
    """The peer's IP address (what throttles and connection caps count by)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class AuthThrottle:
    """Failed authentications per client address in a sliding window (memory bounded)."""

    def __init__(self, per_window: int, window_s: float = 60.0, max_clients: int = 100_000) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        if self.per_window <= 0:
            return None
        now = time.monotonic()
        times = self._recent(client, now)
        if times is None or len(times) < self.per_window:
            return None
        return max(times[0] + self.window_s - now, 0.0)

    def failed(self, client: str) -> None:
        """Count one failed authentication from ``client``."""
        now = time.monotonic()
        times = self._recent(client, now)
        if times is None:
            times = self._failures[client] = deque(maxlen=max(self.per_window, 1))
            if len(self._failures) > self.max_clients:  # the oldest addresses go first
                self._failures.popitem(last=False)
        times.append(now)
        self._failures.move_to_end(client)

    def error(self, client: str, retry_after: float) -> ErrorDetail:
        """The ``rateLimitExceeded`` item for a throttled client (logged)."""
        log.warning("authentication throttled", client=client, retry_after_s=round(retry_after, 1))
        return auth_error(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"Too many failed authentications from this address; retry in {int(retry_after) + 1} s.",
        )


@dataclass
class WsGuardState:
    """One WebSocket's standing with the guard (in its scope under :data:`STATE_KEY`)."""

    preauth_bytes: int
    postauth_bytes: int
    auth_timeout_s: float
    set_max_message_size: Callable[[int], None] | None = None
    authenticated: bool = False
    closed: bool = False
    deadline: float = field(default_factory=time.monotonic)

    def restart_deadline(self) -> None:
        """Give the socket another ``auth_timeout_s`` to authenticate."""
        self.deadline = time.monotonic() + self.auth_timeout_s


def authenticated(scope: Scope) -> None:
    """The transport authenticated this WebSocket: full-size messages, no deadline."""
    state: WsGuardState | None = scope.get(STATE_KEY)
    if state is None or state.authenticated:
        return
    state.authenticated = True
    if state.set_max_message_size is not None:
        state.set_max_message_size(state.postauth_bytes)


def deauthenticated(scope: Scope) -> None:
    """A failed re-authentication: back to small messages and a fresh deadline."""
    state: WsGuardState | None = scope.get(STATE_KEY)
    if state is None or not state.authenticated:
        return
    state.authenticated = False
    state.restart_deadline()
    if state.set_max_message_size is not None:
        state.set_max_message_size(state.preauth_bytes)


class Guard:
    """The ASGI middleware; see the module docstring."""

    def __init__(
        self, app: ASGIApp, settings: Settings, authenticate: Authenticate, throttle: AuthThrottle
    ) -> None:
        self.app = app
        self.settings = settings
        self.authenticate = authenticate
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "POST" and scope["path"] == API_PATH:
                await self._rest(scope, receive, send)
            else:
                await self.app(scope, _body_deadline(receive, self.settings.body_timeout_s), send)
        elif scope["type"] == "websocket" and scope["path"] == API_PATH:
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # --- REST ---------------------------------------------------------------------------------

    async def _rest(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        headers = {k.lower(): v for k, v in scope["headers"]}
        header = headers.get(b"authorization", b"").decode("latin-1")
        client = client_address(scope)
        if header:
            wait = self.throttle.retry_after(client)
            if wait is not None:
                await _respond(
                    send, 429, [self.throttle.error(client, wait)], {"retry-after": str(int(wait) + 1)}
                )
                return
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                self.throttle.failed(client)
                error = auth_error(
                    ErrorCode.INVALID_API_KEY, "The Authorization header must be 'Bearer <key>'."
                )
                await _respond(send, 401, [error])
                return
            try:
                valid = await self.authenticate(token.strip())
            except Exception as exc:
                detail = unavailable(exc)
                if detail is None:
                    raise
                detail.task_type = "authentication"
                await _respond(send, 503, [detail], {"retry-after": "5"})
                return
            if not valid:
                self.throttle.failed(client)
                await _respond(send, 401, [auth_error(ErrorCode.INVALID_API_KEY, "Invalid API key.")])
                return
            limit = settings.max_body_bytes
        else:
            limit = settings.preauth_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _respond(send, 413, [_too_large(int(length), limit, bool(header))])
            return
        body = await self._read_body(scope, receive, send, limit, bool(header))
        if body is None:
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(
        self, scope: Scope, receive: Receive, send: Send, limit: int, has_key: bool
    ) -> bytes | None:
        """The whole body within the deadline and the limit; None when it was answered instead."""
        deadline = time.monotonic() + self.settings.body_timeout_s
        body = bytearray()
        while True:
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    message = await receive()
            except TimeoutError:
                log.info("request body too slow", client=client_address(scope), received=len(body))
                error = ErrorDetail(
                    ErrorCode.REQUEST_TIMEOUT,
                    f"The request body did not arrive within {self.settings.body_timeout_s:g} s.",
                )
                await _respond(send, 408, [error])
                return None
            if message["type"] == "http.disconnect":
                log.info("client disconnected before its request body ended", client=client_address(scope))
                return None
            body.extend(message.get("body", b""))
            if len(body) > limit:
                await _respond(send, 413, [_too_large(len(body), limit, has_key)])
                return None
            if not message.get("more_body", False):
                return bytes(body)

    # --- WebSocket ----------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        hook = scope.get("extensions", {}).get(WS_EXTENSION, {}).get("set_max_message_size")
        state = WsGuardState(
            preauth_bytes=settings.ws_preauth_message_bytes,
            postauth_bytes=4 * settings.max_body_bytes,
            auth_timeout_s=settings.ws_auth_timeout_s,
            set_max_message_size=hook,
        )
        state.restart_deadline()
        scope[STATE_KEY] = state
        client = client_address(scope)

        async def close(code: int, reason: str) -> Message:
            if not state.closed:
                state.closed = True
                log.info("websocket closed by the guard", client=client, code=code, reason=reason)
                await send({"type": "websocket.close", "code": code, "reason": reason})
            return {"type": "websocket.disconnect", "code": code, "reason": reason}

        async def guarded_receive() -> Message:
            if state.closed:
                return {"type": "websocket.disconnect", "code": 1000}
            if state.authenticated:
                return await receive()
            try:
                async with asyncio.timeout_at(_loop_time(state.deadline)):
                    message = await receive()
            except TimeoutError:
                return await close(1008, f"authenticate within {settings.ws_auth_timeout_s:g} s")
            if message["type"] == "websocket.receive":
                size = len(message.get("bytes") or b"") or len(message.get("text") or "")
                if size > state.preauth_bytes:
                    return await close(
                        1009, f"messages before authentication are limited to {state.preauth_bytes} bytes"
                    )
            return message

        async def guarded_send(message: Message) -> None:
            if state.closed and message["type"] != "websocket.accept":
                return  # the guard already closed it; the app's late replies have nowhere to go
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)


def _loop_time(deadline: float) -> float:
    """A ``time.monotonic`` deadline on the running loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def _body_deadline(receive: Receive, timeout_s: float) -> Receive:
    """``receive`` whose body messages must all arrive within ``timeout_s`` (then a disconnect)."""
    deadline = time.monotonic() + timeout_s
    done = False

    async def timed() -> Message:
        nonlocal done
        if done:
            return await receive()  # after the body: disconnect listening, no deadline
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                message = await receive()
        except TimeoutError:
            done = True
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            done = True
        return message

    return timed


def _too_large(size: int, limit: int, has_key: bool) -> ErrorDetail:
    hint = (
        "" if has_key else " without an Authorization header; send the key as 'Authorization: Bearer <key>'"
    )
    return ErrorDetail(
        ErrorCode.REQUEST_TOO_LARGE,
        f"The request is at least {size} bytes; the limit is {limit} bytes{hint}.",
    )


async def _respond(
    send: Send, status: int, errors: list[ErrorDetail], headers: dict[str, str] | None = None
) -> None:
    """A Runware error reply that also closes the connection (its body may be unread)."""
    payload = json.dumps(reply(errors=errors)).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    raw.extend((k.encode(), v.encode()) for k, v in (headers or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
