"""A webhook still pending when the server dies is delivered after it restarts (same webhook-id)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import video_task
from tests.api.test_api_durability import ServerProcess, create_key

pytestmark = pytest.mark.slow


def test_pending_webhook_survives_restart(tmp_path: Path, tiny_model_dir: Path) -> None:
    # A port nobody listens on yet: every attempt fails to connect while the server runs.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ServerProcess(tmp_path, tiny_model_dir, LTXSERVE_ALLOW_NETWORKS='["127.0.0.1/32"]')
    key = create_key(server.env)
    server.start()
    try:
        task = video_task(webhookURL=f"http://127.0.0.1:{port}/hook")
        assert server.post([task], key).status_code == 200
        server.wait_done(task["taskUUID"], key)
        (delivery_id, attempts) = server.wait_db(
            "SELECT id, attempts FROM deliveries WHERE status = 'pending' AND attempts >= 1"
        )[0]
        server.signal(signal.SIGKILL)

        received: list[tuple[str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["webhook-id"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        receiver = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        try:
            server.start()
            deadline = time.monotonic() + 60
            while not received:
                assert time.monotonic() < deadline, "webhook not delivered after restart"
                time.sleep(0.1)
        finally:
            receiver.shutdown()
        webhook_id, body = received[0]
        assert webhook_id == delivery_id
        assert task["taskUUID"].encode() in body
        assert (
            server.wait_db(
                "SELECT attempts FROM deliveries WHERE id = ? AND status = 'delivered'", delivery_id
            )[0][0]
            > attempts
        )
    finally:
        server.stop()
