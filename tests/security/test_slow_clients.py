"""Item 7: slow or idle clients are not held forever, and one address cannot hold many sockets.

Before the fix a connection that sent half its headers, or a body one byte at a time, or
nothing at all, stayed open for as long as the client liked (300 of them were held).
"""

from __future__ import annotations

import json

from tests.security.server import (
    Server,
    closed_by_server,
    error_codes,
    http_request,
    read_response,
    source_address,
)


def test_idle_connection_is_closed(server: Server) -> None:
    sock = server.raw(timeout=30)
    assert closed_by_server(sock)


def test_slow_headers_are_cut_off(server: Server) -> None:
    sock = server.raw(timeout=30)
    sock.sendall(b"POST /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    assert closed_by_server(sock)


def test_slow_headers_on_a_keep_alive_connection_are_cut_off(server: Server) -> None:
    sock = server.raw(timeout=30)
    sock.sendall(http_request("GET", "/healthz", {}))
    status, _, _ = read_response(sock)
    assert status == 200
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    assert closed_by_server(sock)


def test_slow_body_gets_408(server: Server) -> None:
    sock = server.raw(timeout=30)
    headers = {"Authorization": f"Bearer {server.key}", "Content-Length": "1000"}
    sock.sendall(http_request("POST", "/v1", headers, b'[{"taskType": '))
    status, _, body = read_response(sock)
    assert status == 408
    assert error_codes(body) == ["requestTimeout"]
    assert closed_by_server(sock)


def test_connections_per_address_are_capped(server: Server) -> None:
    attacker = source_address()
    held = [server.raw(attacker) for _ in range(16)]  # the test server's max_connections_per_client
    extra = server.raw(attacker)
    status, _, _ = read_response(extra)
    assert status == 429
    # Everyone else is still served, and the attacker again once it lets go.
    assert server.post([{"taskType": "ping", "ping": True}]).status_code == 200
    for sock in held:
        sock.close()
    reply = server.post([{"taskType": "ping", "ping": True}], source=attacker)
    assert reply.status_code == 200
    assert json.loads(reply.text)["data"][0]["pong"] is True


def test_websockets_count_against_the_address_cap(server: Server) -> None:
    attacker = source_address()
    sockets = []
    for _ in range(16):
        ws = server.ws(attacker)
        ws.send(json.dumps([{"taskType": "authentication", "apiKey": server.key}]))
        ws.recv(timeout=30)
        sockets.append(ws)
    extra = server.raw(attacker)
    status, _, _ = read_response(extra)
    assert status == 429
    for ws in sockets:
        ws.close()
