"""FastAPI app: Runware's REST and WebSocket endpoints on ``/v1``, files, health.

The app only speaks HTTP: it parses, authenticates and hands validated tasks to the
``Dispatcher``; all state lives behind the ``Service``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.websockets import WebSocketState

from ltxserve import __version__, metrics
from ltxserve.api.dispatch import Dispatcher, auth_error
from ltxserve.api.files import blob_response
from ltxserve.api.playground import mount_playground
from ltxserve.blobs.base import BlobNotFound
from ltxserve.logs import get_logger
from ltxserve.protocol import (
    ErrorCode,
    ErrorDetail,
    RunwareError,
    ValidationContext,
    decode_json,
    http_status,
    parse_request,
    processing_item,
    reply,
    request_json_schema,
)
from ltxserve.runtime import Runtime
from ltxserve.service.events import TaskEvent

log = get_logger(__name__)

CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".png": "image/png"}


def create_app(runtime: Runtime, *, manage_lifecycle: bool = True) -> FastAPI:
    settings = runtime.settings
    dispatcher = Dispatcher(runtime.service)
    ctx = ValidationContext.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await runtime.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await runtime.stop()

    app = FastAPI(
        title="ltxserve",
        version=__version__,
        description="Runware-compatible videoInference API for LTX-2.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # The request schema's references must resolve inside the OpenAPI document: its models go to
    # components.schemas (a bare "#/$defs/..." would point at the document root, where nothing is).
    body_schema = request_json_schema(ref_template="#/components/schemas/{model}")
    body_models = body_schema.pop("$defs", {})
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = default_openapi()  # built once, then cached by FastAPI
        schema.setdefault("components", {}).setdefault("schemas", {}).update(body_models)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    def too_large(size: int) -> ErrorDetail:
        return ErrorDetail(
            ErrorCode.REQUEST_TOO_LARGE,
            f"The request is {size} bytes; the limit is {settings.max_body_bytes} bytes.",
        )

    # --- REST -------------------------------------------------------------------------------

    @app.post(
        "/v1",
        summary="Run an array of Runware tasks",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        },
    )
    async def rest(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > settings.max_body_bytes:
                return _json(reply(errors=[too_large(len(body))]), 413)
        raw, problem = decode_json(bytes(body))
        if problem is not None:
            return _json(reply(errors=[problem]), 400)
        tasks, request_errors = parse_request(raw, ctx)
        if request_errors:
            return _json(reply(errors=request_errors), http_status(request_errors))
        key = None
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                error = auth_error(
                    ErrorCode.INVALID_API_KEY, "The Authorization header must be 'Bearer <key>'."
                )
                return _json(reply(errors=[error]), 401)
            try:
                key = await dispatcher.authenticate(token.strip())
            except RunwareError as exc:
                return _json(reply(errors=exc.errors), 401)
        out, _ = await dispatcher.run(tasks, key, str(uuid.uuid4()))
        status = 200 if out.data else http_status(out.errors)
        return _json(reply(out.data, out.errors), status)

    # --- WebSocket --------------------------------------------------------------------------

    @app.websocket("/v1")
    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        conn = _Connection(ws)
        unsubscribe: list[Callable[[], None]] = []
        key = None
        session_uuid = str(uuid.uuid4())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("text")
                if data is None:
                    data = (message.get("bytes") or b"").decode("utf-8", "replace")
                if len(data) > settings.max_body_bytes:
                    await conn.send(reply(errors=[too_large(len(data))]))
                    continue
                raw, problem = decode_json(data)
                if problem is not None:
                    await conn.send(reply(errors=[problem]))
                    continue
                tasks, request_errors = parse_request(raw, ctx)
                if request_errors:
                    await conn.send(reply(errors=request_errors))
                    continue
                # Hold the socket while dispatching: a push for a task accepted here must not
                # overtake its ack (runware 0.5.24 would take the pushed result for the ack).
                async with conn.lock:
                    out, key = await dispatcher.run(tasks, key, session_uuid)
                    for task_uuid in out.accepted:
                        assert key is not None
                        task = await runtime.store.find_task(key.id, task_uuid)
                        if task is not None:
                            unsubscribe.append(runtime.bus.subscribe(task.id, conn.push))
                    await conn.send_unlocked(reply(out.data, out.errors))
        except WebSocketDisconnect:
            pass
        finally:
            for off in unsubscribe:
                off()

    # --- files, health ----------------------------------------------------------------------

    @app.get("/files/{key:path}", include_in_schema=False)
    async def files(key: str, request: Request) -> Response:
        suffix = "." + key.rsplit(".", 1)[-1].lower() if "." in key else ""
        if not key.startswith(("videos/", "uploads/")) or suffix not in CONTENT_TYPES:
            return Response(status_code=404)
        try:
            path = runtime.blobs.local_path(key)
        except BlobNotFound:
            return Response(status_code=404)
        if path is None:  # object storage: proxied from the bucket, Range passed through
            return await blob_response(runtime.blobs, key, CONTENT_TYPES[suffix], request)
        if not path.is_file():
            return Response(status_code=404)
        return FileResponse(
            path, media_type=CONTENT_TYPES[suffix], headers={"Cache-Control": "private, max-age=3600"}
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        try:
            await runtime.refresh_gauges()
        except Exception:
            log.warning("metrics: queue gauges not refreshed (database unavailable)")
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        return _json({"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)

    mount_playground(app)
    return app


def _json(body: dict[str, Any], status: int) -> JSONResponse:
    return JSONResponse(body, status_code=status)


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
        if event.kind == "progress":
            item = processing_item(event.payload["taskUUID"], event.payload["progress"])
            await self.send({"data": [item]})
            return
        body: dict[str, Any] = {}
        if event.payload.get("data"):
            body["data"] = event.payload["data"]
        if event.payload.get("errors"):
            body["errors"] = event.payload["errors"]
        if body:
            await self.send(body)
