"""Item 1: an unauthenticated client may not make the server read, buffer or parse much.

Before the fix the server read and parsed any body up to 20 MB (and WebSocket frames up to
80 MB) before looking at credentials, with no deadline for authenticating.
"""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed

from tests.security.server import Server, error_codes, http_request, read_response

MB = 1024 * 1024


def test_large_body_without_key_is_refused_before_it_is_sent(server: Server) -> None:
    sock = server.raw()
    # Only the headers: a server that reads the body first would wait here for 20 MB.
    sock.sendall(
        http_request("POST", "/v1", {"Content-Length": str(20 * MB), "Content-Type": "application/json"})
    )
    status, _, body = read_response(sock)
    assert status == 413
    assert error_codes(body) == ["requestTooLarge"]


def test_chunked_body_without_key_is_cut_at_the_cap(server: Server) -> None:
    sock = server.raw()
    sock.sendall(http_request("POST", "/v1", {"Transfer-Encoding": "chunked"}))
    chunk = b"[" + b"{}," * 30_000
    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    status, _, body = read_response(sock)
    assert status == 413
    assert error_codes(body) == ["requestTooLarge"]


def test_bad_key_is_refused_before_the_body_is_read(server: Server) -> None:
    sock = server.raw()
    headers = {"Authorization": "Bearer ltx_not-a-key", "Content-Length": str(20 * MB)}
    sock.sendall(http_request("POST", "/v1", headers))
    status, _, body = read_response(sock)
    assert status == 401
    assert error_codes(body) == ["invalidApiKey"]


def test_small_body_with_authentication_task_still_works(server: Server) -> None:
    tasks = [{"taskType": "authentication", "apiKey": server.key}, {"taskType": "ping", "ping": True}]
    reply = server.post(tasks, key="")
    assert reply.status_code == 200, reply.text
    assert [d["taskType"] for d in reply.json()["data"]] == ["authentication", "ping"]


def test_large_body_with_a_valid_key_is_read(server: Server) -> None:
    """The cap is for requests without credentials: a key in the header may send max_body_bytes."""
    padding = "x" * (2 * MB)
    task = {"taskType": "ping", "ping": True, "taskUUID": padding[:36]}
    body = json.dumps([task, {"taskType": "getResponse", "taskUUID": padding}])
    with server.client() as client:
        reply = client.post(
            "/v1",
            content=body,
            headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
        )
    assert reply.status_code != 413, reply.text


def test_websocket_frame_before_authentication_closes_the_socket(server: Server) -> None:
    ws = server.ws()
    ws.send(json.dumps([{"taskType": "ping", "ping": True, "pad": "x" * MB}]))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


def test_websocket_large_frame_after_authentication_is_answered(server: Server) -> None:
    ws = server.ws()
    ws.send(json.dumps([{"taskType": "authentication", "apiKey": server.key}]))
    assert json.loads(ws.recv(timeout=30))["data"][0]["taskType"] == "authentication"
    ws.send(json.dumps([{"taskType": "getResponse", "taskUUID": "x" * MB}]))
    reply = json.loads(ws.recv(timeout=30))
    assert reply.get("errors"), reply  # a validation error, on an open socket
    ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
    assert json.loads(ws.recv(timeout=30))["data"][0]["pong"] is True
    ws.close()


def test_websocket_that_never_authenticates_is_closed(server: Server) -> None:
    ws = server.ws()
    ws.send(json.dumps([{"taskType": "ping", "ping": True}]))  # pings are answered, but do not count
    assert json.loads(ws.recv(timeout=30))["data"][0]["pong"] is True
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008


def test_authenticated_websocket_outlives_the_deadline(server: Server) -> None:
    ws = server.ws()
    ws.send(json.dumps([{"taskType": "authentication", "apiKey": server.key}]))
    ws.recv(timeout=30)
    with pytest.raises(TimeoutError):
        ws.recv(timeout=4)  # twice the test server's ws_auth_timeout_s: nothing arrives, no close
    ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
    assert json.loads(ws.recv(timeout=30))["data"][0]["pong"] is True
    ws.close()
