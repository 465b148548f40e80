"""WebSocket ``/v1``: authentication first, then tasks; finished results are pushed."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.api.conftest import LiveServer, video_task


def send(ws: ClientConnection, tasks: list[dict[str, Any]]) -> None:
    ws.send(json.dumps(tasks))


def recv(ws: ClientConnection, timeout: float = 30) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))  # type: ignore[no-any-return]


def authed(live: LiveServer) -> ClientConnection:
    ws = connect(live.ws_url)
    send(ws, [{"taskType": "authentication", "apiKey": live.key}])
    reply = recv(ws)
    assert reply["data"][0]["taskType"] == "authentication"
    return ws


def collect_until_done(ws: ClientConnection, task_uuid: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Every message for ``task_uuid`` until a success or error item arrives."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = recv(ws, timeout=deadline - time.monotonic())
        messages.append(msg)
        items = msg.get("data", []) + msg.get("errors", [])
        if any(i.get("taskUUID") == task_uuid and i.get("status") in ("success", "error") for i in items):
            return messages
    raise AssertionError(f"no final item for {task_uuid}: {messages}")


def test_authentication_and_ping(live: LiveServer) -> None:
    with connect(live.ws_url) as ws:
        send(ws, [{"taskType": "authentication", "apiKey": live.key}])
        (item,) = recv(ws)["data"]
        assert item["taskType"] == "authentication"
        assert "taskUUID" not in item
        uuid.UUID(item["connectionSessionUUID"])
        send(ws, [{"taskType": "ping", "ping": True}])
        assert recv(ws) == {"data": [{"taskType": "ping", "pong": True}]}


def test_tasks_before_authentication_are_refused(live: LiveServer) -> None:
    with connect(live.ws_url) as ws:
        task = video_task()
        send(ws, [task])
        (error,) = recv(ws)["errors"]
        assert error["code"] == "missingApiKey"
        assert error["taskUUID"] == task["taskUUID"]
        send(ws, [{"taskType": "authentication", "apiKey": "ltx_nope"}])
        (error,) = recv(ws)["errors"]
        assert error == {
            "code": "invalidApiKey",
            "message": error["message"],
            "parameter": "apiKey",
            "taskType": "authentication",
        }


def test_results_are_pushed_with_progress(live: LiveServer) -> None:
    with authed(live) as ws:
        task = video_task(steps=6, numberResults=2, includeCost=True)
        send(ws, [task])
        assert recv(ws) == {"data": [{"taskType": "videoInference", "taskUUID": task["taskUUID"]}]}
        messages = collect_until_done(ws, task["taskUUID"])
    progress = [i["progress"] for m in messages for i in m.get("data", []) if i.get("status") == "processing"]
    assert progress, "no progress was pushed"
    assert progress == sorted(progress)
    assert all(0 <= p <= 100 for p in progress)
    final = messages[-1]["data"]
    assert [i["status"] for i in final] == ["success", "success"]
    assert all(i["cost"] > 0 for i in final)
    # getResponse agrees with what was pushed.
    polled = live.wait(task["taskUUID"])["data"]
    assert [i["videoUUID"] for i in polled] == [i["videoUUID"] for i in final]


def test_ws_validation_errors_and_get_response(live: LiveServer) -> None:
    with authed(live) as ws:
        bad = video_task(width=130)
        send(ws, [bad])
        errors = recv(ws)["errors"]
        assert {(e["code"], e["parameter"]) for e in errors} == {("invalidWidth", "width")}
        send(ws, [{"taskType": "getResponse", "taskUUID": bad["taskUUID"]}])
        (error,) = recv(ws)["errors"]
        assert error["code"] == "taskNotFound"


def test_cancel_stops_a_running_task(live: LiveServer) -> None:
    with authed(live) as ws:
        task = video_task(steps=100, width=512, height=512, duration=2, fps=24)
        send(ws, [task])
        recv(ws)  # ack
        # Wait until it is really running (progress pushed), then cancel.
        while True:
            items = recv(ws).get("data", [])
            if any(i.get("status") == "processing" for i in items):
                break
        started = time.monotonic()
        send(ws, [{"taskType": "taskCancel", "taskUUID": task["taskUUID"]}])
        messages = collect_until_done(ws, task["taskUUID"])
        elapsed = time.monotonic() - started
    errors = [e for m in messages for e in m.get("errors", [])]
    assert [e["code"] for e in errors] == ["taskCancelled"]
    assert errors[0]["status"] == "error"
    assert elapsed < 30  # it stopped long before 100 steps
    polled = live.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()
    assert polled["errors"][0]["code"] == "taskCancelled"


@pytest.mark.parametrize("payload", ["{not json", "[1, 2]", json.dumps([{"taskType": 5}])])
def test_garbage_messages_get_error_envelopes(live: LiveServer, payload: str) -> None:
    with authed(live) as ws:
        ws.send(payload)
        body = recv(ws)
        assert set(body) == {"errors"}
        assert all({"code", "message"} <= e.keys() for e in body["errors"])
        send(ws, [{"taskType": "ping", "ping": True}])  # the connection survives
        assert recv(ws)["data"][0]["pong"] is True
