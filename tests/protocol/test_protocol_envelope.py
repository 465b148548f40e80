"""Reply envelopes and items, checked against the rules the official clients parse by."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ltxserve.protocol import (
    ErrorDetail,
    ack_item,
    authentication_item,
    image_upload_item,
    pong_item,
    processing_item,
    reply,
    result_error,
    video_success_item,
)

TASK_UUID = "4d89f0f5-1277-48ee-875d-58e07a4b09d3"
VIDEO_UUID = "33c3f183-8546-4c85-8a15-1faab1c8422e"


def _is_error_0_5_24(item: dict[str, Any]) -> bool:
    """runware 0.5.24 RunwareBase._is_error_response."""
    return bool(item.get("code") or item.get("error") or item.get("errorId"))


def _is_terminal_1_8_0(item: dict[str, Any]) -> bool:
    """runware-sdk 1.8.0 client._is_terminal."""
    if item.get("status") == "success":
        return True
    result_keys = {"text", "structuredData", "outputs", "air", "result"}
    return any(
        (key in result_keys or key.endswith(("URL", "Base64Data", "DataURI"))) and value is not None
        for key, value in item.items()
    )


def test_reply_never_sends_an_empty_errors_key() -> None:
    assert reply([ack_item(TASK_UUID)]) == {"data": [{"taskType": "videoInference", "taskUUID": TASK_UUID}]}
    assert reply() == {"data": []}
    error = ErrorDetail("invalidWidth", "width ...", "width", "videoInference", TASK_UUID)
    assert reply(errors=[error]) == {"errors": [error.to_wire()]}
    both = reply([pong_item()], [error])
    assert set(both) == {"data", "errors"}
    json.dumps(both, allow_nan=False)


@pytest.mark.parametrize("key", ["code", "error", "errorId"])
def test_reply_refuses_error_keys_on_data_items(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        reply([{"taskType": "videoInference", "taskUUID": TASK_UUID, key: "x"}])


def test_authentication_and_pong() -> None:
    auth = authentication_item("8a1d4c1e-5b6f-4f8e-9a7d-2c3b4d5e6f70")
    assert auth == {
        "taskType": "authentication",
        "connectionSessionUUID": "8a1d4c1e-5b6f-4f8e-9a7d-2c3b4d5e6f70",
    }
    assert "taskUUID" not in auth  # sdk-js matches it by taskType
    assert pong_item() == {"taskType": "ping", "pong": True}


def test_ack() -> None:
    ack = ack_item(TASK_UUID)
    assert ack == {"taskType": "videoInference", "taskUUID": TASK_UUID}
    assert not _is_terminal_1_8_0(ack)
    assert not _is_error_0_5_24(ack)
    assert ack_item(TASK_UUID, "imageUpload")["taskType"] == "imageUpload"


def test_processing_item_is_not_mistaken_for_a_result() -> None:
    item = processing_item(TASK_UUID, progress=42)
    assert item == {
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "status": "processing",
        "progress": 42,
    }
    assert not _is_terminal_1_8_0(item)
    assert not _is_error_0_5_24(item)
    assert "videoUUID" not in item  # 0.5.24 counts any item with a videoUUID as a finished video
    assert processing_item(TASK_UUID, progress=250)["progress"] == 100
    assert processing_item(TASK_UUID, progress=-3)["progress"] == 0
    assert "progress" not in processing_item(TASK_UUID)


def test_success_item() -> None:
    item = video_success_item(
        TASK_UUID, video_uuid=VIDEO_UUID, video_url="http://h/v.mp4", seed=7, nsfw_content=False, cost=0.15
    )
    assert item == {
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "status": "success",
        "videoUUID": VIDEO_UUID,
        "videoURL": "http://h/v.mp4",
        "seed": 7,
        "NSFWContent": False,
        "cost": 0.15,
    }
    assert _is_terminal_1_8_0(item)
    assert not _is_error_0_5_24(item)
    plain = video_success_item(TASK_UUID, video_uuid=VIDEO_UUID, video_url="http://h/v.mp4", seed=7)
    assert "cost" not in plain
    assert "NSFWContent" not in plain


def test_result_error() -> None:
    error = result_error(TASK_UUID, "inferenceError", "the GPU ran out of memory")
    assert error.to_wire() == {
        "code": "inferenceError",
        "message": "the GPU ran out of memory",
        "taskType": "videoInference",
        "taskUUID": TASK_UUID,
        "status": "error",
    }
    assert reply(errors=[error])["errors"][0]["taskUUID"] == TASK_UUID


def test_image_upload_item() -> None:
    item = image_upload_item(TASK_UUID, VIDEO_UUID, "http://h/i.png")
    assert item == {
        "taskType": "imageUpload",
        "taskUUID": TASK_UUID,
        "imageUUID": VIDEO_UUID,
        "imageURL": "http://h/i.png",
    }
