"""WebSocket ``/v1``: Runware's streaming transport (task arrays in, acks and pushed results out).

A connection authenticates with an ``authentication`` task and stays authenticated while its key
is active (checked before every message, through the auth cache); results of
the ``videoInference`` tasks it submitted are pushed as they finish, progress too when asked.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from ltxserve import tracing
from ltxserve.api import guard
from ltxserve.api.dispatch import auth_error
from ltxserve.api.prelude import Rejected, dispatcher, read_tasks, runtime
from ltxserve.db.models import ApiKey
from ltxserve.protocol import ErrorCode, processing_item, reply
from ltxserve.service.events import TaskEvent

router = APIRouter()


@router.websocket("/v1")
async def websocket(ws: WebSocket) -> None:
    """Serve one connection: each message runs like a REST body; pushes share the socket."""
    await ws.accept()
    conn = _Connection(ws)
    service = runtime(ws).service
    unsubscribe: list[Callable[[], None]] = []
    key: ApiKey | None = None
    session_uuid = str(uuid.uuid4())
    client = guard.client_address(ws.scope)

    def drop_pushes() -> None:
        for off in unsubscribe:
            off()
        unsubscribe.clear()

    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text")
            if data is None:
                data = (message.get("bytes") or b"").decode("utf-8", "replace")
            if key is not None and await service.active_key(key) is None:
                # Revoked since this socket authenticated (seen within auth_cache_s): the socket
                # is unauthenticated from here on and its pushes stop.
                key = None
                drop_pushes()
                guard.deauthenticated(ws.scope)
                revoked = auth_error(ErrorCode.INVALID_API_KEY, "This API key was revoked.")
                await conn.send(reply(errors=[revoked]))
            tasks = await read_tasks(ws, data)
            if isinstance(tasks, Rejected):
                await conn.send(reply(errors=tasks.errors))
                continue
            # Hold the socket while dispatching: a push for a task accepted here must not
            # overtake its ack (runware 0.5.24 would take the pushed result for the ack).
            async with conn.lock:
                had_key = key is not None
                # a message's span heads its tasks' traces (linked to the connection's span)
                with tracing.message_span("WS /v1 message", http__route="/v1"):
                    out, key = await dispatcher(ws).run(tasks, key, session_uuid, client)
                if key is not None:
                    guard.authenticated(ws.scope)
                elif had_key:  # a failed re-authentication: the old key is gone too
                    drop_pushes()
                    guard.deauthenticated(ws.scope)
                for task_uuid in out.accepted:
                    assert key is not None
                    off = await service.subscribe(key, task_uuid, conn.push)
                    if off is not None:
                        unsubscribe.append(off)
                await conn.send_unlocked(reply(out.data, out.errors))
    except WebSocketDisconnect:
        pass
    finally:
        drop_pushes()


class _Connection:
    """A WebSocket with serialized sends (pushes come from other tasks of the loop)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()

    async def send(self, body: dict[str, Any]) -> None:
        async with self.lock:
            await self.send_unlocked(body)

    async def send_unlocked(self, body: dict[str, Any]) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            await self.ws.send_text(json.dumps(body))

    async def push(self, event: TaskEvent) -> None:
        """Forward a task event: progress as a processing item, results and errors as sent."""
        if event.kind == "progress":
            item = processing_item(event.payload["taskUUID"], event.payload["progress"])
            if "etaSeconds" in event.payload:  # service.eta: an extra field the SDKs pass over
                item["etaSeconds"] = event.payload["etaSeconds"]
            await self.send({"data": [item]})
            return
        body: dict[str, Any] = {}
        if event.payload.get("data"):
            body["data"] = event.payload["data"]
        if event.payload.get("errors"):
            body["errors"] = event.payload["errors"]
        if body:
            await self.send(body)
