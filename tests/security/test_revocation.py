"""Item 2: revoking a key reaches sockets that authenticated with it; a failed
re-authentication leaves the socket unauthenticated.

Before the fix a socket authenticated before ``ltxserve keys revoke`` kept submitting (and
receiving) tasks indefinitely, and a failed re-authentication kept the previous key.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.security.server import Server, video_task


def submit_over(ws: Any, **fields: Any) -> dict[str, Any]:
    task = video_task(**fields)
    ws.send(json.dumps([task]))
    while True:
        reply: dict[str, Any] = json.loads(ws.recv(timeout=60))
        if any(d.get("taskUUID") == task["taskUUID"] and "status" not in d for d in reply.get("data", [])):
            return reply  # the ack
        if reply.get("errors"):
            return reply


def test_revoked_key_stops_working_on_an_open_socket(server: Server) -> None:
    key = server.create_key("to be revoked")
    ws = server.authed_ws(key)
    assert "errors" not in submit_over(ws)
    server.cli("keys", "revoke", key[:10])  # another process, as an operator would
    deadline = time.monotonic() + 60  # the server's auth_cache_s is 1 s
    reply: dict[str, Any] = {}
    while time.monotonic() < deadline:
        reply = submit_over(ws)
        if reply.get("errors"):
            break
        time.sleep(0.5)
    codes = [e["code"] for e in reply.get("errors", [])]
    assert "invalidApiKey" in codes, reply
    # From then on the socket is unauthenticated, not just refused once.
    assert [e["code"] for e in submit_over(ws)["errors"]] == ["missingApiKey"]
    ws.close()
    assert server.post([{"taskType": "ping", "ping": True}], key=key).status_code == 401


def test_failed_reauthentication_drops_the_previous_key(server: Server) -> None:
    ws = server.authed_ws()
    ws.send(json.dumps([{"taskType": "authentication", "apiKey": "ltx_wrong"}]))
    assert [e["code"] for e in json.loads(ws.recv(timeout=30))["errors"]] == ["invalidApiKey"]
    reply = submit_over(ws)
    assert [e["code"] for e in reply["errors"]] == ["missingApiKey"], reply
    ws.close()
