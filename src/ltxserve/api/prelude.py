"""The one request prelude REST and WebSocket share: size cap, JSON decode, parse, bearer auth.

A transport reads its bytes, hands them to ``read_tasks`` and either gets the parsed tasks or a
``Rejected`` (the errors and the HTTP status REST answers with; a WebSocket sends the errors and
keeps the connection). Shared objects live on ``app.state`` (vLLM's ``entrypoints/openai`` style)
and are reached through the accessors below, so routes are plain module-level functions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from ltxserve.api.dispatch import Dispatcher, auth_error
from ltxserve.api.guard import client_address
from ltxserve.db.models import ApiKey
from ltxserve.protocol import (
    ErrorCode,
    ErrorDetail,
    RunwareError,
    ValidationContext,
    decode_json,
    http_status,
    parse_request,
)
from ltxserve.protocol.validation import TaskResult
from ltxserve.runtime import Runtime


@dataclass(frozen=True)
class Rejected:
    """A request refused before any task ran: its errors and the REST status for them."""

    errors: list[ErrorDetail]
    status: int


def runtime(conn: HTTPConnection) -> Runtime:
    """The process's ``Runtime`` (set by ``create_app``)."""
    rt: Runtime = conn.app.state.runtime
    return rt


def dispatcher(conn: HTTPConnection) -> Dispatcher:
    """The task dispatcher both transports hand parsed tasks to."""
    d: Dispatcher = conn.app.state.dispatcher
    return d


def too_large(size: int, limit: int) -> Rejected:
    """The reply to a body (or message) over ``max_body_bytes``."""
    message = f"The request is {size} bytes; the limit is {limit} bytes."
    detail = ErrorDetail(ErrorCode.REQUEST_TOO_LARGE, message)
    return Rejected([detail], 413)


async def read_tasks(conn: HTTPConnection, data: bytes | str) -> list[TaskResult] | Rejected:
    """Size check, JSON decode and parse of one REST body or WebSocket message; a large one
    (over ``parse_off_loop_bytes``) in a thread, so it does not stall other clients."""
    settings = runtime(conn).settings
    if len(data) > settings.max_body_bytes:
        return too_large(len(data), settings.max_body_bytes)
    ctx: ValidationContext = conn.app.state.validation

    def parse() -> list[TaskResult] | Rejected:
        raw, problem = decode_json(data)
        if problem is not None:
            return Rejected([problem], 400)
        tasks, request_errors = parse_request(raw, ctx)
        if request_errors:
            return Rejected(request_errors, http_status(request_errors))
        return tasks

    if len(data) > settings.parse_off_loop_bytes:
        return await asyncio.to_thread(parse)
    return parse()


async def bearer_key(conn: HTTPConnection) -> ApiKey | Rejected | None:
    """The key an ``Authorization: Bearer`` header names (None without the header).

    Without the header, an ``authentication`` task in the batch (or an earlier WebSocket message)
    authenticates instead; the dispatcher handles that.
    """
    header = conn.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        error = auth_error(ErrorCode.INVALID_API_KEY, "The Authorization header must be 'Bearer <key>'.")
        return Rejected([error], 401)
    try:
        return await dispatcher(conn).authenticate(token.strip(), client_address(conn.scope))
    except RunwareError as exc:
        return Rejected(exc.errors, exc.status)
