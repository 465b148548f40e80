"""Reply envelopes and items, shaped the way Runware's official clients parse them.

What the clients require (read in their sources):

- ``runware-sdk`` 1.8.0 (REST) raises as soon as a reply *has* an ``errors`` (or ``error``) key,
  even an empty one: ``reply`` omits empty keys.
- ``runware`` 0.5.24 treats a ``data`` item with a truthy ``code``, ``error`` or ``errorId`` as
  an error: data items never carry those keys.
- Every task item carries ``taskType`` and ``taskUUID`` (clients route by taskUUID); the
  authentication item carries none (``@runware/sdk-js`` matches it by taskType) and neither
  does the pong.
- getResponse items report ``taskType: "videoInference"`` (0.5.24 picks its result parser from
  it), finished ones ``status: "success"`` (0.5.24 keeps only those), and an in-progress item
  never has a ``videoUUID`` or ``videoURL`` (0.5.24 and 1.8.0 would take it as finished).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ltxserve.protocol.errors import ErrorDetail

_ERROR_KEYS: Final = frozenset({"code", "error", "errorId"})
VIDEO_INFERENCE: Final = "videoInference"


def reply(data: Iterable[Mapping[str, Any]] = (), errors: Iterable[ErrorDetail] = ()) -> dict[str, Any]:
    """``{"data": [...]}`` and/or ``{"errors": [...]}``; ``{"data": []}`` when both are empty."""
    items = [dict(item) for item in data]
    for item in items:
        clash = _ERROR_KEYS & item.keys()
        if clash:
            raise ValueError(f"data items must not carry {sorted(clash)}: clients would read them as errors")
    wire_errors = [error.to_wire() for error in errors]
    body: dict[str, Any] = {}
    if items or not wire_errors:
        body["data"] = items
    if wire_errors:
        body["errors"] = wire_errors
    return body


def authentication_item(connection_session_uuid: str) -> dict[str, Any]:
    """Successful authentication; deliberately without ``taskUUID``."""
    return {"taskType": "authentication", "connectionSessionUUID": connection_session_uuid}


def pong_item() -> dict[str, Any]:
    return {"taskType": "ping", "pong": True}


def ack_item(task_uuid: str, task_type: str = VIDEO_INFERENCE) -> dict[str, Any]:
    """The immediate answer to an accepted async task (0.5.24 needs both fields)."""
    return {"taskType": task_type, "taskUUID": task_uuid}


def processing_item(task_uuid: str, progress: int | None = None) -> dict[str, Any]:
    """A result still being generated; ``progress`` in percent (clamped to 0-100)."""
    item: dict[str, Any] = {"taskType": VIDEO_INFERENCE, "taskUUID": task_uuid, "status": "processing"}
    if progress is not None:
        item["progress"] = max(0, min(100, int(progress)))
    return item


def video_success_item(
    task_uuid: str,
    *,
    video_uuid: str,
    video_url: str,
    seed: int,
    nsfw_content: bool | None = None,
    cost: float | None = None,
) -> dict[str, Any]:
    """A finished result. Pass ``cost`` only when the task asked for it (``includeCost``) and
    ``nsfw_content`` only when a safety check ran."""
    item: dict[str, Any] = {
        "taskType": VIDEO_INFERENCE,
        "taskUUID": task_uuid,
        "status": "success",
        "videoUUID": video_uuid,
        "videoURL": video_url,
        "seed": seed,
    }
    if nsfw_content is not None:
        item["NSFWContent"] = nsfw_content
    if cost is not None:
        item["cost"] = cost
    return item


def result_error(
    task_uuid: str, code: str, message: str, *, task_type: str = VIDEO_INFERENCE, parameter: str | None = None
) -> ErrorDetail:
    """A failed result, for the ``errors`` array of a getResponse reply (or a webhook)."""
    return ErrorDetail(code, message, parameter, task_type, task_uuid, {"status": "error"})


def image_upload_item(task_uuid: str, image_uuid: str, image_url: str) -> dict[str, Any]:
    """The imageUpload answer; 0.5.24 fails unless all three of taskUUID/imageUUID/imageURL exist."""
    return {"taskType": "imageUpload", "taskUUID": task_uuid, "imageUUID": image_uuid, "imageURL": image_url}
