"""Webhooks and uploadEndpoint against real local HTTP receivers (allow-listed 127.0.0.1)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from standardwebhooks import Webhook

from ltxserve.engine import Engine
from tests.api.conftest import LiveServer, server_settings, start_server, video_task


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A tiny HTTP server recording every request; ``statuses`` are answered in order, then 200."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"only {len(self.requests)} of {count} requests arrived"
            time.sleep(0.05)
        return self.requests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec: Receiver

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            rec.requests.append(
                Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.time(),
                )
            )
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _handle

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("delivery"), allow_networks=["127.0.0.1/32"])
    yield from start_server(settings, engine)


def verify(live: LiveServer, req: Received) -> dict[str, Any]:
    """Check the Standard Webhooks signature with the package receivers use."""
    payload = Webhook(live.secret).verify(req.body.decode(), req.headers)
    assert isinstance(payload, dict)
    return payload


def test_webhook_per_result_signed(live: LiveServer, receiver: Receiver) -> None:
    task_uuid = live.submit(
        webhookURL=f"{receiver.url}/hooks?token=abc", numberResults=2, seed=9, includeCost=True
    )
    items = live.wait(task_uuid)["data"]
    requests = receiver.wait_for(2)
    assert {r.method for r in requests} == {"POST"}
    assert {r.path for r in requests} == {"/hooks?token=abc"}
    assert all(r.headers["content-type"] == "application/json" for r in requests)
    bodies = [verify(live, r) for r in requests]
    assert sorted(b["seed"] for b in bodies) == [9, 10]
    assert {b["videoUUID"] for b in bodies} == {i["videoUUID"] for i in items}
    assert all(b["status"] == "success" and b["taskUUID"] == task_uuid and b["cost"] > 0 for b in bodies)
    assert len({r.headers["webhook-id"] for r in requests}) == 2
    # A forged body fails verification.
    forged = Received("POST", "/", requests[0].headers, requests[0].body.replace(b"success", b"failure"), 0)
    with pytest.raises(Exception, match="signature"):
        verify(live, forged)


def _deliveries(outcome: str) -> float:
    labels = {"kind": "webhook", "outcome": outcome}
    return REGISTRY.get_sample_value("ltxserve_deliveries_total", labels) or 0.0


def test_webhook_retries_with_same_id(live: LiveServer, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    before = {outcome: _deliveries(outcome) for outcome in ("retry", "delivered")}
    task_uuid = live.submit(webhookURL=receiver.url)
    live.wait(task_uuid)
    requests = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests]
    assert stamps == sorted(stamps)
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert gaps[0] >= 0.4  # backed off, not hammered
    assert all(verify(live, r)["taskUUID"] == task_uuid for r in requests)
    time.sleep(3)
    assert len(receiver.requests) == 3  # delivered: no more attempts
    # the dashboard's delivery panel: two retries, one delivery (this process's counters)
    assert _deliveries("retry") - before["retry"] == 2
    assert _deliveries("delivered") - before["delivered"] == 1
    assert "ltxserve_queue_oldest_seconds 0.0" in httpx.get(f"{live.url}/metrics", timeout=30).text


def test_webhook_data_envelope_and_error_items(
    live: LiveServer, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live.settings, "webhook_envelope", "data")
    task = video_task(webhookURL=receiver.url, steps=100, width=512, height=512, duration=2, fps=24)
    assert live.post([task]).status_code == 200
    deadline = time.monotonic() + 30
    while (
        live.post([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])
        .json()["data"][0]
        .get("progress", 0)
        == 0
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    live.post([{"taskType": "taskCancel", "taskUUID": task["taskUUID"]}])
    (req,) = receiver.wait_for(1)
    body = verify(live, req)
    (error,) = body["errors"]
    assert error["code"] == "taskCancelled"
    assert error["status"] == "error"
    assert error["taskUUID"] == task["taskUUID"]


def test_upload_endpoint_put(live: LiveServer, receiver: Receiver) -> None:
    task_uuid = live.submit(
        uploadEndpoint=f"{receiver.url}/bucket/out.mp4?X-Amz-Signature=abc&X-Amz-Expires=60"
    )
    (put,) = receiver.wait_for(1)
    assert put.method == "PUT"
    assert put.path == "/bucket/out.mp4?X-Amz-Signature=abc&X-Amz-Expires=60"
    assert put.headers["content-type"] == "video/mp4"
    # Nothing a presigned URL did not sign: no auth, no webhook headers, no Expect.
    assert not {"authorization", "webhook-id", "webhook-signature", "expect"} & put.headers.keys()
    deadline = time.monotonic() + 10
    while (item := live.wait(task_uuid)["data"][0]).get("uploadStatus") != "uploaded":
        assert time.monotonic() < deadline, item
        time.sleep(0.05)
    assert put.body == httpx.get(item["videoURL"]).content


def test_failed_upload_is_visible(live: LiveServer, receiver: Receiver) -> None:
    receiver.statuses = [403]  # a 4xx is final: the presigned URL is wrong, retrying cannot help
    task_uuid = live.submit(uploadEndpoint=f"{receiver.url}/expired")
    deadline = time.monotonic() + 20
    while (item := live.wait(task_uuid)["data"][0]).get("uploadStatus") != "failed":
        assert time.monotonic() < deadline, item
        time.sleep(0.05)
    assert item["status"] == "success"  # the video itself is fine and still served
    assert httpx.get(item["videoURL"]).status_code == 200
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("field_name", "url"),
    [
        ("webhookURL", "http://127.0.0.2:9/hook"),
        ("webhookURL", "http://10.1.2.3/hook"),
        ("webhookURL", "http://169.254.169.254/latest/meta-data"),
        ("uploadEndpoint", "http://[::1]:9/up"),
        ("uploadEndpoint", "http://localhost:9/up"),
    ],
)
def test_private_delivery_targets_refused(live: LiveServer, field_name: str, url: str) -> None:
    reply = live.post([video_task(**{field_name: url})])
    assert reply.status_code == 400
    (error,) = reply.json()["errors"]
    assert error["code"] == f"invalid{field_name[0].upper()}{field_name[1:]}"
    assert error["parameter"] == field_name


def test_delivery_does_not_block_generation(live: LiveServer, receiver: Receiver) -> None:
    receiver.statuses = [500] * 50  # keeps failing
    first = live.submit(webhookURL=receiver.url)
    live.wait(first)
    second = live.submit()
    started = time.monotonic()
    live.wait(second)
    assert time.monotonic() - started < 20
    body = json.loads(receiver.wait_for(1)[0].body)
    assert body["taskUUID"] == first
