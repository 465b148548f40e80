"""Item 4: ``taskCancel`` stops a running task within a denoising step.

Before the fix the worker saw the cancel flag only at its next heartbeat (here 30 s), so a
100-step task cancelled mid-run ran to the end and ended ``success``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.sync.client import ClientConnection

from tests.security.server import Server, video_task


def next_message(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=120))


def test_cancel_stops_a_running_task(server: Server) -> None:
    ws = server.authed_ws()
    task = video_task(steps=100, width=256, height=256)
    ws.send(json.dumps([task]))
    assert next_message(ws)["data"][0]["taskUUID"] == task["taskUUID"]
    while True:  # running: the first progress push
        item = next_message(ws).get("data", [{}])[0]
        if item.get("status") == "processing" and item.get("progress", 0) > 0:
            break
    cancelled_at = time.monotonic()
    ws.send(json.dumps([{"taskType": "taskCancel", "taskUUID": task["taskUUID"]}]))
    final: dict[str, Any] = {}
    while not final:
        message = next_message(ws)
        errors = [e for e in message.get("errors", []) if e.get("taskUUID") == task["taskUUID"]]
        done = [d for d in message.get("data", []) if d.get("status") == "success"]
        if errors or done:
            final = message
    latency = time.monotonic() - cancelled_at
    print(f"cancel latency (request to taskCancelled push): {latency * 1000:.0f} ms")
    assert [e["code"] for e in final.get("errors", [])] == ["taskCancelled"], final
    reply = server.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()
    assert [e["code"] for e in reply["errors"]] == ["taskCancelled"]
    ws.close()
