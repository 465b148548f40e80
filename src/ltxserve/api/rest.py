"""``POST /v1``: Runware's REST transport (a task array in, one reply out)."""

from __future__ import annotations

import uuid
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ltxserve.api.guard import client_address
from ltxserve.api.prelude import Rejected, bearer_key, dispatcher, read_tasks, runtime, too_large
from ltxserve.protocol import http_status, reply, request_json_schema

router = APIRouter()

# The request schema's references must resolve inside the OpenAPI document: its models go to
# components.schemas (a bare "#/$defs/..." would point at the document root, where nothing is).
BODY_SCHEMA: Final = request_json_schema(ref_template="#/components/schemas/{model}")
BODY_MODELS: Final[dict[str, Any]] = BODY_SCHEMA.pop("$defs", {})


def json_response(body: dict[str, Any], status: int) -> JSONResponse:
    """A JSON reply with an explicit status (every reply of this API is one)."""
    return JSONResponse(body, status_code=status)


def _rejected(rejected: Rejected) -> JSONResponse:
    return json_response(reply(errors=rejected.errors), rejected.status)


@router.post(
    "/v1",
    summary="Run an array of Runware tasks",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BODY_SCHEMA}}}
    },
)
async def run_tasks(request: Request) -> Response:
    """Run a task array; 200 when any task produced data, else the status of its worst error."""
    limit = runtime(request).settings.max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:  # stop reading: the rest of an oversized body is never buffered
            return _rejected(too_large(len(body), limit))
    tasks = await read_tasks(request, bytes(body))
    if isinstance(tasks, Rejected):
        return _rejected(tasks)
    key = await bearer_key(request)  # checked by the guard before the body; here the cached row
    if isinstance(key, Rejected):
        return _rejected(key)
    out, _ = await dispatcher(request).run(tasks, key, str(uuid.uuid4()), client_address(request.scope))
    status = 200 if out.data else http_status(out.errors)
    return json_response(reply(out.data, out.errors), status)
