"""Item 9: failed authentications are throttled per client address, on every path.

Before the fix an address could try keys as fast as it liked (each one a database lookup).
The test server allows 10 failures a minute.
"""

from __future__ import annotations

import json

from tests.security.server import Server, source_address

PING = [{"taskType": "ping", "ping": True}]


def test_bad_keys_in_the_header_are_throttled(server: Server) -> None:
    attacker = source_address()
    for i in range(10):
        reply = server.post(PING, key=f"ltx_guess{i}", source=attacker)
        assert reply.status_code == 401
    reply = server.post(PING, key="ltx_guess-again", source=attacker)
    assert reply.status_code == 429
    assert [e["code"] for e in reply.json()["errors"]] == ["rateLimitExceeded"]
    assert int(reply.headers["retry-after"]) > 0
    # Even a right key waits out the minute from that address; other addresses are not affected.
    assert server.post(PING, source=attacker).status_code == 429
    assert server.post(PING, source=source_address()).status_code == 200


def test_bad_keys_in_authentication_tasks_are_throttled(server: Server) -> None:
    attacker = source_address()
    for i in range(10):
        reply = server.post(
            [{"taskType": "authentication", "apiKey": f"ltx_guess{i}"}], key="", source=attacker
        )
        assert reply.status_code == 401
    reply = server.post([{"taskType": "authentication", "apiKey": server.key}], key="", source=attacker)
    assert reply.status_code == 429
    assert [e["code"] for e in reply.json()["errors"]] == ["rateLimitExceeded"]


def test_bad_keys_over_websocket_are_throttled(server: Server) -> None:
    attacker = source_address()
    codes = []
    for i in range(11):  # one socket per guess, as a scanner would (each must authenticate in time)
        ws = server.ws(attacker)
        ws.send(json.dumps([{"taskType": "authentication", "apiKey": f"ltx_guess{i}"}]))
        codes.append(json.loads(ws.recv(timeout=30))["errors"][0]["code"])
        ws.close()
    assert codes[:10] == ["invalidApiKey"] * 10
    assert codes[10] == "rateLimitExceeded"
